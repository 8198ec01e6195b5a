#!/usr/bin/env python3
"""Real peers for the example specs, written with Python's own socket and
http.server modules (nothing from bsdsocket). Each server binds port 0 on
127.0.0.1, prints "port N" on stdout and serves until killed (the specs run it
under `timeout`). Usage: python3 -u spec/helpers/peers.py COMMAND [ARGS]

  tcp-echo-server              echo every connection until it closes
  udp-echo-server              echo every datagram to its sender
  tcp-client PORT TEXT         send TEXT, shut down writing, print the answer
  tcp-client-size PORT N       send N pattern bytes, check the echo, print "ok N"
  udp-client PORT TEXT         send TEXT as one datagram, print the answer
  udp-sink                     print each datagram received ("got TEXT")
  udp-drop-first UPSTREAM      relay datagrams to 127.0.0.1:UPSTREAM, dropping
                               the first one (a lost packet)
  http                         HTTP/1.1 server: chunked, close-delimited,
                               redirects, 404, bad chunk sizes (see Handler)
"""
import http.server
import socket
import socketserver
import sys
import threading


def pattern(n):
    return bytes(i * 7 % 256 for i in range(n))


def announce(port):
    print("port", port, flush=True)


def tcp_echo_server():
    class H(socketserver.BaseRequestHandler):
        def handle(self):
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
    announce(srv.server_address[1])
    srv.serve_forever()


def udp_echo_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    announce(s.getsockname()[1])
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def recv_all(s):
    parts = []
    while True:
        data = s.recv(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def tcp_client(port, text):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as s:
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        sys.stdout.buffer.write(recv_all(s))


def tcp_client_size(port, n):
    n = int(n)
    data = pattern(n)
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as s:
        threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR))).start()
        got = recv_all(s)
    print("ok", len(got) if got == data else "MISMATCH %d" % len(got))


def udp_client(port, text):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(text.encode(), ("127.0.0.1", int(port)))
        data, _ = s.recvfrom(65535)
        sys.stdout.buffer.write(data + b"\n")


def udp_sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    announce(s.getsockname()[1])
    while True:
        data, peer = s.recvfrom(65535)
        print("got", data.decode(errors="replace").rstrip("\n"), flush=True)
        s.sendto(b"ack " + data, peer)


def udp_drop_first(upstream):
    up = ("127.0.0.1", int(upstream))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    announce(s.getsockname()[1])
    dropped = False
    while True:
        data, client = s.recvfrom(65535)
        if not dropped:
            dropped = True
            print("dropped", len(data), flush=True)
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as f:
            f.settimeout(5)
            f.sendto(data, up)
            s.sendto(f.recvfrom(65535)[0], client)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self, status, data, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, status, location):
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        p = self.path
        port = self.server.server_address[1]
        if p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for piece in (b"hello, ", b"chunked ", b"world\n"):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Checksum: none\r\n\r\n")
        elif p == "/bigchunked":
            data = pattern(300000)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 7000):
                piece = data[i:i + 7000]
                self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif p in ("/badchunk", "/hugechunk"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n")
            self.wfile.write(b"zz\r\n" if p == "/badchunk" else b"fffffffffffffffffff\r\n")
            self.close_connection = True
        elif p == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the server closes\n")
            self.close_connection = True
        elif p.startswith("/redirect/"):
            n = int(p.rsplit("/", 1)[1])
            if n == 0:
                self.body(200, b"arrived\n")
            elif n % 2:
                self.redirect(302, "/redirect/%d" % (n - 1))
            else:
                self.redirect(301, "http://127.0.0.1:%d/redirect/%d" % (port, n - 1))
        elif p == "/dir/page":
            self.redirect(307, "other?x=1")
        elif p == "/dir/other?x=1":
            self.body(200, b"relative redirect ok\n")
        elif p == "/loop":
            self.redirect(302, "/loop")
        elif p == "/headers":
            self.body(200, ("".join("%s: %s\n" % kv for kv in self.headers.items())).encode())
        else:
            self.body(404, b"no such page\n")


def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    announce(srv.server_address[1])
    srv.serve_forever()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "tcp-echo-server": tcp_echo_server,
        "udp-echo-server": udp_echo_server,
        "tcp-client": tcp_client,
        "tcp-client-size": tcp_client_size,
        "udp-client": udp_client,
        "udp-sink": udp_sink,
        "udp-drop-first": udp_drop_first,
        "http": http_server,
    }[cmd](*args)


if __name__ == "__main__":
    main()
