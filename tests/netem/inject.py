"""Writes malformed, truncated, non-IP and unroutable frames into this node's TUN device
(eth0) through a packet socket, as any root process of a node can; used by
tests/tests/netem_malformed.rs. Prints what it sent, one `kind count` a line."""
import socket
import struct
import sys

def ipv4(dst, total=None, ihl=5, length=None):
    body = bytes(max(0, (length or ihl * 4) - 20))
    total = total if total is not None else 20 + len(body)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0, 0, 64, 17, 0,
                      socket.inet_aton(me), socket.inet_aton(dst))
    return hdr + body

me = socket.gethostbyname(socket.gethostname())
# An address of the emulated subnet that no node has.
nobody = ".".join(me.split(".")[:3] + ["250"])
frames = {
    "non_ip": [b"\x85" + bytes(39), b"\x00" * 28, b"\xf0\x01\x02"],
    "malformed": [ipv4(nobody, ihl=4, length=20), ipv4(nobody, total=12)],
    "truncated": [ipv4(nobody, total=1000, length=40), b"\x45\x00\x00", ipv4(nobody, ihl=15, length=40)[:40],
                  ipv4(nobody)[:19]],
    "unroutable": [ipv4(nobody)] * 5,
}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1] if len(sys.argv) > 1 else "eth0", 0))
for kind, list_ in frames.items():
    for f in list_:
        s.send(f)
    print(kind, len(list_), flush=True)
