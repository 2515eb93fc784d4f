"""One measured pass, in the process that runs the workload: probes, phase marks, and
the pass's result.

A pass is either bare (RSS sampling and phase marks only, so that RSS is what the
workload alone does) or traced (tracemalloc, snapshots reduced to category breakdowns,
and a census of live types). Nothing of the database stack is imported here: a program
of the user's own must import its own SQLAlchemy first (scenario_pass.py runs
scenarios).
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from typing import Protocol

from sqldiag.capture.attribution.breakdown import Breakdown as TracedBreakdown
from sqldiag.capture.attribution.overhead import native_bytes
from sqldiag.capture.plan import PassKind, PassSpec
from sqldiag.capture.probes import allocator
from sqldiag.capture.probes.allocator_highs import AllocatorHighs
from sqldiag.capture.probes.census import type_census
from sqldiag.capture.probes.live import CensusAt, CensusProbe
from sqldiag.capture.probes.queries import QueryLedger
from sqldiag.capture.probes.retention import measure_holders
from sqldiag.capture.probes.sampler import RssSampler, Sample, WatcherSampler
from sqldiag.capture.probes.tracing import TracedMoment, TracingProbe
from sqldiag.capture.results import PassResult
from sqldiag.record.parts import (
    Breakdown,
    ChildProcess,
    Digest,
    Holder,
    HoldersAt,
    Iteration,
    Mallinfo,
    Phase,
    PymallocStats,
    QueryAt,
    Site,
    SnapshotMark,
    Timeline,
    TypeCensus,
)
from sqldiag.record.phases import (
    AFTER_GC,
    AFTER_TRIM,
    AT_WORKLOAD_END,
    END,
    PEAK,
    READY,
    WORKLOAD_END,
    WORKLOAD_START,
)
from sqldiag.workload.digest import RowDigest

MAX_QUERIES = 50  # statements kept per moment, largest first


class ChildFollower(Protocol):
    """Measures multiprocessing children started between start() and stop()."""

    def start(self) -> None: ...

    def stop(self) -> tuple[ChildProcess, ...]: ...


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so the partial result is still written."""


