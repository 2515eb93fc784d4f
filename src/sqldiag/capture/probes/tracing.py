"""tracemalloc probe: raw snapshots at phases and at the traced high, reduced after tracing.

Reducing a snapshot allocates for every trace it reads; while tracemalloc runs, each of
those allocations is itself traced with its traceback, which made reduction ~20x slower.
So snapshots are kept raw (tracemalloc's own trace tuples, ~100 bytes a trace) until
tracing stops, and only the largest "traced high" is kept at any time.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from sqldiag.capture.attribution.breakdown import Breakdown, breakdown_traces
from sqldiag.capture.attribution.functions import save_cache
from sqldiag.capture.attribution.overhead import native_bytes, traced_in_glibc
from sqldiag.capture.probes.allocator import glibc_in_use
from sqldiag.record.parts import Reduction
from sqldiag.record.phases import AFTER_GC, WORKLOAD_END

HIGH = "traced high"


def _drop_inherited_callbacks() -> None:
    """A forked child inherits the parent's probes: they must not snapshot in it."""
    gc.callbacks[:] = [callback for callback in gc.callbacks
                       if not isinstance(getattr(callback, "__self__", None), TracingProbe)]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_callbacks)


@dataclass
class TracedMoment:
    label: str  # phase name, or "traced high" for a sampler-triggered snapshot
    t: float
    traced: int  # tracemalloc's current traced bytes when the snapshot was taken
    rss: int  # RSS when the snapshot was taken
    overhead: int  # tracemalloc's own memory then
    breakdown: Breakdown | None = None
    glibc_in_use: int | None = None  # glibc's bytes in use then (calibration runs)
    raw: list | None = None  # tracemalloc's raw traces until reduced


