"""The plan of a scenario run: which measured passes run, on which tables, in which order.

A pure function of the options (no database, no processes), so that what a run will do
can be read and tested on its own. Why several passes (DESIGN.md, "Cost of looking"):
the bare pass runs the workload at full size with RSS sampling only and gives the
timeline, peak, end and malloc_trim figures; tracing runs where it is cheap, at full
size when the workload is small, else at three small calibration sizes (beside the bare
pass on a second core) or on one smaller copy of the table (`--trace scaled`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqldiag.record.codec import JsonValue

if TYPE_CHECKING:  # the plan is read where nothing of the database stack is imported
    from sqlalchemy.engine import URL

    from sqldiag.workload.scenarios import ScenarioFile

# Up to this many rows x workers the traced pass runs at full size in its own process;
# above it, tracing runs as a calibration at three small sizes and a model scales it.
TRACE_BUDGET_ROW_LOADS = 60_000
MIN_TRACE_ROWS = 1_000
CALIBRATION_ROW_LOADS = 24_000  # rows x workers over the three calibration runs
MIN_CALIBRATION_STEP = 100
CALIBRATION_DEPTH = 4
DEFAULT_TRACE_DEPTH = 8  # tracemalloc frames per allocation unless the user says


class PassKind(str, enum.Enum):
    BARE = "bare"  # full size, RSS sampling only
    TRACED = "traced"  # under tracemalloc
    CALIBRATE = "calibrate"  # no workload of its own: traced calibration runs only
    REPEAT = "repeat"  # the workload again and again under tracemalloc (leak or peak)
    RETENTION = "retention"  # untraced, measures who keeps memory alive
    PROGRAM = "program"  # the user's own program at full size, censuses at RSS highs

    @classmethod
    def of_program(cls, trace_depth: int) -> PassKind:
        """The pass a user's own code runs as (`run`, `capture()`, a marked test): traced,
        or untraced with RSS sampled from a watcher process (a thread in the process
        would wait for the GIL through each census and each long call into C)."""
        return cls.TRACED if trace_depth else cls.PROGRAM


class TraceMode(str, enum.Enum):
    AUTO = "auto"  # full size when cheap, else calibrated
    FULL = "full"  # always at full size
    SCALED = "scaled"  # one smaller traced run, scaled by rows
    OFF = "off"  # RSS only


@dataclass(frozen=True)
class PassSpec(JsonValue):
    """What one pass runs; plain data so it can travel to a child process as JSON."""

    kind: PassKind
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
    # after the pass's own work, traced calibration runs in the same process
    calibration: tuple[TableSize, ...] = ()
    calibration_depth: int = CALIBRATION_DEPTH
    repeat: int = 0  # kind REPEAT: run the workload this many times, measuring each end
    # after the pass's own work, an untraced run that measures holders
    retention: TableSize | None = None
    measure_holders: bool = False  # set on that run: measure holders at workload end
    follow_children: bool = False  # measure multiprocessing children in themselves
    census_at_highs: bool = False  # censuses of live objects at RSS highs (no tracing)
    # both allocators read at RSS highs: set on the pass whose RSS the record reports
    allocator_highs: bool = False
    # a calibration run: its breakdowns carry what the allocators add to the traced bytes
    allocation_overhead: bool = False
    # count the statements the workload runs (executions, rows, lines: no bytes)
    statements: bool = False
    # statements are filed under this table's name, not the pass's own (a run on a
    # smaller copy of the table names the full table, as the bare pass does)
    statements_table: str = ""

    @property
    def traced(self) -> bool:
        return self.kind in (PassKind.TRACED, PassKind.REPEAT) and self.trace_depth > 0


@dataclass(frozen=True)
class TableSize(JsonValue):
    """A table of the users schema and the rows seeded into it."""

    table: str
    rows: int


@dataclass
class RunOptions:
    """A scenario run as the command line asked for it."""

    scenario: ScenarioFile
    url: URL
    rows: int
    workers: int
    text_bytes: int | None
    table: str
    trace: TraceMode
    trace_depth: int
    trace_rows: int | None = None
    census: bool = True
    options: dict[str, str] = field(default_factory=dict)
    command: str = ""
    connect_timeout: float = 10.0
    max_rss: int | None = None
    repeat: int = 0  # leak or peak: run the workload this many times under tracing


@dataclass(frozen=True)
class Step:
    """Passes that run side by side, each in its own process; `status` says what runs."""

    passes: tuple[PassSpec, ...]
    status: str


@dataclass(frozen=True)
class Plan:
    seed: tuple[TableSize, ...]  # tables to seed before any pass
    steps: tuple[Step, ...]  # in order; a step after the first runs only if it succeeded


def traced_rows(opts: RunOptions) -> int | None:
    """Rows for a separate traced pass: None when not tracing or when calibrating."""
    if opts.trace is TraceMode.OFF or opts.trace_depth == 0:
        return None
    if opts.trace_rows:
        return min(opts.trace_rows, opts.rows)
    if opts.trace is TraceMode.FULL or opts.rows * opts.workers <= TRACE_BUDGET_ROW_LOADS:
        return opts.rows
    if opts.trace is TraceMode.SCALED:
        return max(MIN_TRACE_ROWS, TRACE_BUDGET_ROW_LOADS // opts.workers)
    return None


def calibration_rows(opts: RunOptions) -> list[int]:
    """The three calibration sizes (step, 2 step, 3 step), or none."""
    if opts.trace is not TraceMode.AUTO or opts.trace_rows or traced_rows(opts) is not None:
        return []
    if opts.trace_depth == 0:
        return []
    step = max(MIN_CALIBRATION_STEP, CALIBRATION_ROW_LOADS // (6 * opts.workers))
    return [step, 2 * step, 3 * step] if 3 * step < opts.rows else []


def size_table(opts: RunOptions, rows: int) -> TableSize:
    """The table a pass of `rows` rows reads: the main one at full size, else a copy."""
    if rows == opts.rows:
        return TableSize(opts.table, rows)
    return TableSize(f"sqldiag_{opts.table}_{rows}"[:63], rows)


def _rows_list(rows: list[int]) -> str:
    return ", ".join(f"{r:,}" for r in rows)


def plan_run(opts: RunOptions, cpus: int) -> Plan:
    """The passes of a scenario run, for a machine with `cpus` cores."""
    common = {"scenario_name": opts.scenario.name, "scenario_path": str(opts.scenario.path),
                  "workers": opts.workers, "options": dict(opts.options),
                  "connect_timeout": opts.connect_timeout}
    trace_rows = traced_rows(opts)
    sizes = calibration_rows(opts)
    calibration = tuple(size_table(opts, rows) for rows in sizes)
    depth = min(CALIBRATION_DEPTH, opts.trace_depth) or CALIBRATION_DEPTH
    seed = [TableSize(opts.table, opts.rows)]
    if trace_rows is not None and trace_rows != opts.rows:
        seed.append(size_table(opts, trace_rows))
    seed.extend(calibration)

    bare = PassSpec(kind=PassKind.BARE, table=opts.table, rows=opts.rows, census=opts.census,
                    max_rss=opts.max_rss, allocator_highs=True, statements=True, **common)
    steps = []
    size = f"{opts.rows:,} rows x {opts.workers} workers"
    if sizes and cpus >= 2:
        # the bare workload is GIL-bound on one core: calibrate beside it on another
        calibrate = PassSpec(kind=PassKind.CALIBRATE, table=opts.table, rows=opts.rows,
                             census=opts.census, calibration=calibration,
                             calibration_depth=depth, retention=calibration[-1], **common)
        steps.append(Step((bare, calibrate),
                          f"{size} with RSS sampling only; beside it tracemalloc ({depth} "
                          f"frames) at {_rows_list(sizes)} rows"))
    else:
        then = (f", then tracemalloc ({depth} frames) at {_rows_list(sizes)} rows"
                if sizes else "")
        retention = None
        if opts.trace is not TraceMode.OFF:
            retention = calibration[-1] if calibration else TableSize(opts.table, opts.rows)
        bare = replace(bare, calibration=calibration, calibration_depth=depth,
                       retention=retention)
        steps.append(Step((bare,), f"pass 1/{1 if trace_rows is None else 2}: {size}, RSS "
                                   f"sampling only{then}"))
    if trace_rows is not None:
        table = size_table(opts, trace_rows)
        # multiprocessing children trace themselves when this pass is full size
        steps.append(Step((PassSpec(kind=PassKind.TRACED, table=table.table, rows=trace_rows,
                                    trace_depth=opts.trace_depth,
                                    follow_children=trace_rows == opts.rows, **common),),
                          f"pass 2/2: {trace_rows:,} rows x {opts.workers} workers under "
                          f"tracemalloc ({opts.trace_depth} frames)"))
    if opts.repeat:
        table = calibration[-1] if calibration else TableSize(opts.table, opts.rows)
        steps.append(Step((PassSpec(kind=PassKind.REPEAT, table=table.table, rows=table.rows,
                                    repeat=opts.repeat,
                                    trace_depth=depth if sizes else opts.trace_depth,
                                    **common),),
                          f"leak or peak: {opts.repeat} runs of {table.rows:,} rows x "
                          f"{opts.workers} workers under tracemalloc"))
    return Plan(seed=tuple(seed), steps=tuple(steps))
