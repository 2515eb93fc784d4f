"""One measured pass of a scenario, in the process that runs the workload.

A pass is either bare (RSS sampling and phase marks only, so that RSS is what the
workload alone does) or traced (tracemalloc, snapshots reduced to category breakdowns,
and a census of live types). The orchestrator runs each pass in its own child process
and merges their results into one record.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy.orm import sessionmaker

from sqldiag import database, follow
from sqldiag.digest import RowDigest
from sqldiag.probes import allocator
from sqldiag.probes.census import live_type_counts, type_census
from sqldiag.probes.pymalloc import pymalloc_stats
from sqldiag.probes.retention import measure_holders
from sqldiag.probes.sampler import RssSampler, WatcherSampler
from sqldiag.probes.tracing import TracingProbe
from sqldiag.processes import child_entry
from sqldiag.scenario_api import ScenarioContext
from sqldiag.scenarios import ScenarioFile, load_module
from sqldiag.schema import build_schema

# Phase names, shared with the analysis and the reports.
READY = "ready"
WORKLOAD_START = "workload start"
WORKLOAD_END = "workload end"
AFTER_GC = "after gc.collect()"
AFTER_TRIM = "after malloc_trim(0)"


@dataclass
class PassSpec:
    """What one pass runs; plain data so it can travel to a child process as JSON."""

    kind: str  # "bare" or "traced"
    scenario_name: str
    scenario_path: str
    table: str
    rows: int
    workers: int
    options: dict[str, str] = field(default_factory=dict)
    trace_depth: int = 0
    census: bool = False
    sample_period: float = 0.05
    connect_timeout: float = 10.0
    max_rss: int | None = None  # stop the workload when RSS passes this many bytes
    # after a bare pass, traced calibration runs in the same process: [[table, rows], ...]
    calibration: list[list] = field(default_factory=list)
    calibration_depth: int = 4
    repeat: int = 0  # kind "repeat": run the workload this many times, measuring each end
    # after the pass's own work, an untraced run at [table, rows] that measures holders
    retention: list = field(default_factory=list)
    measure_holders: bool = False  # set on that run: measure holders at workload end
    follow_children: bool = False  # measure multiprocessing children in themselves

    @property
    def traced(self) -> bool:
        return self.kind in ("traced", "repeat") and self.trace_depth > 0


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so the partial result is still written."""


