#!/usr/bin/env python3
"""Seeds for fuzz_tls: what real TLS peers send to its stream.

Usage: tls_record.py FUZZ_TLS_BINARY CERT_DIR CORPUS_DIR

Makes a CA and certificates in CERT_DIR, then for each case below runs the
fuzz target once with FUZZ_TLS_CONNECT set (its stream then talks over TCP,
with the same repeatable randomness as under the fuzzer), relays it to a
real peer (openssl s_server or s_client, or Python's ssl module) and records
what the peer sends. Each recording becomes seeds: as sent; with modes
that leave the stream's hello as it was (sendall/recvall, hostname);
delivered a few bytes at a time (mode bit 16); and with the peer's
plain-text handshake records cut into fragments at odd lengths.

Recording here, at build time, rather than committing seed files keeps the
seeds in step with tls.c and the OpenSSL installed: a change to either
changes the stream's hello, and an old recording then fails at the first
Finished; committed certificates would also expire. Loopback only; every child
process is killed and waited for; a case that cannot be recorded fails the
script.
"""
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

VERIFY, ALPN, TLS12, SERVER, CHUNKED, SNI, ALL, BYHOST = \
    1, 2, 4, 8, 16, 32, 64, 128
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
LIMIT = 15  # seconds for one recording


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def make_certs(d):
    """A CA, fuzz.example (server and client use), other.test (wrong).
    Kept from an earlier run, so the corpus it grew stays valid."""
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "other.pem")):
        return
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    p = lambda name: os.path.join(d, name)
    run("openssl", "req", "-x509", *ec, "-keyout", p("ca.key"),
        "-out", p("ca.pem"), "-subj", "/CN=fuzz CA", "-days", "3650")
    for name, cn in (("server", "fuzz.example"), ("client", "fuzz client"),
                     ("other", "other.test")):
        ext = p(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\n" % cn.replace(" ", "-"))
        run("openssl", "req", "-new", *ec, "-keyout", p(name + ".key"),
            "-out", p(name + ".csr"), "-subj", "/CN=" + cn)
        run("openssl", "x509", "-req", "-in", p(name + ".csr"),
            "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
            "-out", p(name + ".pem"), "-days", "3650", "-extfile", ext)


def relay(a, b, deadline, on_first=None):
    """Copies both ways until both ends closed; returns what b sent.
    on_first() runs once, when b's first bytes have been passed on."""
    got = []
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    open_ends = 2
    while open_ends and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            src, dst = key.fileobj, key.data
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    dst.sendall(data)
                except OSError:
                    pass
                if src is b:
                    got.append(data)
                    if on_first:
                        on_first()
                        on_first = None
                continue
            sel.unregister(src)
            open_ends -= 1
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    sel.close()
    return b"".join(got)


class Children:
    """Child processes, threads and sockets, all ended by close()."""

    def __init__(self):
        self.procs, self.threads, self.socks = [], [], []

    def listener(self):
        s = socket.socket()
        self.socks.append(s)
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        s.settimeout(LIMIT)
        return s, s.getsockname()[1]

    def accept(self, lst):
        c, _ = lst.accept()
        self.socks.append(c)
        return c

    def popen(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    def thread(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()
        for t in self.threads:
            t.join(LIMIT)
        for s in self.socks:
            s.close()


def quiet(fn):
    """A peer's own failure (an alert it sent or got) is part of a case."""
    def wrapped(*args):
        try:
            fn(*args)
        except (OSError, ssl.SSLError):
            pass
    return wrapped


@quiet
def py_server(lst, d, opts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    name = opts.get("cert", "server")
    ctx.load_cert_chain(os.path.join(d, name + ".pem"),
                        os.path.join(d, name + ".key"))
    if "alpn" in opts:
        ctx.set_alpn_protocols(opts["alpn"])
    if opts.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    conn, _ = lst.accept()
    lst.close()
    conn.settimeout(LIMIT)
    with ctx.wrap_socket(conn, server_side=True) as s:
        req = b""
        while b"\r\n\r\n" not in req:
            more = s.recv(1024)
            if not more:
                break
            req += more
        s.sendall(b"HTTP/1.0 200 OK\r\n\r\nfrom python ssl\n")
        s.unwrap()


@quiet
def py_client(port, d, opts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(d, "ca.pem"))
    if "alpn" in opts:
        ctx.set_alpn_protocols(opts["alpn"])
    if opts.get("cert"):
        ctx.load_cert_chain(os.path.join(d, "client.pem"),
                            os.path.join(d, "client.key"))
    with socket.create_connection(("127.0.0.1", port), LIMIT) as c:
        with ctx.wrap_socket(c, server_hostname="fuzz.example") as s:
            s.sendall(REQUEST)
            while s.recv(1024):
                pass


def s_server(kids, d, opts):
    """Starts s_server; returns its port and what starts its stdin lines."""
    lines = opts.get("stdin")
    p = kids.popen(["openssl", "s_server", "-accept", "127.0.0.1:0",
                    "-naccept", "1", "-cert", os.path.join(d, "server.pem"),
                    "-key", os.path.join(d, "server.key")]
                   + opts.get("args", []),
                   stdin=subprocess.PIPE if lines else subprocess.DEVNULL)
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        line = p.stdout.readline().decode(errors="replace")
        m = re.search(r"^ACCEPT .*:(\d+)", line)
        if m:
            break
        if not line:
            raise RuntimeError("s_server did not start: %s" % opts)
    threading.Thread(target=drain, args=(p.stdout,), daemon=True).start()

    def typing():   # s_server commands (K: key update, r: renegotiate)
        for text in lines:
            time.sleep(0.3)
            p.stdin.write(text)
            p.stdin.flush()
    return int(m.group(1)), (lambda: kids.thread(quiet(typing))) if lines \
        else None


def drain(f):
    """Reads a child's output, so it never blocks on a full pipe."""
    while f.read(4096):
        pass


def record(fuzzer, d, mode, peer, kind, opts):
    """Runs the target once against a real peer; returns what the peer sent."""
    kids = Children()
    fd, name = tempfile.mkstemp(prefix="fuzz_tls_mode")
    os.write(fd, bytes([mode, 0]))
    os.close(fd)
    try:
        lst, hport = kids.listener()
        env = dict(os.environ, FUZZ_TLS_CONNECT=str(hport), FUZZ_TLS_DIR=d)
        start = None
        if peer == "s_server":
            port, start = s_server(kids, d, opts)
        elif peer == "python" and not mode & SERVER:
            plst, port = kids.listener()
            kids.thread(py_server, plst, d, opts)
        target = kids.popen([fuzzer, "-runs=1", "-detect_leaks=0", name],
                            env=env)
        h = kids.accept(lst)
        if mode & SERVER:
            plst, port = kids.listener()
            if peer == "s_client":
                c = kids.popen(["openssl", "s_client", "-connect",
                                "127.0.0.1:%d" % port, "-servername",
                                "fuzz.example", "-ign_eof"]
                               + opts.get("args", []), stdin=subprocess.PIPE)
                c.stdin.write(REQUEST)
                c.stdin.close()
                threading.Thread(target=drain, args=(c.stdout,),
                                 daemon=True).start()
            else:
                kids.thread(py_client, port, d, opts)
            p = kids.accept(plst)
        else:
            p = socket.create_connection(("127.0.0.1", port), LIMIT)
            kids.socks.append(p)
        got = relay(h, p, time.monotonic() + LIMIT, start)
        h.close()
        p.close()
        out, _ = target.communicate(timeout=LIMIT)
        if os.environ.get("FUZZ_TLS_DEBUG"):
            sys.stderr.write(out.decode(errors="replace"))
        if target.returncode != 0:
            raise RuntimeError("fuzz_tls failed recording %s:\n%s"
                               % (kind, out.decode(errors="replace")))
        return got
    finally:
        kids.close()
        os.unlink(name)


def refragment(stream, sizes=(1, 3, 7, 2, 11, 5)):
    """The leading plain-text handshake records, cut into odd fragments."""
    out, i, k = [], 0, 0
    while i + 5 <= len(stream) and stream[i] == 0x16:
        n = int.from_bytes(stream[i + 3:i + 5], "big")
        body = stream[i + 5:i + 5 + n]
        j = 0
        while j < len(body):
            part = body[j:j + sizes[k % len(sizes)]]
            k += 1
            j += len(part)
            out.append(stream[i:i + 3] + len(part).to_bytes(2, "big") + part)
        i += 5 + n
    return b"".join(out) + stream[i:]


# (name, mode, peer, options): the stream is a client unless mode has SERVER
CASES = [
    ("tls13", 0, "s_server", {"args": ["-www"]}),
    ("tls13-verify", VERIFY, "s_server", {"args": ["-www"]}),
    ("tls13-alpn", VERIFY | ALPN, "s_server",
     {"args": ["-www", "-alpn", "h2"]}),
    ("tls12-server", VERIFY, "s_server", {"args": ["-www", "-tls1_2"]}),
    ("tls12-client", VERIFY | TLS12, "s_server", {"args": ["-www"]}),
    ("small-frags", VERIFY, "s_server",
     {"args": ["-www", "-max_send_frag", "512"]}),
    ("cert-required-13", VERIFY, "s_server",
     {"args": ["-www", "-Verify", "1", "-verify_return_error"]}),
    ("cert-required-12", VERIFY | TLS12, "s_server",
     {"args": ["-www", "-Verify", "1", "-verify_return_error"]}),
    ("no-cipher", 0, "s_server",
     {"args": ["-www", "-tls1_3",
               "-ciphersuites", "TLS_AES_128_CCM_8_SHA256"]}),
    ("no-version", TLS12, "s_server", {"args": ["-www", "-tls1_3"]}),
    # s_server's commands from stdin after the handshake: a TLS 1.3 key
    # update that asks for one back, a TLS 1.2 renegotiation, then data
    ("key-update", VERIFY, "s_server",
     {"stdin": [b"K\n", b"after the key update, from s_server\n"]}),
    ("renegotiate", VERIFY, "s_server",
     {"args": ["-tls1_2"],
      "stdin": [b"r\n", b"after renegotiation, from s_server\n"]}),
    ("py-alpn", VERIFY | ALPN, "python", {"alpn": ["http/1.1"]}),
    ("py-tls12", VERIFY | ALPN, "python", {"alpn": ["h2"], "tls12": True}),
    ("py-wrong-name", VERIFY, "python", {"cert": "other"}),
    ("py-untrusted", 0, "python", {}),
    ("srv-s_client", SERVER, "s_client", {}),
    ("srv-s_client-12", SERVER, "s_client", {"args": ["-tls1_2"]}),
    ("srv-sni", SERVER | SNI, "s_client", {}),
    ("srv-alpn-none", SERVER | ALPN, "s_client", {"args": ["-alpn", "foo"]}),
    ("srv-no-cert", SERVER | VERIFY, "s_client", {}),
    ("srv-py-alpn", SERVER | ALPN, "python", {"alpn": ["http/1.1", "h2"]}),
    ("srv-py-cert", SERVER | VERIFY, "python", {"cert": True}),
    ("srv-py-cert-12", SERVER | VERIFY | TLS12, "python", {"cert": True}),
]


def main():
    fuzzer, d, corpus = sys.argv[1:4]
    make_certs(d)
    os.makedirs(corpus, exist_ok=True)
    total = 0
    for kind, mode, peer, opts in CASES:
        for attempt in (1, 2):   # once more on a loaded machine
            try:
                got = record(fuzzer, d, mode, peer, kind, opts)
                break
            except (OSError, RuntimeError, subprocess.SubprocessError):
                if attempt == 2:
                    raise
        if not got:
            raise RuntimeError("%s: the peer sent nothing" % kind)
        seeds = {"": bytes([mode, 0]) + got,
                 "-frag": bytes([mode, 0]) + refragment(got),
                 "-all": bytes([mode | ALL, 0]) + got}
        if not mode & SERVER:
            seeds["-byhost"] = bytes([mode | BYHOST, 0]) + got
        # byte by byte costs a call per byte: only for the short ones
        for chunk in (1, 7, 100) if len(got) < 2000 else (7, 100):
            seeds["-by%d" % chunk] = bytes([mode | CHUNKED, chunk - 1]) + got
        for suffix, data in seeds.items():
            with open(os.path.join(corpus, "rec-" + kind + suffix), "wb") as f:
                f.write(data)
        total += len(got)
    print("tls_record: %d recordings (%d bytes) from openssl s_server, "
          "s_client and Python ssl" % (len(CASES), total))


if __name__ == "__main__":
    main()
