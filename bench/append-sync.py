#!/usr/bin/env python3
"""What an append-and-fdatasync costs the disk, by how the file's space was made.

usage: bench/append-sync.py [DIR] [COUNT] [SIZE]
       (default: the temporary directory, 3000 appends of 1853 bytes: steward's usual flush of
       one key write at one connection)

For each way of preparing the file, appends COUNT records of SIZE bytes, each followed by an
fdatasync, and prints the block device's write requests and KiB per sync (/proc/diskstats)
and the sync's p50 / p99 / max. Ways, each run twice, alternated:
- grow: the file grows with every append (sled as published);
- fallocate-extend: 64 MiB allocated ahead, length extended (vendored sled now);
- fallocate-keepsize: 64 MiB allocated ahead, length kept;
- zero-filled: 16 MiB of zeros written and synced first.
"""
import ctypes
import os
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
size = int(sys.argv[3]) if len(sys.argv) > 3 else 1853
FALLOC_FL_KEEP_SIZE = 1
libc = ctypes.CDLL(None, use_errno=True)


def device_of(path):
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    for line in open("/proc/diskstats"):
        f = line.split()
        if int(f[0]) == major and int(f[1]) == minor:
            return f[2]
    # A partition's filesystem: fall back to the first whole device listed.
    return open("/proc/diskstats").readline().split()[2]


def disk(name):
    for line in open("/proc/diskstats"):
        f = line.split()
        if f[2] == name:
            return int(f[7]), int(f[9])
    return 0, 0


def run(name, prepare, dev):
    path = os.path.join(directory, "append-sync-%d.tmp" % os.getpid())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        prepare(fd)
        os.fsync(fd)
        os.sync()
        record = b"y" * size
        took = []
        before = disk(dev)
        for i in range(count):
            os.pwrite(fd, record, i * size)
            t = time.monotonic()
            os.fdatasync(fd)
            took.append(time.monotonic() - t)
        after = disk(dev)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    print("%-19s %.2f requests %.1f KiB per sync; sync p50 %.3f ms p99 %.3f ms max %.1f ms" % (
        name, (after[0] - before[0]) / count, (after[1] - before[1]) / 2 / count,
        took[count // 2] * 1e3, took[int(count * 0.99)] * 1e3, took[-1] * 1e3))


def fallocate(mode):
    def prepare(fd):
        if libc.fallocate(fd, mode, ctypes.c_long(0), ctypes.c_long(64 << 20)) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
    return prepare


ways = [
    ("grow", lambda fd: None),
    ("fallocate-extend", fallocate(0)),
    ("fallocate-keepsize", fallocate(FALLOC_FL_KEEP_SIZE)),
    ("zero-filled", lambda fd: [os.pwrite(fd, b"\0" * (1 << 20), i << 20) for i in range(16)]),
]
dev = device_of(directory)
print("device %s, %d appends of %d bytes in %s" % (dev, count, size, directory))
for _ in range(2):
    for name, prepare in ways:
        run(name, prepare, dev)
