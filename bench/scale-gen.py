#!/usr/bin/env python3
"""bench/scale-gen.py ROOT N [WORKERS]: N small objects for bench/scale.sh.

ROOT/dNNNN/object-NNNNNNN.bin, 1,000 a directory, 64 bytes each (the object's number repeated),
every file's modification time 2023-11-14T22:13:20Z (fixed, so that runs compare alike). Fast
at 10^6: raw os.open/os.write and the time set on the open descriptor (futimens, no second path
lookup), the directories split among WORKERS processes (default: the CPU count).
"""
import os
import sys
from multiprocessing import Pool

PER_DIR = 1000
MTIME = 1_700_000_000
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def make_dirs(job):
    root, first, last, n = job
    times = (MTIME, MTIME)
    for d in range(first, last):
        path = os.path.join(root, f"d{d:04d}")
        os.makedirs(path, exist_ok=True)
        for i in range(d * PER_DIR, min((d + 1) * PER_DIR, n)):
            fd = os.open(f"{path}/object-{i:07d}.bin", FLAGS, 0o644)
            try:
                os.write(fd, (f"object {i} " * 8)[:64].encode())
                os.utime(fd, times)
            finally:
                os.close(fd)
        os.utime(path, times)
    return last - first


def main():
    root, n = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 1)
    dirs = (n + PER_DIR - 1) // PER_DIR
    # Small slices handed out in turn, so one slow worker does not trail at the end.
    step = max(1, min(50, dirs // (workers * 4) or 1))
    jobs = [(root, d, min(d + step, dirs), n) for d in range(0, dirs, step)]
    os.makedirs(root, exist_ok=True)
    if workers <= 1 or len(jobs) == 1:
        done = sum(map(make_dirs, jobs))
    else:
        with Pool(workers) as pool:
            done = sum(pool.imap_unordered(make_dirs, jobs))
    assert done == dirs, (done, dirs)


if __name__ == "__main__":
    main()