class MeasuredPass:
    """Runs the workload once under the probes; everything measured is kept as it is
    measured, so a failure half-way still leaves a result with what was measured."""

    def __init__(self, spec: PassSpec, follower: ChildFollower | None = None,
                 watch_file: str | None = None) -> None:
        """`watch_file`: where an RSS watcher process writes its samples (by default a
        temporary file of its own)."""
        self.spec = spec
        self.follower = follower
        self.phases: list[Phase] = []
        self.types: dict[str, TypeCensus] = {}
        self.mallinfo: dict[str, Mallinfo] = {}
        self.pymalloc: dict[str, PymallocStats | None] = {}
        self.file_rss: dict[str, int] = {}
        self.holders: tuple[Holder, ...] | None = None
        self.holders_peak: HoldersAt | None = None  # at the mark where holders held most
        self._holders_lock = threading.Lock()
        self.children: tuple[ChildProcess, ...] = ()
        self._following = False
        self.iterations: list[tuple[int, str, dict[str, int]]] = []  # run, label, types
        self.trim_done = False
        self.wall_time = 0.0
        self.failure: str | None = None
        self.in_workload = False  # True while the scenario's own code runs
        # the process's RSS before sqldiag's modules were imported (`sqldiag run` reads it)
        self.interpreter_rss: int | None = None
        self._started = time.monotonic()
        self.digest: RowDigest | None = None
        self.server_version = "unknown"
        self.tracing = TracingProbe(spec.trace_depth, overhead=spec.allocation_overhead) \
            if spec.traced else None
        # the allocators at the peak of RSS, for the parts of RSS the record reports
        self.allocator_highs = AllocatorHighs(clock=lambda: self.sampler.now()) \
            if spec.allocator_highs else None
        renamed = {spec.table: spec.statements_table} \
            if spec.statements_table and spec.statements_table != spec.table else None
        self.censuses = CensusProbe(ledger=QueryLedger(renamed=renamed)) \
            if spec.census_at_highs and not spec.traced else None
        # a census run's ledger is its census probe's; else one of its own when asked
        self.ledger = self.censuses.ledger if self.censuses is not None else (
            QueryLedger() if spec.statements else None)
        if self.tracing is not None and self.ledger is not None:
            self.tracing.statement_lines = self.ledger.lines  # bytes by statement, traced
        self.sampler: RssSampler = (
            WatcherSampler(spec.sample_period, spec.max_rss, out=watch_file)
            if spec.kind in (PassKind.BARE, PassKind.PROGRAM)
            else RssSampler(spec.sample_period, on_traced=(
                self.tracing.consider_high if self.tracing is not None else None)))
        self._lock = threading.Lock()

    def mark(self, name: str, snapshot: bool | None = None) -> None:
        """Record a phase; snapshot=None lets the tracing probe decide (new highs only)."""
        name = str(name)[:200]
        sample = self.sampler.sample()
        with self._lock:
            self.phases.append(Phase(name=name, t=round(sample.t, 4), rss=sample.rss,
                                     traced=sample.traced,
                                     tracemalloc_overhead=sample.overhead))
        if self.spec.measure_holders and self.in_workload:
            self._holders_at(name)
        if self.censuses is not None and snapshot:
            self.censuses.mark(name)
        if self.tracing is None:
            return
        if snapshot:
            self.tracing.snapshot(name, sample.t)
        elif snapshot is None:
            self.tracing.consider_high(sample.traced, sample.t)

    def _holders_at(self, label: str) -> None:
        """Holders at a mark inside the workload; the largest measurement is the peak
        view (for a pool, the results its result objects hold until they are fetched).
        A mark that comes while another thread measures waits its turn: the worker
        that marks cannot hand its result over meanwhile, so the last worker's mark
        still sees every other result held."""
        with self._holders_lock:
            holders = measure_holders(None)
            total = sum(h.bytes for h in holders)
            if self.holders_peak is None or total > self.holders_peak.bytes:
                self.holders_peak = HoldersAt(label=label, bytes=total, holders=holders)

    def _allocator_state(self, phase: str) -> None:
        """glibc's and pymalloc's own figures at a phase."""
        now = allocator.reading()
        self.mallinfo[phase], self.pymalloc[phase] = now.glibc, now.pymalloc
        if now.file_rss is not None:
            self.file_rss[phase] = now.file_rss

    def begin(self, collect: bool = True) -> None:
        """Start the probes and mark "ready" and "workload start" (after a full
        collection unless `collect` is False)."""
        if collect:
            gc.collect()
        self.sampler.start()
        self.mark(READY, snapshot=False)
        self._allocator_state(READY)
        if self.allocator_highs is not None:
            self.allocator_highs.start()
        if self.tracing is not None:
            self.tracing.start(clock=self.sampler.now)
        if self.censuses is not None:
            self.censuses.start(clock=self.sampler.now)
        elif self.ledger is not None:
            self.ledger.start()
        if self.follower is not None:
            self.follower.start()
            self._following = True
        self._started = time.monotonic()
        self.mark(WORKLOAD_START, snapshot=False)
        if self.tracing is not None:
            self.tracing.watching = True
        if self.censuses is not None:
            self.censuses.watching = True

    def finish(self, held: list, trim: bool = True) -> None:
        """Mark the end phases while the results in `held` are still alive, then empty it
        (it must be their only holder) and measure what stays; `trim` runs the
        malloc_trim(0) probe on a bare pass."""
        self.wall_time = time.monotonic() - self._started
        if self.allocator_highs is not None:
            self.allocator_highs.stop()  # what follows is measuring, not the work
        if self.tracing is not None:
            self.tracing.watching = False
        if self.censuses is not None:
            self.censuses.watching = False
        self.mark(WORKLOAD_END, snapshot=True)
        if self.spec.measure_holders and held:
            self.holders = measure_holders(held[0])
        # a scenario's bare pass gives RSS only: the record's census of types is the
        # traced pass's (about a second at a million objects, not spent twice)
        census = self.spec.census and self.spec.kind is not PassKind.BARE
        if census:
            self.types[PEAK] = type_census(exclude=self._own_data())
        kept_some = bool(held)
        held.clear()
        freed = gc.collect()
        if kept_some or self.censuses is None or self.censuses.mark_unchanged(
                AFTER_GC, WORKLOAD_END, freed) is None:
            self.mark(AFTER_GC, snapshot=True)
        else:  # the same objects alive: the end's census stands (see mark_unchanged)
            self.mark(AFTER_GC, snapshot=False)
        self._allocator_state(AFTER_GC)
        if census:
            self.types[END] = type_census(exclude=self._own_data())
        if self.tracing is not None or not trim:
            return  # trimming a traced heap says nothing about the bare workload
        if allocator.malloc_trim():
            self.trim_done = True
            self.mark(AFTER_TRIM, snapshot=False)
            self._allocator_state(AFTER_TRIM)

    def end_in_process(self, failure: str | None, trim: bool = False) -> PassResult:
        """End a pass whose workload ran in this process's own code (a program, a capture,
        a followed child): mark the end phases, stop the probes, return the result;
        `trim` runs the malloc_trim(0) probe (only where the workload is over)."""
        self.in_workload = False
        try:
            self.finish([], trim=trim)
        finally:
            self.close()
        self.failure = failure
        return self.result()

    def close(self) -> None:
        """Stop the probes; traced snapshots are reduced here, followed children read."""
        if self._following and self.follower is not None:
            self._following = False
            self.children = self.follower.stop()
        if self.tracing is not None:
            self.tracing.stop()
        if self.censuses is not None:
            self.censuses.stop()
        elif self.ledger is not None:
            self.ledger.stop()
        if self.allocator_highs is not None:
            self.allocator_highs.stop()
        self.sampler.stop()

    def _iterations(self) -> tuple[Iteration, ...]:
        """Per repeat run: traced bytes by category and live objects by type."""
        out = []
        for run, label, types in self.iterations:
            moment = self.tracing.moment(label) if self.tracing else None
            reduced = moment.breakdown if moment is not None else None
            out.append(Iteration(run=run, types=types,
                                 traced=reduced.total if reduced else None,
                                 categories=dict(reduced.categories) if reduced else {}))
        return tuple(out)

    def _own_data(self) -> list:
        return self.tracing.raw_snapshots() if self.tracing is not None else []

    def _breakdowns(self) -> dict[str, Breakdown]:
        if self.censuses is not None:
            return self._census_breakdowns(self.censuses)
        tracing = self.tracing
        if tracing is None:
            return {}
        moments = ((PEAK, tracing.peak_moment()), (AT_WORKLOAD_END, tracing.moment(WORKLOAD_END)),
                   (END, tracing.moment(AFTER_GC)))
        ready = self.mallinfo.get(READY)
        in_use = ready.all_in_use if ready is not None else None
        out = {key: _breakdown(moment, self.ledger, in_use) for key, moment in moments
               if moment is not None and moment.breakdown is not None}
        peak, high = out.get(PEAK), tracing.native_high_in_use
        if peak is not None and peak.native is not None and high is not None \
                and in_use is not None:
            # native memory at its high: glibc keeps it for the peak once freed
            out[PEAK] = replace(peak, native=max(peak.native, high - in_use))
        return out

    @staticmethod
    def _census_breakdowns(probe: CensusProbe) -> dict[str, Breakdown]:
        moments = ((PEAK, probe.highest), (AT_WORKLOAD_END, probe.marks.get(WORKLOAD_END)),
                   (END, probe.marks.get(AFTER_GC)))
        return {key: census_breakdown(at, probe.ledger) for key, at in moments
                if at is not None}

    def _census_holders(self) -> tuple[Holder, ...] | None:
        """Who kept the results alive at the workload's end, as its census found."""
        at = self.censuses.marks.get(WORKLOAD_END) if self.censuses is not None else None
        return at.census.holders if at is not None and at.census.holders else None

    def _census_holders_peak(self) -> HoldersAt | None:
        """Who kept the results alive at the census that found the most alive."""
        at = self.censuses.highest if self.censuses is not None else None
        if at is None or not at.census.holders:
            return None
        return HoldersAt(label=at.label, bytes=sum(h.bytes for h in at.census.holders),
                         holders=at.census.holders)

    def result(self) -> PassResult:
        """The pass's measurements as plain data."""
        samples = self.sampler.samples
        tracing = self.tracing
        return PassResult(
            kind=self.spec.kind,
            rows=self.spec.rows,
            workers=self.spec.workers,
            failure=self.failure,
            server_version=self.server_version,
            # so far, for a result taken mid-run (a checkpoint, the memory guard)
            wall_time_s=round(self.wall_time or time.monotonic() - self._started, 3),
            sample_period_s=self.spec.sample_period,
            trace_depth=self.spec.trace_depth if tracing else 0,
            traced_peak=tracing.traced_peak if tracing else None,
            analysis=tracing.analysis if tracing else None,
            uss_sampled=any(s.uss is not None for s in samples),
            snapshots=tuple(SnapshotMark(m.label, round(m.t, 4), m.traced)
                            for m in (tracing.moments if tracing else [])),
            censuses=tuple(self.censuses.taken) if self.censuses is not None else (),
            timeline=timeline_of(samples),
            child_peaks={str(pid): peak for pid, peak in self.sampler.child_peaks.items()},
            children=self.children,
            t0_unix=round(time.time() - self.sampler.now(), 4),
            phases=tuple(self.phases),
            breakdowns=self._breakdowns(),
            types=dict(self.types),
            mallinfo=dict(self.mallinfo),
            pymalloc=dict(self.pymalloc),
            file_rss=dict(self.file_rss),
            allocator_high=self.allocator_highs.highest
            if self.allocator_highs is not None else None,
            malloc_trim=self.trim_done,
            holders=self.holders if self.holders is not None else self._census_holders(),
            holders_peak=self.holders_peak or self._census_holders_peak(),
            iterations=self._iterations(),
            digest=Digest(**self.digest.to_dict()) if self.digest is not None else None,
            statements=statements(self.ledger) if self.ledger is not None else (),
            own_rss=self._own_rss(),
        )

    def _own_rss(self) -> int | None:
        """RSS at "ready" above the interpreter's before sqldiag's imports (see
        Measurement.own_rss), where that was read."""
        ready = next((p for p in self.phases if p.name == READY), None)
        if self.interpreter_rss is None or ready is None:
            return None
        return max(0, ready.rss - self.interpreter_rss)


