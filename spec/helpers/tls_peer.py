#!/usr/bin/env python3
"""Real TLS peers for the TLS specs, written with Python's ssl module (nothing
from bsdsocket). Servers bind port 0 on 127.0.0.1, print "port N" and serve
until killed (the specs run them under `timeout`); what they see is printed
one line per event ("sni NAME", "alpn X", "version V", "cert CN", "error ...").
Usage: python3 -u spec/helpers/tls_peer.py COMMAND [OPTIONS]

  server CERT KEY [--ca CA] [--require-cert] [--min V] [--max V] [--alpn a,b]
         [--tickets N]
                       echo every line of every connection (threads)
  starttls CERT KEY    plain text first: "HELLO\\n" <- , "STARTTLS\\n" ->,
                       "GO\\n" <-, then TLS and echo
  fault CERT KEY KIND  one TLS connection at a time, then misbehave after the
                       handshake: KIND = truncate (a record "hello", then a
                       TCP close without close_notify), midrecord (half a
                       record, then close), stall (nothing, forever)
  redirect LOCATION [CERT KEY]
                       HTTP (HTTPS with CERT KEY): every GET gets a 302 to LOCATION
  client PORT CA TEXT [--cert C --key K] [--name N] [--alpn a,b]
                       connect, send TEXT, read to EOF, print "got TEXT" and
                       "version V"; "error ..." on failure
"""
import socket
import ssl
import sys
import threading

VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def say(*a):
    print(*a, flush=True)


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        return args[i + 1]
    return default


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    say("port", s.getsockname()[1])
    return s


def server_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args[0], args[1])
    if opt(args, "--min"):
        ctx.minimum_version = VERSIONS[opt(args, "--min")]
    if opt(args, "--max"):
        ctx.maximum_version = VERSIONS[opt(args, "--max")]
    if opt(args, "--alpn"):
        ctx.set_alpn_protocols(opt(args, "--alpn").split(","))
    if opt(args, "--ca"):
        ctx.load_verify_locations(opt(args, "--ca"))
        ctx.verify_mode = ssl.CERT_REQUIRED if "--require-cert" in args else ssl.CERT_OPTIONAL
    if opt(args, "--tickets"):
        ctx.num_tickets = int(opt(args, "--tickets"))

    def sni(sslobj, name, _ctx):
        say("sni", name)
    ctx.sni_callback = sni
    return ctx


def echo(conn):
    try:
        say("version", conn.version())
        say("alpn", conn.selected_alpn_protocol())
        say("resumed", conn.session_reused)
        cert = conn.getpeercert()
        if cert:
            say("cert", dict(x[0] for x in cert["subject"])["commonName"])
        f = conn.makefile("rb")
        for line in f:
            conn.sendall(line)
        conn.unwrap()
    except (OSError, ValueError) as e:
        say("error", type(e).__name__, e)
    finally:
        conn.close()


def serve(args):
    ctx = server_context(args)
    s = listener()
    while True:
        c, _ = s.accept()
        try:
            conn = ctx.wrap_socket(c, server_side=True)
        except (OSError, ValueError) as e:
            say("error", type(e).__name__, e)
            c.close()
            continue
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def starttls(args):
    ctx = server_context(args)
    s = listener()
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"HELLO\n")
            f = c.makefile("rb")
            line = f.readline()
            say("plain", line.decode().strip())
            c.sendall(b"GO\n")
            conn = ctx.wrap_socket(c, server_side=True)
        except (OSError, ValueError) as e:
            say("error", type(e).__name__, e)
            c.close()
            continue
        echo(conn)


def fault(args):
    ctx = server_context(args)
    kind = args[2]
    s = listener()
    while True:
        c, _ = s.accept()
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_side=True)
        try:
            while True:
                try:
                    obj.do_handshake()
                    c.sendall(out.read())
                    break
                except ssl.SSLWantReadError:
                    c.sendall(out.read())
                    data = c.recv(65536)
                    if not data:
                        raise OSError("closed")
                    inc.write(data)
            say("handshake done")
            if kind == "truncate":
                obj.write(b"hello")
                c.sendall(out.read())
            elif kind == "midrecord":
                obj.write(b"x" * 1000)
                rec = out.read()
                c.sendall(rec[: len(rec) // 2])
            elif kind == "stall":
                c.recv(1)  # until the client goes
        except (OSError, ssl.SSLError) as e:
            say("error", type(e).__name__, e)
        c.shutdown(socket.SHUT_RDWR)
        c.close()


def redirect(args):
    import http.server
    location = args[0]

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    if len(args) >= 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[1], args[2])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    say("port", srv.server_address[1])
    srv.serve_forever()


def client(args):
    port, ca, text = int(args[0]), args[1], args[2]
    ctx = ssl.create_default_context(cafile=ca)
    if opt(args, "--cert"):
        ctx.load_cert_chain(opt(args, "--cert"), opt(args, "--key"))
    if opt(args, "--alpn"):
        ctx.set_alpn_protocols(opt(args, "--alpn").split(","))
    name = opt(args, "--name", "localhost")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as conn:
                say("version", conn.version())
                say("alpn", conn.selected_alpn_protocol())
                conn.sendall(text.encode() + b"\n")
                got = b""
                while not got.endswith(b"\n"):
                    data = conn.recv(65536)
                    if not data:
                        break
                    got += data
                say("got", got.decode().strip())
    except (OSError, ssl.SSLError) as e:
        say("error", type(e).__name__, e)


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"server": serve, "starttls": starttls, "fault": fault, "client": client,
     "redirect": redirect}[cmd](rest)