class MeasuredPass:
    """Runs the workload once under the probes; everything measured is kept as it is
    measured, so a failure half-way still leaves a result with what was measured."""

    def __init__(self, spec: PassSpec) -> None:
        self.spec = spec
        self.phases: list[dict[str, Any]] = []
        self.types: dict[str, dict] = {}
        self.mallinfo: dict[str, dict] = {}
        self.pymalloc: dict[str, dict | None] = {}
        self.holders: list[dict] | None = None
        self.holders_peak: dict | None = None  # holders at the mark where they held most
        self._holders_lock = threading.Lock()
        self.children: list[dict] = []  # results the followed child processes wrote
        self._spool: Path | None = None
        self.trim_done = False
        self.wall_time = 0.0
        self.failure: str | None = None
        self.in_workload = False  # True while the scenario's own code runs
        self._started = time.monotonic()
        self.digest: RowDigest | None = None
        self.server_version = "unknown"
        self.tracing = TracingProbe(spec.trace_depth) if spec.traced else None
        self.sampler: RssSampler = (
            WatcherSampler(spec.sample_period, spec.max_rss) if spec.kind == "bare"
            else RssSampler(spec.sample_period, on_traced=(
                self.tracing.consider_high if self.tracing is not None else None)))
        self._lock = threading.Lock()

    def mark(self, name: str, snapshot: bool | None = None) -> None:
        """Record a phase; snapshot=None lets the tracing probe decide (new highs only)."""
        name = str(name)[:200]
        sample = self.sampler.sample()
        with self._lock:
            self.phases.append({"name": name, "t": round(sample.t, 4), "rss": sample.rss,
                                "traced": sample.traced,
                                "tracemalloc_overhead": sample.overhead})
        if self.spec.measure_holders and self.in_workload:
            self._holders_at(name)
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
            total = sum(h["bytes"] for h in holders)
            if self.holders_peak is None or total > self.holders_peak["bytes"]:
                self.holders_peak = {"label": label, "bytes": total, "holders": holders}

    def execute(self, url) -> None:
        engine = database.open_engine(url, pool_size=self.spec.workers,
                                      connect_timeout=self.spec.connect_timeout)
        try:
            self.server_version = database.server_version(engine)
            schema = build_schema(self.spec.table)
            module = load_module(ScenarioFile(self.spec.scenario_name,
                                              Path(self.spec.scenario_path)))
            ctx = ScenarioContext(engine=engine, Session=sessionmaker(engine), User=schema.User,
                                  table=schema.table, rows=self.spec.rows,
                                  workers=self.spec.workers, mark=self.mark,
                                  options=dict(self.spec.options))
            self.digest = ctx.digest
            if self.spec.kind == "repeat":
                self._repeat(module, ctx)
            else:
                self._workload(module, ctx)
        finally:
            self.close()
            engine.dispose()

    def _workload(self, module: ModuleType, ctx: ScenarioContext) -> None:
        self.begin()
        self.in_workload = True
        held = [module.run(ctx)]  # the only reference: finish() empties it
        self.in_workload = False
        self.finish(held)

    def _repeat(self, module: ModuleType, ctx: ScenarioContext) -> None:
        """Leak or peak: run the workload again and again; after each run, with its
        results dropped and gc.collect(), count live objects by type and snapshot the
        traced heap (reduced to categories after tracing stops)."""
        self.begin()
        self.iterations: list[dict] = []
        for index in range(self.spec.repeat):
            self.in_workload = True
            held = [module.run(ctx)]
            self.in_workload = False
            held.clear()
            gc.collect()
            label = f"after run {index + 1}"
            self.mark(label, snapshot=True)
            self.iterations.append({"run": index + 1, "label": label,
                                    "types": live_type_counts()})
        self.wall_time = time.monotonic() - self._started
        if self.tracing is not None:
            self.tracing.watching = False

    def begin(self, collect: bool = True) -> None:
        """Start the probes and mark "ready" and "workload start" (after a full
        collection unless `collect` is False)."""
        if collect:
            gc.collect()
        self.sampler.start()
        self.mark(READY, snapshot=False)
        self.mallinfo[READY] = allocator.mallinfo() or {}
        self.pymalloc[READY] = pymalloc_stats()
        if self.tracing is not None:
            self.tracing.start(clock=self.sampler.now)
        if self.spec.follow_children:
            self._spool = Path(tempfile.mkdtemp(prefix="sqldiag-children-"))
            follow.enable(self._spool, self.spec.trace_depth or 8)
        self._started = time.monotonic()
        self.mark(WORKLOAD_START, snapshot=False)
        if self.tracing is not None:
            self.tracing.watching = True

    def finish(self, held: list, trim: bool = True) -> None:
        """Mark the end phases while the results in `held` are still alive, then empty it
        (it must be their only holder) and measure what stays; `trim` runs the
        malloc_trim(0) probe on a bare pass."""
        self.wall_time = time.monotonic() - self._started
        if self.tracing is not None:
            self.tracing.watching = False
        self.mark(WORKLOAD_END, snapshot=True)
        if self.spec.measure_holders and held:
            self.holders = measure_holders(held[0])
        if self.spec.census:
            self.types["peak"] = type_census(exclude=self._own_data())
        held.clear()
        gc.collect()
        self.mark(AFTER_GC, snapshot=True)
        self.mallinfo[AFTER_GC] = allocator.mallinfo() or {}
        self.pymalloc[AFTER_GC] = pymalloc_stats()
        if self.spec.census:
            self.types["end"] = type_census(exclude=self._own_data())
        if self.tracing is not None or not trim:
            return  # trimming a traced heap says nothing about the bare workload
        if allocator.malloc_trim():
            self.trim_done = True
            self.mark(AFTER_TRIM, snapshot=False)
            self.mallinfo[AFTER_TRIM] = allocator.mallinfo() or {}
            self.pymalloc[AFTER_TRIM] = pymalloc_stats()

    def end_in_process(self, failure: str | None) -> dict[str, Any]:
        """End a pass whose workload ran in this process's own code (a capture, a
        followed child): mark the end phases, stop the probes, return the result."""
        self.in_workload = False
        try:
            self.finish([], trim=False)
        finally:
            self.close()
        self.failure = failure
        return self.result()

    def close(self) -> None:
        """Stop the probes; traced snapshots are reduced here, followed children read."""
        if self._spool is not None:
            follow.disable()
            self.children = follow.collect(self._spool)
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        if self.tracing is not None:
            self.tracing.stop()
        self.sampler.stop()

    def _iterations(self) -> list[dict]:
        """Per repeat run: traced bytes by category and live objects by type."""
        out = []
        for entry in getattr(self, "iterations", []):
            moment = self.tracing.moment(entry["label"]) if self.tracing else None
            out.append({"run": entry["run"], "types": entry["types"],
                        "traced": moment.breakdown.total if moment and moment.breakdown else None,
                        "categories": moment.breakdown.categories
                        if moment and moment.breakdown else {}})
        return out

    def _own_data(self) -> list:
        return self.tracing.raw_snapshots() if self.tracing is not None else []

    def result(self) -> dict[str, Any]:
        """The pass's measurements as plain data."""
        samples = self.sampler.samples
        tracing = self.tracing
        breakdowns: dict[str, dict] = {}
        if tracing is not None:
            for key, moment in (("peak", tracing.peak_moment()),
                                ("workload_end", tracing.moment(WORKLOAD_END)),
                                ("end", tracing.moment(AFTER_GC))):
                if moment is not None:
                    breakdowns[key] = {"label": moment.label, "t": round(moment.t, 4),
                                       "traced": moment.traced, "rss": moment.rss,
                                       "tracemalloc_overhead": moment.overhead,
                                       **moment.breakdown.to_dict()}
        return {
            "kind": self.spec.kind,
            "holders": self.holders,
            "iterations": self._iterations(),
            "digest": self.digest.to_dict() if self.digest is not None else None,
            "rows": self.spec.rows,
            "workers": self.spec.workers,
            "failure": self.failure,
            "server_version": self.server_version,
            "wall_time_s": round(self.wall_time, 3),
            "sample_period_s": self.spec.sample_period,
            "trace_depth": self.spec.trace_depth if tracing else 0,
            "traced_peak": tracing.traced_peak if tracing else None,
            "analysis": tracing.analysis if tracing else None,
            "uss_sampled": any(s.uss is not None for s in samples),
            "snapshots": [{"label": m.label, "t": round(m.t, 4), "traced": m.traced}
                          for m in (tracing.moments if tracing else [])],
            "timeline": {"t": [round(s.t, 4) for s in samples], "rss": [s.rss for s in samples],
                         "uss": [s.uss for s in samples], "traced": [s.traced for s in samples],
                         "overhead": [s.overhead for s in samples],
                         "children_rss": [s.children_rss for s in samples]},
            "child_peaks": {str(pid): peak for pid, peak in self.sampler.child_peaks.items()},
            "children": [child_entry(child) for child in self.children],
            "t0_unix": round(time.time() - self.sampler.now(), 4),  # wall time of t=0
            "phases": list(self.phases),
            "breakdowns": breakdowns,
            "types": self.types,
            "mallinfo": self.mallinfo,
            "pymalloc": self.pymalloc,
            "malloc_trim": self.trim_done,
        }
