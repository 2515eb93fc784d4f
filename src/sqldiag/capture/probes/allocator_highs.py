"""The allocators' figures at the peak of RSS, read while the work runs.

The parts of RSS at the peak (native memory in use, allocator overhead, free memory)
need glibc's and pymalloc's own figures at that moment, not only at the phases. A
thread polls RSS (a few microseconds a read) and, at each new high a step above its
last reading, reads both allocators (about 6 ms at a GB of heap, with the other threads
waiting); the reading at the highest RSS is kept. A 2% step bounds the readings to
about 150 over a run that grows 20-fold.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqldiag.capture.probes.allocator import reading
from sqldiag.capture.probes.rss import rss_reader
from sqldiag.capture.probes.sampler import leave_signals_to_the_main_thread
from sqldiag.record.parts import AllocatorHigh

STEP = 1.02  # read again when RSS is this factor above the last reading
MIN_STEP_BYTES = 1 << 20
PERIOD_S = 0.02


class AllocatorHighs:
    """Reads both allocators at RSS highs while started; `highest` is the reading at
    the highest RSS."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.highest: AllocatorHigh | None = None
        self._clock = clock
        self._rss = rss_reader()
        self._next_at = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqldiag-allocator",
                                        daemon=True)

    def start(self) -> None:
        self._next_at = self._rss() + MIN_STEP_BYTES
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _read(self) -> None:
        now = reading()
        rss = now.rss
        if rss is None:
            return
        # the highest of the program's own RSS (net of tracemalloc's tables when tracing)
        if self.highest is None or \
                rss - now.tracemalloc_bytes >= self.highest.rss - self.highest.tracemalloc_bytes:
            self.highest = AllocatorHigh(t=round(self._clock(), 4), rss=rss,
                                         mallinfo=now.glibc, pymalloc=now.pymalloc,
                                         traced=now.traced,
                                         tracemalloc_bytes=now.tracemalloc_bytes,
                                         file_rss=now.file_rss)
        self._next_at = max(int(rss * STEP), rss + MIN_STEP_BYTES)

    def _loop(self) -> None:
        leave_signals_to_the_main_thread()
        while not self._stop.wait(PERIOD_S):
            if self._rss() >= self._next_at:
                self._read()
