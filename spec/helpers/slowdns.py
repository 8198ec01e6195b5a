# A DNS server on loopback that answers every query after a delay, for
# spec/resolver_spec.lua: python3 slowdns.py ADDRESS DELAY LIFETIME READYFILE
# Listens on ADDRESS:53 (UDP), answers each query from its own thread after
# DELAY seconds: an A record 127.0.0.1 for *.slow.test, NXDOMAIN for names
# starting with "nosuch" or outside slow.test, no records for other types.
# Writes READYFILE once bound; exits after LIFETIME seconds.
import socket
import struct
import sys
import threading
import time

addr, delay, life, ready = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, 53))
with open(ready, "w") as f:
    f.write("ready\n")
end = time.monotonic() + life


def answer(q, peer):
    time.sleep(delay)
    try:
        qid, flags = struct.unpack(">HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        (qtype,) = struct.unpack(">H", q[i + 1:i + 3])
        question = q[12:i + 5]
        rcode, answers = 0, b""
        if not ".".join(labels).endswith("slow.test") or labels[0].startswith("nosuch"):
            rcode = 3
        elif qtype == 1:
            answers = struct.pack(">HHHIH", 0xC00C, 1, 1, 0, 4) + bytes([127, 0, 0, 1])
        hdr = struct.pack(">HHHHHH", qid, 0x8180 | rcode | (flags & 0x0100), 1,
                          1 if answers else 0, 0, 0)
        s.sendto(hdr + question + answers, peer)
    except (IndexError, struct.error, UnicodeDecodeError, OSError):
        pass


s.settimeout(0.5)
while time.monotonic() < end:
    try:
        q, peer = s.recvfrom(512)
    except socket.timeout:
        continue
    threading.Thread(target=answer, args=(q, peer), daemon=True).start()