def timeline_of(samples: list[Sample]) -> Timeline:
    """RSS samples, in order, as the record's timeline."""
    return Timeline(t=tuple(round(s.t, 4) for s in samples),
                    rss=tuple(s.rss for s in samples),
                    uss=tuple(s.uss for s in samples),
                    traced=tuple(s.traced for s in samples),
                    overhead=tuple(s.overhead for s in samples),
                    children_rss=tuple(s.children_rss for s in samples))


def census_breakdown(at: CensusAt, ledger: QueryLedger) -> Breakdown:
    """A census as a breakdown: categories and the statements that loaded them, no
    allocation sites (nothing was traced)."""
    categories = dict(at.census.categories)
    imported = at.census.imported
    return Breakdown(total=sum(categories.values()), categories=categories, label=at.label,
                     t=round(at.t, 4), rss=at.rss, queries=statements(ledger, at.census.queries),
                     imported_code=imported.total, imported_modules=imported.modules,
                     outside_pymalloc=at.census.outside_pymalloc)


def statements(ledger: QueryLedger, held: dict | None = None) -> tuple[QueryAt, ...]:
    """Every statement the program ran, with what its results held (`held`: bytes by
    category and instances alive, by key; none without it)."""
    held = held or {}
    out = []
    for key, stats in list(ledger.stats.items()):
        categories, objects = held.get(key, ({}, 0))
        site = stats.site
        out.append(QueryAt(statement=stats.statement, file=site.file if site else "",
                           line=site.line if site else 0,
                           function=site.function if site else "",
                           source=site.source if site else "",
                           executions=stats.executions, rows=stats.rows, objects=objects,
                           categories=dict(categories)))
    out.sort(key=lambda q: (-q.total, -q.executions))
    return tuple(out[:MAX_QUERIES])


