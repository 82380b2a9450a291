"""Shared by the benchmarks: run a function while sampling this process's resident memory."""

from __future__ import annotations

import threading
import time


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def peak(fn):
    """``(fn(), seconds, peak resident memory above the start in MB)``, sampled every 5 ms."""
    start, top, stop = rss_mb(), [0.0], threading.Event()

    def watch():
        while not stop.is_set():
            top[0] = max(top[0], rss_mb() - start)
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    stop.set()
    t.join()
    return out, seconds, top[0]
