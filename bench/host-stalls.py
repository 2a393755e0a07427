#!/usr/bin/env python3
"""Counts the moments this machine stood still, so a benchmark's tail can be read against them.

usage: bench/host-stalls.py SECONDS [DIR] [--phases]
prints: STALLS TOTAL_MS MAX_MS SLOW_SYNCS SLOW_SYNC_MAX_MS

- STALLS, TOTAL_MS, MAX_MS: a sleeper wakes every 5 ms and notes each wake-up more than 1.5 ms
  late. It does no IO and almost no CPU, so its lateness is the machine's, not its own.
- SLOW_SYNCS, SLOW_SYNC_MAX_MS: a second process rewrites one 4 KiB block in DIR (default: the
  temporary directory) and `fdatasync`s it every 20 ms, and counts calls over 10 ms: the disk
  standing still.

On the virtual machines here, a guest kept busy (a thousand durable writes a second, or CPU on
both cores) is stopped by its host now and then for 2-8 ms, every stall ending at the same phase
of a 100 ms period: a quota enforced per period. Requests in flight wait too; that sets the
one-connection p99 of both steward and etcd in bench/keys-vs-etcd.sh (BENCHMARKS.md, session 13).
"""
import os
import sys
import tempfile
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
secs = float(args[0])
directory = args[1] if len(args) > 1 else tempfile.gettempdir()

read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    os.close(read_end)
    path = os.path.join(directory, "host-stalls-%d.tmp" % os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    slow = []
    try:
        end = time.monotonic() + secs
        while time.monotonic() < end:
            os.pwrite(fd, b"x" * 4096, 0)
            t = time.monotonic()
            os.fdatasync(fd)
            took = time.monotonic() - t
            if took > 0.010:
                slow.append(took * 1000)
            time.sleep(0.020)
    finally:
        os.close(fd)
        os.unlink(path)
    os.write(write_end, ("%d %.1f" % (len(slow), max(slow, default=0.0))).encode())
    os._exit(0)
os.close(write_end)

period, late_after = 0.005, 0.0015
start = time.monotonic()
end, due = start + secs, start + period
stalls = []
while True:
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    now = time.monotonic()
    if now - due > late_after:
        stalls.append((now - start, (now - due) * 1000))
    due = now + period
    if now > end:
        break
os.waitpid(child, 0)
disk = os.read(read_end, 100).decode() or "? ?"
lengths = [ms for _, ms in stalls]
print("%d %.0f %.1f %s" % (len(stalls), sum(lengths), max(lengths, default=0.0), disk), end="")
if "--phases" in sys.argv:
    print(" " + " ".join("%.0f/%.1f" % ((at * 1000) % 100, ms) for at, ms in stalls), end="")
print()
