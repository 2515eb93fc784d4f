"""RSS/USS sampler: a daemon thread that reads the process's memory on a fixed period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import psutil

from sqldiag.capture.attribution.overhead import tracemalloc_own_bytes
from sqldiag.capture.probes.watcher import HELPER, Helpers

WATCHER_START_S = 5.0  # the longest a measurement waits for its watcher's first sample


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the sampler started
    rss: int
    uss: int | None
    traced: int | None  # tracemalloc's current traced bytes, when tracing
    overhead: int  # tracemalloc's own memory (part of RSS while tracing)
    children_rss: int = 0  # RSS of child processes (multiprocessing workers), summed


def leave_signals_to_the_main_thread() -> None:
    """A process-directed signal goes to any thread that does not block it, and Python
    runs its handler only when the main thread next runs: a SIGTERM taken by this
    thread while the main thread waits on a lock (a Pool worker waiting for a task)
    would never be handled. Our threads block the signals a workload reacts to."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT,
                                                  signal.SIGUSR1})


class RssSampler:
    """Samples RSS (and USS where cheap enough) every `period` seconds.

    `on_traced(traced_bytes, t)` is called from the sampler thread with each sample and,
    between samples, every `traced_period` seconds while tracemalloc runs: the tracing
    probe uses it to snapshot new highs. Allocating non-container objects (strings,
    bytes) never triggers a garbage collection, so a peak built of them is seen only
    here; reading the traced total costs ~1 us, where a sample reads /proc and gives
    up the GIL twice, which beside a busy workload costs a switch interval each.

    Child processes are found by scanning /proc, one file read per process on the machine;
    each read gives up the GIL and, beside a busy workload, waits up to a switch interval
    to get it back, so one scan took a second here. A second thread does that scan and the
    samples carry its latest total, so that the sampler keeps its period.
    """

    def __init__(self, period: float = 0.05, with_uss: bool = True,
                 on_traced: Callable[[int, float], None] | None = None,
                 traced_period: float = 0.005) -> None:
        self.period = period
        self.with_uss = with_uss
        self.on_traced = on_traced
        self.traced_period = traced_period
        self.samples: list[Sample] = []
        self.child_peaks: dict[int, int] = {}  # pid -> peak RSS seen
        self.ignored_pids: set[int] = set()  # our own helpers (the watcher)
        self._helpers = Helpers()  # and those of a capture() in the program
        self.t0 = time.monotonic()
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqldiag-sampler", daemon=True)
        self._children_total = 0
        self._children_thread = threading.Thread(target=self._children_loop,
                                                 name="sqldiag-children", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def sample(self) -> Sample:
        """Take one sample now (also used at phase marks)."""
        uss = None
        if self.with_uss:
            try:
                uss = self._process.memory_full_info().uss
            except (psutil.AccessDenied, AttributeError):
                self.with_uss = False
        rss = self._process.memory_info().rss
        children_rss = (self._children_total if self._children_thread.is_alive()
                        else self._children_rss())
        tracing = tracemalloc.is_tracing()
        traced = tracemalloc.get_traced_memory()[0] if tracing else None
        overhead = tracemalloc_own_bytes(tracemalloc.get_tracemalloc_memory()) if tracing else 0
        sample = Sample(self.now(), rss, uss, traced, overhead, children_rss)
        self.samples.append(sample)
        return sample

    def _children_rss(self) -> int:
        total = 0
        try:
            children = self._process.children(recursive=True)
        except psutil.Error:
            return 0
        for child in children:
            if child.pid in self.ignored_pids or child in self._helpers:
                continue
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.child_peaks[child.pid] = max(self.child_peaks.get(child.pid, 0), rss)
        return total

    def _children_loop(self) -> None:
        leave_signals_to_the_main_thread()
        while not self._stop.is_set():
            self._children_total = self._children_rss()
            self._stop.wait(max(self.period * 5, 0.25))

    def _loop(self) -> None:
        leave_signals_to_the_main_thread()
        next_sample = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            watch_traced = self.on_traced is not None and tracemalloc.is_tracing()
            if started < next_sample:
                if watch_traced:
                    self.on_traced(tracemalloc.get_traced_memory()[0], self.now())
            else:
                sample = self.sample()
                if self.on_traced is not None and sample.traced is not None:
                    self.on_traced(sample.traced, sample.t)
                # USS reads /proc/pid/smaps; on a large heap that alone takes tens of ms.
                elapsed = time.monotonic() - started
                if elapsed > self.period and self.with_uss:
                    self.with_uss = False
                next_sample = started + max(self.period, elapsed + 0.001)
            wait = next_sample - time.monotonic()
            if watch_traced:
                wait = min(wait, self.traced_period)
            self._stop.wait(max(wait, 0.001))

    def start(self) -> RssSampler:
        self._thread.start()
        self._children_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._children_thread.join(timeout=5)


class WatcherSampler(RssSampler):
    """The same timeline, sampled by a separate process (sqldiag.capture.probes.watcher) that does
    not wait for this process's GIL; marks still sample in-process. With `max_rss` the
    watcher enforces the memory guard by sending SIGUSR1."""

    def __init__(self, period: float = 0.05, max_rss: int | None = None,
                 out: str | None = None) -> None:
        super().__init__(period)
        self.max_rss = max_rss
        self._proc: subprocess.Popen | None = None
        self._out: str | None = None
        self._keep_at = out  # the watcher's file, where one who outlives us can read it

    def start(self) -> WatcherSampler:
        if self._keep_at is not None:
            self._out = self._keep_at
            open(self._out, "w").close()  # there even if the watcher never starts writing
        else:
            fd, self._out = tempfile.mkstemp(prefix="sqldiag-watch-", suffix=".txt")
            os.close(fd)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", HELPER, str(os.getpid()),
             str(self.period), self._out, str(self.max_rss or 0)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.ignored_pids.add(self._proc.pid)
        self._await_first_sample()
        return self

    def _await_first_sample(self) -> None:
        """Return once the watcher has written its first sample (or died, or after
        WATCHER_START_S): starting Python and importing psutil takes 0.1-0.2 s on a busy
        machine, and the workload's start must not fall in a hole of the timeline."""
        assert self._proc is not None and self._out is not None
        deadline = time.monotonic() + WATCHER_START_S
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                if os.path.getsize(self._out) > 0:
                    return
            except OSError:
                return
            time.sleep(0.005)

    def stop(self) -> None:
        if self._proc is None or self._out is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._proc = None
        try:
            watched = read_watched(self._out, self.t0)
            self.samples += watched.samples
            self.child_peaks.update(watched.child_peaks)
        finally:
            Path(self._out).unlink(missing_ok=True)
            self._out = None
        self.samples.sort(key=lambda sample: sample.t)


class Watched(NamedTuple):
    samples: list[Sample]
    child_peaks: dict[int, int]  # pid -> highest RSS of each child process


def read_watched(path: str, t0: float) -> Watched:
    """What a watcher wrote to `path`: its samples, on a timeline that starts at `t0` (a
    time.monotonic() value), and each child's peak (none when it was killed before its
    last line); nothing when there is no such file."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return Watched([], {})
    samples, peaks = [], {}
    for line in lines:
        parts = line.split()
        if parts[:1] == ["peaks"]:
            pairs = (part.partition(":") for part in parts[1:])
            peaks = {int(pid): int(rss) for pid, _, rss in pairs if pid.isdigit() and rss.isdigit()}
            continue
        if len(parts) != 4:
            continue  # a line cut short when the watcher stopped
        t, rss, uss, children = float(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        samples.append(Sample(t - t0, rss, uss if uss >= 0 else None, None, 0, children))
    return Watched(samples, peaks)
