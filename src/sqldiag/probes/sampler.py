"""RSS/USS sampler: a daemon thread that reads the process's memory on a fixed period."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the sampler started
    rss: int
    uss: int | None
    traced: int | None  # tracemalloc's current traced bytes, when tracing
    overhead: int  # tracemalloc's own memory (part of RSS while tracing)


class RssSampler:
    """Samples RSS (and USS where cheap enough) every `period` seconds.

    `on_sample` is called from the sampler thread with each sample; the tracing probe uses
    it to take a snapshot when traced memory reaches a new high.
    """

    def __init__(self, period: float = 0.05, with_uss: bool = True,
                 on_sample: Callable[[Sample], None] | None = None) -> None:
        self.period = period
        self.with_uss = with_uss
        self.on_sample = on_sample
        self.samples: list[Sample] = []
        self.t0 = time.perf_counter()
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqldiag-sampler", daemon=True)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def sample(self) -> Sample:
        """Take one sample now (also used at phase marks)."""
        uss = None
        if self.with_uss:
            try:
                uss = self._process.memory_full_info().uss
            except (psutil.AccessDenied, AttributeError):
                self.with_uss = False
        rss = self._process.memory_info().rss
        tracing = tracemalloc.is_tracing()
        traced = tracemalloc.get_traced_memory()[0] if tracing else None
        overhead = tracemalloc.get_tracemalloc_memory() if tracing else 0
        sample = Sample(self.now(), rss, uss, traced, overhead)
        self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            sample = self.sample()
            if self.on_sample is not None:
                self.on_sample(sample)
            # USS reads /proc/pid/smaps; on a large heap that alone can take tens of ms.
            elapsed = time.perf_counter() - started
            if elapsed > self.period and self.with_uss:
                self.with_uss = False
            self._stop.wait(max(self.period - elapsed, 0.001))

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak(self) -> Sample | None:
        """The sample with the highest RSS net of tracemalloc's own memory."""
        return max(self.samples, key=lambda s: s.rss - s.overhead, default=None)
