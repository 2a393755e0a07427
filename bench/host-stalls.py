#!/usr/bin/env python3
"""Counts the moments this whole machine stood still: a sleeper that wakes every 5 ms and
notes each wake-up more than 1.5 ms late. It does no IO and almost no CPU, so its lateness is
the machine's, not its own.

usage: bench/host-stalls.py SECONDS [--phases]
prints: COUNT TOTAL_MS MAX_MS   (with --phases, then each stall's end as ms mod 100 / length)

On the virtual machines here, a guest kept busy (a few thousand durable writes a second, or
CPU on both cores) is stopped by its host now and then for 2-8 ms, every stall ending at the
same phase of a 100 ms period: a quota enforced per period. Any request in flight then waits
too, which is what sets the one-connection p99 of both steward and etcd in
bench/keys-vs-etcd.sh (BENCHMARKS.md, session 13).
"""
import sys
import time

secs = float(sys.argv[1])
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
lengths = [ms for _, ms in stalls]
print("%d %.0f %.1f" % (len(stalls), sum(lengths), max(lengths, default=0.0)), end="")
if "--phases" in sys.argv:
    print(" " + " ".join("%.0f/%.1f" % ((at * 1000) % 100, ms) for at, ms in stalls), end="")
print()
