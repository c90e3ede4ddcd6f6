"""Network probe for the emulated-network system tests. Times come from the process's own
clock: under diorama's shim they are virtual. Prints one result line.

  netprobe.py echo PORT                      UDP echo server
  netprobe.py rtt HOST PORT N                median UDP round-trip time (ms) of N pings
  netprobe.py sink PORT [trace]              TCP sink: prints goodput (Mbit/s) of one connection (trace: and progress lines)
  netprobe.py source HOST PORT BYTES [CC]    TCP source: sends BYTES (congestion control CC), waits for the sink's report
  netprobe.py udpsink PORT                   counts UDP datagrams until 'END'
  netprobe.py udpsource HOST PORT N PPS      sends N datagrams at PPS, then 'END', prints the sink's count
  netprobe.py reach HOST PORT                tries a TCP connection; prints ok/unreachable
"""
import socket, statistics, sys, time

mode = sys.argv[1]
if mode == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[2])))
    while True:
        d, a = s.recvfrom(65536); s.sendto(d, a)
elif mode == "rtt":
    # UDP has no readiness port: the server may not be listening yet, so a lost ping is
    # sent again (up to 20 times) rather than ending the measurement.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    rtts = []
    for i in range(int(sys.argv[4])):
        for attempt in range(20):
            t = time.monotonic(); s.sendto(b"x" * 64, (sys.argv[2], int(sys.argv[3])))
            try:
                s.recvfrom(2048); break
            except socket.timeout:
                continue
        else:
            sys.exit("no echo after 20 attempts")
        rtts.append((time.monotonic() - t) * 1000)
    print("rtt_ms", statistics.median(rtts), flush=True)
elif mode == "sink":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(1)
    c, _ = l.accept(); n = 0; t0 = None
    # "trace": also print the bytes received so far every 50 ms, on the wall clock that
    # every node shares, so that flows of several sinks compare over the same window.
    trace = len(sys.argv) > 3 and sys.argv[3] == "trace"; last = 0.0
    want = int.from_bytes(c.recv(8, socket.MSG_WAITALL), "big")
    while n < want:
        d = c.recv(1 << 16)
        if not d: break
        if t0 is None: t0 = time.monotonic()
        n += len(d)
        if trace and (time.time() - last >= 0.05 or n >= want):
            last = time.time(); print("progress", last, n, flush=True)
    mbps = n * 8 / (time.monotonic() - t0) / 1e6
    c.sendall(f"{mbps}\n".encode()); c.close()
    print("goodput_mbps", mbps, flush=True)
elif mode == "source":
    c = socket.socket(); c.settimeout(120)
    if len(sys.argv) > 5: c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, sys.argv[5].encode())
    c.connect((sys.argv[2], int(sys.argv[3]))); n = int(sys.argv[4])
    c.sendall(n.to_bytes(8, "big")); chunk = b"x" * 65536; sent = 0
    while sent < n:
        k = min(len(chunk), n - sent); c.sendall(chunk[:k]); sent += k
    print("goodput_mbps", float(c.makefile().readline()), flush=True)
elif mode == "udpsink":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind(("0.0.0.0", int(sys.argv[2]))); n = 0
    while True:
        d, a = s.recvfrom(2048)
        if d == b"END":
            s.sendto(str(n).encode(), a); n = 0
        else:
            n += 1
elif mode == "udpsource":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dst = (sys.argv[2], int(sys.argv[3]))
    n, pps = int(sys.argv[4]), float(sys.argv[5]); t0 = time.monotonic()
    for i in range(n):
        s.sendto(b"y" * 100, dst)
        ahead = t0 + (i + 1) / pps - time.monotonic()
        if ahead > 0.001: time.sleep(ahead)
    time.sleep(0.2); s.settimeout(10)
    for _ in range(5):
        s.sendto(b"END", dst)
        try:
            print("received", int(s.recvfrom(64)[0]), "of", n, flush=True); break
        except socket.timeout:
            pass
elif mode == "reach":
    try:
        socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=1); print("reach ok")
    except OSError as e:
        print("reach unreachable", e.errno)