class TracingProbe:
    """Runs tracemalloc with `depth` frames; snapshots at phases, and (from the sampler
    thread or a garbage collection) whenever traced memory passes a step above the
    largest snapshot so far while `watching` (the workload runs)."""

    def __init__(self, depth: int, peak_step: float = 1.25, fine_step: float = 1.05,
                 free_seconds: float = 1.0, min_bytes: int = 256 << 10,
                 end_label: str = AFTER_GC, held_label: str = WORKLOAD_END,
                 held_max_bytes: int = 32 << 20, overhead: bool = False) -> None:
        self.depth = depth
        # each snapshot with what the allocators add to it and glibc's bytes in use then
        self.overhead = overhead
        # the program's lines that ran statements, (file, line) -> key, asked for when
        # the snapshots are reduced (see QueryLedger.lines)
        self.statement_lines: Callable[[], dict] | None = None
        self.end_label = end_label  # the after-the-work snapshot, kept besides the peak
        # the workload's end with its results still held: kept besides the peak too while
        # it is small enough that a second raw snapshot costs little (tests, calibration)
        self.held_label = held_label
        self.held_max_bytes = held_max_bytes
        self.peak_step = peak_step
        # until snapshots of highs have cost `free_seconds` of CPU in all, take them at
        # every `fine_step` and without waiting: a small run's peak is then caught
        # within 5% whatever the machine's load; a large run spends that much more
        self.fine_step = fine_step
        self._free_left = free_seconds
        self.min_bytes = min_bytes
        self.moments: list[TracedMoment] = []
        self.traced_peak = 0  # tracemalloc's own peak of traced bytes
        self.watching = False
        self.analysis: Reduction | None = None  # cost of reducing the raw snapshots
        self._lock = threading.Lock()
        self._largest_snapshot = 0
        self._next_high_at = 0.0  # perf_counter time before which no high is taken
        # with `overhead`: the most native memory any snapshot found while `watching`
        # (in glibc's bytes in use: the ready phase's are not taken off), see _note_native
        self.native_high_in_use: int | None = None
        self._clock: Callable[[], float] = time.monotonic

    def start(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        tracemalloc.start(self.depth)
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        """Garbage collections come with allocation (every 700 new container objects in
        the youngest generation), in the allocating thread: a check here sees a short
        peak that the sampler thread, waiting for the GIL, can miss."""
        if phase == "start" and self.watching:
            self.consider_high(tracemalloc.get_traced_memory()[0], self._clock())

    def stop(self) -> None:
        """Stop tracing and reduce the raw snapshots to breakdowns; the cost of the
        reduction (time, traces read, RSS before and after) is kept in `analysis`."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        # Under the lock: a snapshot of a high that the sampler thread is taking drops
        # rivals' raw traces; it must finish first, and none may start once tracing stops.
        with self._lock:
            self.watching = False
            if tracemalloc.is_tracing():
                self.traced_peak = max(self.traced_peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            pending = [m for m in self.moments if m.raw is not None]
        if not pending:
            return
        process = psutil.Process()
        rss_before, started = process.memory_info().rss, time.perf_counter()
        traces = 0
        lines = self.statement_lines() if self.statement_lines is not None else None
        for moment in pending:
            traces += len(moment.raw)  # type: ignore[arg-type]
            moment.breakdown = breakdown_traces(moment.raw, lines,  # type: ignore[arg-type]
                                                overhead=self.overhead)
            moment.raw = None
        save_cache()
        self.analysis = Reduction(seconds=round(time.perf_counter() - started, 3),
                                  traces=traces, rss_before=rss_before,
                                  rss_after=process.memory_info().rss)

    def snapshot(self, label: str, t: float, new_high: bool = False) -> bool:
        """Snapshot now; with `new_high`, only if traced memory is above every snapshot
        so far (a high seen by one thread may be gone, or already taken by another, once
        this one has the lock). Returns whether a snapshot was kept. (tracemalloc does
        not trace the raw snapshots it returns.)"""
        if not tracemalloc.is_tracing():
            return False
        with self._lock:
            if not tracemalloc.is_tracing():  # stopped while this thread waited
                return False
            traced = tracemalloc.get_traced_memory()[0]
            if new_high and traced <= self._largest_snapshot:
                return False
            # a raw snapshot costs ~100 bytes a trace: keep one peak candidate only
            rivals = [] if self._kept_besides(label, traced) else [
                m for m in self.moments
                if m.raw is not None and not self._kept_besides(m.label, m.traced)]
            if any(m.traced >= traced for m in rivals):
                self._append(TracedMoment(label, t, traced, *self._costs()))
                return True
            small = traced <= self.held_max_bytes
            if not small:  # drop the rivals first: two large raw snapshots may not fit
                self._drop(rivals)
            in_use = self._program_in_use() if self.overhead else None
            raw = tracemalloc.take_snapshot().traces._traces
            if in_use is not None and self.watching:
                self._note_native(in_use, raw)
            if small:
                # The workload runs on whenever this thread gives up the GIL, as it may
                # between reading the total and the snapshot: what counts is what the
                # snapshot holds (summing it costs ~1% of taking it).
                traced = sum(trace[1] for trace in raw)
                if new_high and traced <= self._largest_snapshot:
                    return False  # the rivals, still held, stay the peak
                self._drop(rivals)
            self._append(TracedMoment(label, t, traced, *self._costs(), raw=raw,
                                      glibc_in_use=in_use))
            self._largest_snapshot = max(self._largest_snapshot, traced)
            return True

    def _note_native(self, in_use: int, raw: list) -> None:
        """Keep the high of native memory over every snapshot, not only the largest
        traced high's: `in_use` (glibc's, read just before the raw snapshot `raw` was
        taken) less tracemalloc's own and the traced objects in glibc's chunks. A
        driver's C buffers (libpq's whole result while its rows convert) may be alive
        at a smaller traced high and freed by the largest, and glibc keeps what they
        took for the peak. (Counting the large sizes costs about a tenth of taking the
        snapshot.)"""
        native = native_bytes(in_use, tracemalloc.get_tracemalloc_memory(), len(raw),
                              traced_in_glibc(raw))
        self.native_high_in_use = max(self.native_high_in_use or 0, native)

    def _program_in_use(self) -> int | None:
        """glibc's bytes in use now, less the arrays of the raw snapshots this probe holds
        (untraced lists of a pointer a trace, in glibc's chunks)."""
        in_use = glibc_in_use()
        if in_use is None:
            return None
        empty = sys.getsizeof([])
        held = sum(sys.getsizeof(m.raw) - empty for m in self.moments if m.raw is not None)
        return in_use - held

    def _kept_besides(self, label: str, traced: int) -> bool:
        """Snapshots kept beside the peak candidate rather than competing with it."""
        return (label == self.end_label or label.startswith("after run ")
                or (label == self.held_label and traced <= self.held_max_bytes))

    def _drop(self, rivals: list[TracedMoment]) -> None:
        for moment in rivals:
            moment.raw = None
        self.moments = [m for m in self.moments if m.label != HIGH or m.raw is not None]

    def _append(self, moment: TracedMoment) -> None:
        if moment.label == HIGH:  # only the largest high is worth keeping
            self.moments = [m for m in self.moments if m.label != HIGH]
        self.moments.append(moment)

    @staticmethod
    def _costs() -> tuple[int, int]:
        """RSS and tracemalloc's own memory now (reading RSS gives up the GIL)."""
        return psutil.Process().memory_info().rss, tracemalloc.get_tracemalloc_memory()

    def consider_high(self, traced: int | None, t: float) -> None:
        """Called with each sample and collection: snapshot when traced memory reaches a
        new high. A snapshot costs time in proportion to the traces (seconds for
        millions). Within the free allowance highs are taken at every `fine_step`; after
        it at every `peak_step`, and the next one waits at least twice as long as the
        last one took, so snapshots take at most a third of the rest of the run. Costs
        are CPU time: a loaded machine makes a snapshot longer on the clock, and that
        must not make the probe skip highs."""
        if not self.watching or traced is None or traced < self.min_bytes:
            return
        step = self.fine_step if self._free_left > 0 else self.peak_step
        if (traced >= self._largest_snapshot * step and not self._lock.locked()
                and time.perf_counter() >= self._next_high_at):
            cpu = time.thread_time()
            if not self.snapshot(HIGH, t, new_high=True):
                return
            cost = time.thread_time() - cpu
            if self._free_left > 0:
                self._free_left -= cost
            else:
                self._next_high_at = time.perf_counter() + 2 * cost

    def raw_snapshots(self) -> list[list]:
        """The raw trace lists held until tracing stops (for the census to skip)."""
        return [m.raw for m in self.moments if m.raw is not None]

    def peak_moment(self) -> TracedMoment | None:
        done = [m for m in self.moments if m.breakdown is not None]
        return max(done, key=lambda m: m.breakdown.total, default=None)  # type: ignore[union-attr]

    def moment(self, label: str) -> TracedMoment | None:
        for moment in reversed(self.moments):
            if moment.label == label and moment.breakdown is not None:
                return moment
        return None
