"""RSS watcher in its own process: the measured process's memory, sampled on time.

A sampler thread inside the measured process needs the GIL to run; with ten worker
threads holding it in turn, it woke every ~350 ms instead of every 50 ms. This process
needs nothing from the measured one: it reads /proc through psutil on a monotonic clock
shared with the measured process, and enforces the memory guard.

    python -m sqldiag.capture.probes.watcher PID PERIOD OUT [MAX_RSS]

Writes one line per sample to OUT: `t rss uss children_rss` (t from time.monotonic(),
uss -1 when not sampled), and when stopped a last line `peaks PID:RSS ...`, each child
process's highest RSS. Over MAX_RSS it sends SIGUSR1 to PID, and SIGKILL 5 s later
if PID is still alive. Stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil

HELPER = "sqldiag.capture.probes.watcher"  # how a watcher is started: python -m HELPER
YOUNG_S = 1.0  # a child younger than this may not have exec'd its own program yet
USS_EVERY = 10  # smaps_rollup costs more than statm: USS every 10th sample
GRACE_S = 5.0


class Helpers:
    """Which child processes are sqldiag's own watchers: this measurement's, or those of
    a capture() in the program (a pytest run under `sqldiag run` starts one per marked
    test). They are not the program's children, whose memory is reported."""

    def __init__(self) -> None:
        self._known: dict[int, bool] = {}

    def __contains__(self, child: psutil.Process) -> bool:
        known = self._known.get(child.pid)
        if known is None:
            try:
                known = HELPER in child.cmdline()
                settled = known or time.time() - child.create_time() > YOUNG_S
            except psutil.Error:
                return False
            if settled:  # a forked child still runs its parent's program until it execs
                self._known[child.pid] = known
        return known


def main(argv: list[str]) -> int:
    pid, period, out = int(argv[0]), float(argv[1]), argv[2]
    max_rss = int(argv[3]) if len(argv) > 3 and argv[3] != "0" else None
    stop = False

    def on_term(signum, frame) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the measured process handles Ctrl-C
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return 0
    guard_sent_at = None
    count = 0
    peaks: dict[int, int] = {}  # child pid -> its highest RSS
    helpers = Helpers()
    with open(out, "w", buffering=1) as handle:
        next_at = time.monotonic()
        while not stop:
            try:
                rss = process.memory_info().rss
                uss = -1
                if count % USS_EVERY == 0:
                    try:
                        uss = process.memory_full_info().uss
                    except (psutil.AccessDenied, AttributeError):
                        uss = -1
                children = 0
                for child in process.children(recursive=True):
                    if child.pid == os.getpid() or child in helpers:
                        continue  # the watcher itself, or another
                    try:
                        child_rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    children += child_rss
                    peaks[child.pid] = max(peaks.get(child.pid, 0), child_rss)
            except psutil.NoSuchProcess:
                break
            handle.write(f"{time.monotonic():.4f} {rss} {uss} {children}\n")
            count += 1
            if max_rss is not None and rss > max_rss:
                now = time.monotonic()
                if guard_sent_at is None:
                    guard_sent_at = now
                    os.kill(pid, signal.SIGUSR1)
                elif now - guard_sent_at > GRACE_S:
                    os.kill(pid, signal.SIGKILL)
                    break
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        handle.write("peaks " + " ".join(f"{pid}:{rss}" for pid, rss in peaks.items()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
