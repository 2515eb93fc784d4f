"""The run record as frozen value classes: what was measured, nothing derived.

Every part reads from JSON with `Part.from_json(data)` (checked field by field; see
codec.py) and writes with `part.to_json()`. Summary figures, categories with
the parts of RSS, kept-alive views and the verdict are not here: the analysis stage
computes them from these parts whenever a record is read, so an old record gets
today's analysis.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqldiag.record.categories import STATEMENT_CACHE, TRACED
from sqldiag.record.codec import JsonValue

FORMAT = "sqldiag-run"
SCHEMA_VERSION = 2  # 2: derived figures are no longer stored; 1 still loads


class Method(str, enum.Enum):
    """How the categories of a run were measured."""

    RSS_ONLY = "rss-only"  # no tracing: RSS only
    IN_PROCESS = "in-process-trace"  # the program traced in its own process
    FULL_TRACE = "full-trace"  # a second, traced run at full size
    SCALED_TRACE = "scaled-trace"  # a traced run on fewer rows, scaled up
    CALIBRATED = "calibrated"  # traced at three small sizes, fitted fixed + per-row
    CENSUS = "census"  # untraced; censuses of live objects at RSS highs


@dataclass(frozen=True)
class Status(JsonValue):
    complete: bool = True
    reason: str | None = None
    # the measured process's exit status: a program's own sys.exit(N) at its end (as
    # pytest's with failed tests; the run is complete), 130 when interrupted, ...
    exit_code: int = 0


@dataclass(frozen=True)
class RunParams(JsonValue):
    """The workload's size, as the command line gave it."""

    rows: int
    workers: int
    text_bytes: int | None = None
    table: str = "users"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario(JsonValue):
    name: str
    source: str = "builtin"  # "builtin", "file", "run", "capture", "pytest"
    path: str = ""
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)
    params: RunParams | None = None  # None for a program or block of the user's own


@dataclass(frozen=True)
class Database(JsonValue):
    url: str | None = None  # password removed
    dialect: str | None = None
    driver: str | None = None
    server_version: str | None = None


@dataclass(frozen=True)
class DriverPackage(JsonValue):
    package: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Environment(JsonValue):
    sqldiag: str | None = None
    python: str | None = None
    python_implementation: str | None = None
    sqlalchemy: str | None = None
    sqlalchemy_compiled: bool = False
    driver: DriverPackage = field(default_factory=DriverPackage)
    os: str | None = None
    libc: str | None = None
    machine: str | None = None
    cpus: int | None = None
    memory_total: int | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase(JsonValue):
    """A mark on the timeline: its time, RSS, traced bytes and tracemalloc's own memory."""

    name: str
    t: float
    rss: int
    traced: int | None = None
    tracemalloc_overhead: int | None = None

    @property
    def net_rss(self) -> int:
        """RSS less tracemalloc's own memory (the same as RSS in an untraced run)."""
        return self.rss - (self.tracemalloc_overhead or 0)


@dataclass(frozen=True)
class Timeline(JsonValue):
    """RSS samples; `overhead` is tracemalloc's own memory at each sample."""

    t: tuple[float, ...] = ()
    rss: tuple[int, ...] = ()
    uss: tuple[int | None, ...] = ()
    traced: tuple[int | None, ...] = ()
    overhead: tuple[int | None, ...] = ()
    children_rss: tuple[int | None, ...] = ()

    def net_rss(self) -> list[int]:
        """RSS net of tracemalloc's own memory, sample by sample."""
        overhead = self.overhead or (0,) * len(self.rss)
        return [r - (o or 0) for r, o in zip(self.rss, overhead)]

    def net_uss(self) -> list[int]:
        overhead = self.overhead or (0,) * len(self.uss)
        return [u - (o or 0) for u, o in zip(self.uss, overhead) if u]


@dataclass(frozen=True)
class Site(JsonValue):
    """Where a category's bytes were allocated: the frame that decided the category."""

    category: str
    file: str
    function: str
    line: int
    size: int = 0
    count: int = 0
    traceback: tuple[str, ...] = ()  # most recent frame first