def _breakdown(moment: TracedMoment, ledger: QueryLedger | None = None,
               ready_in_use: int | None = None) -> Breakdown:
    """A traced moment's reduced breakdown as a record part; with a ledger, the bytes
    allocated below each statement's line (instances alive are not counted: 0); with
    glibc's bytes in use before tracing and at the snapshot, the native memory then."""
    reduced: TracedBreakdown = moment.breakdown  # type: ignore[assignment]
    native = native_bytes(moment.glibc_in_use - ready_in_use, moment.overhead,
                          reduced.traces, reduced.in_glibc) \
        if None not in (moment.glibc_in_use, ready_in_use, reduced.in_glibc) else None
    queries = statements(ledger, {key: (categories, 0) for key, categories
                                  in reduced.queries.items()}) if ledger is not None else ()
    return Breakdown(
        queries=queries,
        total=reduced.total, categories=dict(reduced.categories), counts=dict(reduced.counts),
        sites=tuple(Site(category=s.category, file=s.file, function=s.function, line=s.line,
                         size=s.size, count=s.count, traceback=tuple(s.traceback))
                    for s in reduced.sites),
        label=moment.label, t=round(moment.t, 4), traced=moment.traced, rss=moment.rss,
        tracemalloc_overhead=moment.overhead, allocation_overhead=reduced.overhead,
        native=native)
