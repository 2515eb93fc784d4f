"""What one measured pass hands back: plain data, typed, and JSON for the trip from the
process that measured to the one that assembles the record."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqldiag.capture.plan import PassKind
from sqldiag.record.codec import JsonValue
from sqldiag.record.parts import (
    AllocatorHigh,
    Breakdown,
    CensusMark,
    ChildProcess,
    Digest,
    Holder,
    HoldersAt,
    Iteration,
    Mallinfo,
    Phase,
    PymallocStats,
    QueryAt,
    Reduction,
    Retention,
    SnapshotMark,
    Timeline,
    TypeCensus,
)


@dataclass(frozen=True)
class PassResult(JsonValue):
    kind: PassKind
    rows: int
    workers: int
    failure: str | None
    wall_time_s: float
    sample_period_s: float
    timeline: Timeline
    phases: tuple[Phase, ...]
    t0_unix: float  # wall-clock time of the timeline's t=0
    server_version: str = "unknown"
    trace_depth: int = 0
    traced_peak: int | None = None
    analysis: Reduction | None = None
    uss_sampled: bool = False
    snapshots: tuple[SnapshotMark, ...] = ()
    censuses: tuple[CensusMark, ...] = ()
    breakdowns: dict[str, Breakdown] = field(default_factory=dict)
    types: dict[str, TypeCensus] = field(default_factory=dict)
    mallinfo: dict[str, Mallinfo] = field(default_factory=dict)
    pymalloc: dict[str, PymallocStats | None] = field(default_factory=dict)
    allocator_high: AllocatorHigh | None = None
    file_rss: dict[str, int] = field(default_factory=dict)
    malloc_trim: bool = False
    child_peaks: dict[str, int] = field(default_factory=dict)  # pid -> RSS peak of children not followed
    children: tuple[ChildProcess, ...] = ()  # followed children, reduced
    holders: tuple[Holder, ...] | None = None
    holders_peak: HoldersAt | None = None
    iterations: tuple[Iteration, ...] = ()
    digest: Digest | None = None
    statements: tuple[QueryAt, ...] = ()  # what the pass's ledger counted (no bytes)
    own_rss: int | None = None  # see Measurement.own_rss
    # filled in after the pass's own work, in the same process or by the runner
    calibration: tuple[PassResult, ...] = ()
    retention: Retention | None = None
    exit_code: int = 0
    # a followed multiprocessing child says who it was
    pid: int | None = None
    ppid: int | None = None
    name: str | None = None
    start_method: str | None = None