@dataclass(frozen=True)
class QueryAt(JsonValue):
    """One SQL statement run from one line of the program, and what the results it
    loaded held at one moment. The statement has no values: bound parameters are never
    read, and literals in its text are replaced with `?`."""

    statement: str
    file: str  # the program's own frame that ran it ("" when none was found)
    line: int
    function: str
    source: str = ""  # that line's code, its literals masked
    executions: int = 0
    rows: int = 0  # rows the driver reported fetching, over all executions (0: not told)
    objects: int = 0  # mapped instances it loaded that were alive at the moment
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.categories.values())

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} in {self.function}" if self.file else "(no frame)"


@dataclass(frozen=True)
class Breakdown(JsonValue):
    """Traced bytes per category at one moment of a traced run."""

    total: int
    categories: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    sites: tuple[Site, ...] = ()
    label: str = ""
    t: float = 0.0
    traced: int | None = None
    rss: int | None = None
    tracemalloc_overhead: int | None = None
    queries: tuple[QueryAt, ...] = ()  # largest first; censuses only
    # the allocators' bytes beyond the traced ones (size classes, pool tails, chunk
    # headers), from the traced sizes, and C memory in use that is no Python object
    # (glibc's in use less tracemalloc's own and the traced objects it holds; at the peak,
    # the most any snapshot of the run found, freed or not by then); calibration runs only
    allocation_overhead: int | None = None
    native: int | None = None
    # censuses only: the part of other_python that is the code of the modules imported
    # during the work (see capture/probes/imported_code.py), and how many modules
    imported_code: int | None = None
    imported_modules: int | None = None
    # censuses only: of `categories`, the bytes measured in blocks that glibc serves (over
    # pymalloc's 512 bytes), which the split of RSS takes from glibc's bytes in use
    outside_pymalloc: int | None = None

    def category(self, name: str) -> int:
        return int(self.categories.get(name, 0))


@dataclass(frozen=True)
class SnapshotMark(JsonValue):
    label: str
    t: float
    traced: int


@dataclass(frozen=True)
class CensusMark(JsonValue):
    """One census of live objects: when, at what RSS, and how long the program waited."""

    label: str
    t: float
    rss: int
    seconds: float
    objects: int
    # from its start to its end: more than `seconds` where it took turns with the program
    wall_s: float | None = None
    # bytes by category it found alive (what grew from one census to the next is how
    # the analysis extends the peak census to the peak of RSS)
    categories: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Reduction(JsonValue):
    """What reducing raw snapshots to categories cost, after tracing stopped."""

    seconds: float
    traces: int
    rss_before: int | None = None
    rss_after: int | None = None


# Calibration points further than this from their line: the workload is not linear in
# rows at these sizes (a batch or page limit, or a missed transient peak).
MODEL_MAX_RESIDUAL = 0.03


@dataclass(frozen=True)
class CalibrationModel(JsonValue):
    """Per moment and category, a least-squares line (fixed, per row) through the
    calibration runs; `linearity` is the worst relative residual of the total."""

    rows: tuple[int, ...]
    fits: dict[str, dict[str, tuple[float, ...]]]
    linearity: dict[str, float | None] = field(default_factory=dict)
    # per moment, the lines of what the allocators add to the traced bytes and of native
    # memory (C memory in use that is not a Python object)
    overhead: dict[str, tuple[float, ...]] = field(default_factory=dict)
    native: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def predict(self, moment: str, rows: int) -> dict[str, int]:
        """Predicted traced bytes per category at `rows` rows (never negative)."""
        fits = self.fits.get(moment) or {}
        predicted = {c: _on_line(line, rows) for c, line in fits.items()}
        return {c: bytes_ for c, bytes_ in predicted.items() if bytes_ is not None}

    def predict_overhead(self, moment: str, rows: int) -> int | None:
        """Predicted allocator overhead on the traced bytes at `rows` rows (None for a
        model without it: older records)."""
        return _on_line(self.overhead.get(moment), rows)

    def predict_native(self, moment: str, rows: int) -> int | None:
        """Predicted native memory at `rows` rows (None for a model without it)."""
        return _on_line(self.native.get(moment), rows)


def _on_line(line: tuple[float, ...] | None, rows: int) -> int | None:
    return max(0, int(line[0] + line[1] * rows)) if line and len(line) == 2 else None


@dataclass(frozen=True)
class CalibrationRun(JsonValue):
    rows: int
    wall_time_s: float
    peak_total: int | None = None
    end_total: int | None = None


