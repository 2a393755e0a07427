#!/usr/bin/env python3
"""The disk's fsync floor: p50 and p99 of `fdatasync` after a 4 KiB write in place.

usage: bench/fsync-floor.py [DIR]   (default: target/, on the disk the members use)
400 calls over 64 blocks of one file, so the file never grows: this is the cost of one
durable write, without block allocation.
"""
import os
import sys
import time

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target")
p = os.path.join(d, "fsync-floor.tmp")
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
buf = b"x" * 4096
ts = []
try:
    for i in range(400):
        os.pwrite(fd, buf, (i % 64) * 4096)
        t = time.perf_counter()
        os.fdatasync(fd)
        ts.append(time.perf_counter() - t)
finally:
    os.close(fd)
    os.unlink(p)
ts.sort()
print("fdatasync p50 %.0f us p99 %.0f us" % (ts[len(ts) // 2] * 1e6, ts[int(len(ts) * 0.99)] * 1e6))
