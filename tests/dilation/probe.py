"""Python 3 probe for libdilation.so; same line protocol as probe.c (B/E/V/BACK)."""
import asyncio, select, sys, threading, time

REQ = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.05
last = [time.monotonic()]

def mono():
    v = time.monotonic()
    if v < last[0]:
        print("BACK monotonic", flush=True)
    last[0] = v
    return v

def check(name, req, fn):
    print(f"B {name}", flush=True)
    t0 = mono(); fn(); t1 = mono()
    print(f"E {name} {int(req * 1e9)} {int((t1 - t0) * 1e9)}", flush=True)

check("time.sleep", REQ, lambda: time.sleep(REQ))
print("B time.time", flush=True)
w0 = time.time(); time.sleep(REQ); w1 = time.time()
print(f"E time.time {int(REQ * 1e9)} {int((w1 - w0) * 1e9)}", flush=True)
check("threading.Event.wait", REQ, lambda: threading.Event().wait(REQ))
check("select.select", REQ, lambda: select.select([], [], [], REQ))
loop = asyncio.new_event_loop()
loop.run_until_complete(asyncio.sleep(0))  # start-up outside the timed region
check("asyncio.sleep", REQ, lambda: loop.run_until_complete(asyncio.sleep(REQ)))
loop.close()
print("DONE", flush=True)