@dataclass(frozen=True)
class Measurement(JsonValue):
    """How the run was measured and what measuring cost."""

    method: Method
    trace_depth: int = 0
    traced_rows: int | None = None
    scale: float | None = None  # traced categories x this = full size (scaled-trace)
    sample_period_s: float = 0.05
    uss_sampled: bool = False
    census: bool = False
    traced_peak: int | None = None  # tracemalloc's own peak in the traced run
    traced_wall_time_s: float | None = None
    analysis: Reduction | None = None
    traced_phases: tuple[Phase, ...] = ()
    snapshots: tuple[SnapshotMark, ...] = ()
    model: CalibrationModel | None = None
    calibration: tuple[CalibrationRun, ...] = ()
    full_rows: int | None = None
    censuses: tuple[CensusMark, ...] = ()
    # `sqldiag run`: the RSS sqldiag's own modules and threads took in the program's
    # process before the program started (RSS when ready less the interpreter's alone).
    # Not taken off the RSS figures: the program may import many of the same modules
    # (a program that imports SQLAlchemy and keeps 20,000 rows peaked 18% below its bare
    # run with it taken off, 5% above with it left in)
    own_rss: int | None = None

    @property
    def traced(self) -> bool:
        return self.method is not Method.RSS_ONLY


@dataclass(frozen=True)
class TypeCount(JsonValue):
    type: str
    count: int
    size: int


@dataclass(frozen=True)
class TypeCensus(JsonValue):
    """The object types holding the most bytes (shallow sizes, sampled above limits)."""

    types: tuple[TypeCount, ...] = ()
    sampled_every: int = 1
    atoms_sampled_every: int = 1
    containers: int = 0


@dataclass(frozen=True)
class Mallinfo(JsonValue):
    """glibc's heap statistics at a phase (mallinfo2)."""

    arena_bytes: int | None = None
    mmap_bytes: int | None = None
    in_use_bytes: int | None = None
    free_bytes: int | None = None
    releasable_bytes: int | None = None
    arenas: int | None = None

    @property
    def all_in_use(self) -> int | None:
        """Bytes in use in glibc's heaps and its mmapped chunks (None when unknown)."""
        if self.in_use_bytes is None:
            return None
        return self.in_use_bytes + (self.mmap_bytes or 0)


@dataclass(frozen=True)
class PymallocStats(JsonValue):
    """pymalloc's arenas and blocks at a phase (sys._debugmallocstats)."""

    arena_bytes: int
    used_bytes: int
    arenas: int = 0
    free_block_bytes: int = 0
    free_pool_bytes: int = 0
    overhead_bytes: int = 0  # pool headers, size-class rounding, arena alignment


@dataclass(frozen=True)
class AllocatorHigh(JsonValue):
    """glibc's and pymalloc's figures read at the highest RSS a pass reached (read again
    at each new high a step above the last reading, so at most a step below the peak)."""

    t: float
    rss: int
    mallinfo: Mallinfo
    pymalloc: PymallocStats | None = None
    traced: int | None = None  # tracemalloc's traced bytes then, in a traced pass
    tracemalloc_bytes: int = 0  # tracemalloc's own memory then (in glibc's bytes in use)
    file_rss: int | None = None  # RSS of mapped files (libraries) and shared memory then


@dataclass(frozen=True)
class Allocator(JsonValue):
    glibc: str | None = None
    malloc_trim: bool = False  # the malloc_trim(0) probe ran
    mallinfo: dict[str, Mallinfo] = field(default_factory=dict)
    pymalloc: dict[str, PymallocStats | None] = field(default_factory=dict)
    at_high: AllocatorHigh | None = None
    file_rss: dict[str, int] = field(default_factory=dict)  # phase -> RSS of mapped files


@dataclass(frozen=True)
class Digest(JsonValue):
    """An order-independent checksum of the rows a scenario consumed."""

    rows: int
    digest: str


@dataclass(frozen=True)
class Holder(JsonValue):
    """Bytes kept alive by one kind of holder, and the reference chain to its largest."""

    holder: str
    objects: int
    bytes: int
    chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldersAt(JsonValue):
    label: str
    bytes: int
    holders: tuple[Holder, ...] = ()


@dataclass(frozen=True)
class Retention(JsonValue):
    """Kept-alive-by, measured in an untraced run at `rows` rows."""

    rows: int
    holders: tuple[Holder, ...] = ()
    peak: HoldersAt | None = None  # at the mark inside the workload where they held most
    # a census of the same run at its most alive: what each statement's results held,
    # and the census's categories (each statement's share of a category is its bytes
    # over the census's); statements are named by the full-size table
    queries: tuple[QueryAt, ...] = ()
    categories: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Iteration(JsonValue):
    """One run of a repeated workload, after its results were dropped and gc.collect()."""

    run: int
    types: dict[str, int] = field(default_factory=dict)
    traced: int | None = None
    categories: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Repeat(JsonValue):
    rows: int
    iterations: tuple[Iteration, ...] = ()


@dataclass(frozen=True)
class ChildTimeline(JsonValue):
    t: tuple[float, ...] = ()
    rss: tuple[int, ...] = ()  # net of tracemalloc's own memory


@dataclass(frozen=True)
class ChildProcess(JsonValue):
    """A multiprocessing child that measured itself, reduced for the record."""

    pid: int | None = None
    ppid: int | None = None
    name: str | None = None
    start_method: str | None = None
    failure: str | None = None
    wall_time_s: float | None = None
    t0_unix: float | None = None
    start_rss: int | None = None
    peak_rss: int | None = None
    end_rss: int | None = None
    peak_uss: int | None = None
    traced_peak: int | None = None
    categories: dict[str, dict[str, int]] = field(default_factory=dict)  # moment -> bytes
    sites: tuple[Site, ...] = ()
    timeline: ChildTimeline = field(default_factory=ChildTimeline)
    queries: tuple[QueryAt, ...] = ()  # at its own peak


@dataclass(frozen=True)
class Processes(JsonValue):
    children_peak_rss: dict[str, int] = field(default_factory=dict)  # pid -> bytes
    children: tuple[ChildProcess, ...] = ()


@dataclass(frozen=True)
class LiveSnapshot(JsonValue):
    """A snapshot of a running process that called sqldiag.install(): what it cost the
    process, and since when its figures run."""

    pid: int
    seconds: float  # from the request's arrival to the record being ready
    paused_s: float  # the longest a thread of the process waited meanwhile
    census_s: float  # CPU time of the census itself
    installed_s: float  # how long before the snapshot install() was called
    holders_s: float | None = None  # CPU time of the kept-alive-by walk, when taken


@dataclass(frozen=True)
class Record(JsonValue):
    """One run: what it ran, on what, how it was measured, and the measurements."""

    format: str
    schema_version: int
    sqldiag_version: str
    created_utc: str
    status: Status
    command: str
    scenario: Scenario
    database: Database
    environment: Environment
    measurement: Measurement
    timeline: Timeline
    phases: tuple[Phase, ...]
    breakdowns: dict[str, Breakdown]  # "peak", "workload_end", "end"
    types: dict[str, TypeCensus] = field(default_factory=dict)  # "peak", "end"
    allocator: Allocator = field(default_factory=Allocator)
    wall_time_s: float = 0.0
    digest: Digest | None = None
    processes: Processes = field(default_factory=Processes)
    retention: Retention | None = None
    repeat: Repeat | None = None
    snapshot: LiveSnapshot | None = None  # a live process's snapshot (sqldiag snapshot)
    # the statements the bare pass ran, at full size: executions and rows, no bytes
    statements: tuple[QueryAt, ...] = ()

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def params(self) -> RunParams | None:
        return self.scenario.params

    @property
    def rows(self) -> int | None:
        """The full row count of a scenario run; None for a program of the user's own."""
        return self.scenario.params.rows if self.scenario.params else None

    @property
    def workers(self) -> int | None:
        return self.scenario.params.workers if self.scenario.params else None


def scaled_categories(breakdown: Breakdown | None, scale: float) -> dict[str, int]:
    """A breakdown's traced categories times `scale` (statement_cache is compiled once,
    not per row, so it is never scaled)."""
    if breakdown is None:
        return {}
    return {c: int(breakdown.category(c) * (1 if c == STATEMENT_CACHE else scale))
            for c in TRACED}

