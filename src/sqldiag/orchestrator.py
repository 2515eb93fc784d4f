"""Prepare the database, run a scenario's measured passes in child processes, and merge
them into one run record.

Two passes, because tracing changes what it measures (DESIGN.md, "Cost of looking"):
the bare pass runs the workload at full size with RSS sampling only, and gives the
timeline, peak, end and malloc_trim figures; the traced pass runs it under tracemalloc,
at full size when that is cheap, else on a smaller copy of the table, and gives the
categories, which are then scaled to the full row count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from sqldiag import database
from sqldiag.assemble import assemble_record
from sqldiag.child import URL_ENV
from sqldiag.errors import EXIT_INTERRUPTED, SqldiagError
from sqldiag.measure import PassSpec
from sqldiag.redact import safe_url, scrub
from sqldiag.scenarios import ScenarioFile
from sqldiag.schema import build_schema
from sqldiag.seeding import ensure_seeded

# Up to this many rows x workers the traced pass runs at full size in its own process;
# above it, tracing runs as a calibration at three small sizes and a model scales it.
TRACE_BUDGET_ROW_LOADS = 60_000
MIN_TRACE_ROWS = 1_000
CALIBRATION_ROW_LOADS = 24_000  # rows x workers over the three calibration runs
MIN_CALIBRATION_STEP = 100
CALIBRATION_DEPTH = 4

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class RunOptions:
    scenario: ScenarioFile
    url: URL
    rows: int
    workers: int
    text_bytes: int | None
    table: str
    trace: str  # "auto", "full" or "off"
    trace_depth: int
    trace_rows: int | None = None
    census: bool = True
    options: dict[str, str] = field(default_factory=dict)
    command: str = ""
    connect_timeout: float = 10.0
    max_rss: int | None = None
    repeat: int = 0  # leak or peak: run the workload this many times under tracing


def traced_rows(opts: RunOptions) -> int | None:
    """Rows for a separate traced pass: None when not tracing or when calibrating."""
    if opts.trace == "off" or opts.trace_depth == 0:
        return None
    if opts.trace_rows:
        return min(opts.trace_rows, opts.rows)
    if opts.trace == "full" or opts.rows * opts.workers <= TRACE_BUDGET_ROW_LOADS:
        return opts.rows
    if opts.trace == "scaled":
        return max(MIN_TRACE_ROWS, TRACE_BUDGET_ROW_LOADS // opts.workers)
    return None


def calibration_rows(opts: RunOptions) -> list[int]:
    """The three calibration sizes (step, 2 step, 3 step), or none."""
    if opts.trace != "auto" or opts.trace_rows or traced_rows(opts) is not None:
        return []
    if opts.trace_depth == 0:
        return []
    step = max(MIN_CALIBRATION_STEP, CALIBRATION_ROW_LOADS // (6 * opts.workers))
    return [step, 2 * step, 3 * step] if 3 * step < opts.rows else []


class Orchestrator:
    def __init__(self, opts: RunOptions, progress: ProgressFactory | None = None,
                 status: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.progress = progress
        self.status = status or (lambda message: None)
        self.created = datetime.now(timezone.utc)
        self.failure: str | None = None
        self.exit_code = 0  # the failing pass's exit code
        self.server_version = "unknown"

    # -- database ---------------------------------------------------------------------
    def _seed(self, engine, table: str, rows: int) -> None:
        self.status(f"checking table {table!r} ({rows:,} rows)")

        def bar(total: int) -> Callable[[int], None]:
            if self.progress is None:
                return lambda n: None
            return self.progress(f"seeding {table}", total)

        ensure_seeded(engine, build_schema(table), rows, self.opts.text_bytes, bar)

    def prepare(self) -> int | None:
        """Seed the tables both passes read; returns the traced pass's row count."""
        opts = self.opts
        engine = database.open_engine(opts.url, connect_timeout=opts.connect_timeout)
        try:
            self.server_version = database.server_version(engine)
            self._seed(engine, opts.table, opts.rows)
            trace_rows = traced_rows(opts)
            if trace_rows is not None and trace_rows != opts.rows:
                self._seed(engine, self.trace_table(trace_rows), trace_rows)
            for rows in calibration_rows(opts):
                self._seed(engine, self.trace_table(rows), rows)
            return trace_rows
        except DBAPIError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise SqldiagError(f"the database refused to prepare table {opts.table!r}: "
                               f"{scrub(reason, (opts.url.password or '',))}") from None
        finally:
            engine.dispose()

    def trace_table(self, trace_rows: int) -> str:
        return f"sqldiag_{self.opts.table}_{trace_rows}"[:63]

    # -- passes -----------------------------------------------------------------------
    def _run_passes(self, specs: list[PassSpec]) -> list[dict[str, Any]]:
        """Run measuring children at the same time (one each), wait for all, and return
        their results in order. Ctrl-C is passed on to each; their partial results
        are still collected."""
        with tempfile.TemporaryDirectory(prefix="sqldiag-") as tmp:
            procs, outs = [], []
            env = dict(os.environ) | self.opts.scenario.env
            env[URL_ENV] = self.opts.url.render_as_string(hide_password=False)
            for index, spec in enumerate(specs):
                spec_path = Path(tmp) / f"spec{index}.json"
                outs.append(Path(tmp) / f"result{index}.json")
                spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
                # the scenario's own prints go to stderr: stdout is sqldiag's (--json)
                procs.append(subprocess.Popen([sys.executable, "-m", "sqldiag.child",
                                               str(spec_path), str(outs[-1])],
                                              env=env, stdout=sys.stderr))
            previous = signal.signal(signal.SIGTERM,
                                     lambda *_: [p.terminate() for p in procs if p.poll() is None])
            try:
                for proc in procs:
                    while True:
                        try:
                            proc.wait()
                            break
                        except KeyboardInterrupt:
                            # pass it on (a terminal sends it to all; kill -INT only to us)
                            # and wait for the children to write their partial results
                            for other in procs:
                                if other.poll() is None:
                                    other.send_signal(signal.SIGINT)
            finally:
                signal.signal(signal.SIGTERM, previous)
            results = []
            for spec, proc, out_path in zip(specs, procs, outs):
                if not out_path.exists():
                    raise SqldiagError(f"the {spec.kind} pass died with exit code "
                                       f"{proc.returncode} before writing a result")
                result = json.loads(out_path.read_text(encoding="utf-8"))
                if proc.returncode < 0 and not result.get("failure"):
                    result["failure"] = f"killed by signal {-proc.returncode}"
                result["exit_code"] = proc.returncode if proc.returncode > 0 else (
                    EXIT_INTERRUPTED if proc.returncode < 0 else 0)
                results.append(result)
        return results

    def run(self) -> dict[str, Any]:
        opts = self.opts
        trace_rows = self.prepare()
        common: dict[str, Any] = {"scenario_name": opts.scenario.name,
                                  "scenario_path": str(opts.scenario.path),
                                  "workers": opts.workers, "options": dict(opts.options),
                                  "connect_timeout": opts.connect_timeout}
        sizes = calibration_rows(opts)
        calibration = [[self.trace_table(r), r] for r in sizes]
        depth = min(CALIBRATION_DEPTH, opts.trace_depth) or CALIBRATION_DEPTH
        bare_spec = PassSpec(kind="bare", table=opts.table, rows=opts.rows, census=opts.census,
                             max_rss=opts.max_rss, **common)
        if sizes and (os.cpu_count() or 1) >= 2:
            # the bare workload is GIL-bound on one core: calibrate beside it on another
            self.status(f"{opts.rows:,} rows x {opts.workers} workers with RSS sampling only; "
                        f"beside it tracemalloc ({depth} frames) at "
                        f"{', '.join(f'{r:,}' for r in sizes)} rows")
            cal_spec = PassSpec(kind="calibrate", table=opts.table, rows=opts.rows,
                                census=opts.census, calibration=calibration,
                                calibration_depth=depth, retention=calibration[-1], **common)
            bare, cal = self._run_passes([bare_spec, cal_spec])
            bare["calibration"] = cal.get("calibration") or []
            bare["retention"] = cal.get("retention")
            if cal.get("failure") and not bare.get("failure"):
                bare["failure"], bare["exit_code"] = cal["failure"], cal.get("exit_code")
        else:
            then = (f", then tracemalloc ({depth} frames) at "
                    f"{', '.join(f'{r:,}' for r in sizes)} rows") if sizes else ""
            self.status(f"pass 1/{1 if trace_rows is None else 2}: {opts.rows:,} rows x "
                        f"{opts.workers} workers, RSS sampling only{then}")
            bare_spec.calibration, bare_spec.calibration_depth = calibration, depth
            if opts.trace != "off":
                bare_spec.retention = calibration[-1] if calibration else [opts.table,
                                                                           opts.rows]
            bare = self._run_passes([bare_spec])[0]
        traced = bare["calibration"][-1] if bare.get("calibration") else None
        if trace_rows is not None and not bare.get("failure"):
            table = opts.table if trace_rows == opts.rows else self.trace_table(trace_rows)
            self.status(f"pass 2/2: {trace_rows:,} rows x {opts.workers} workers under "
                        f"tracemalloc ({opts.trace_depth} frames)")
            # multiprocessing children trace themselves when this pass is full size
            traced = self._run_passes([PassSpec(kind="traced", table=table, rows=trace_rows,
                                                trace_depth=opts.trace_depth,
                                                census=opts.census,
                                                follow_children=trace_rows == opts.rows,
                                                **common)])[0]
        repeated = None
        if opts.repeat and not bare.get("failure"):
            rows = opts.rows if not sizes else sizes[-1]
            table = opts.table if rows == opts.rows else self.trace_table(rows)
            self.status(f"leak or peak: {opts.repeat} runs of {rows:,} rows x {opts.workers} "
                        f"workers under tracemalloc")
            repeated = self._run_passes([PassSpec(kind="repeat", table=table, rows=rows,
                                                  repeat=opts.repeat, trace_depth=depth
                                                  if sizes else opts.trace_depth,
                                                  **common)])[0]
        self.failure = (bare.get("failure") or (traced or {}).get("failure")
                        or (repeated or {}).get("failure"))
        self.exit_code = (bare.get("exit_code") or (traced or {}).get("exit_code")
                          or (repeated or {}).get("exit_code") or 0)
        self.status("analysing")
        record = self.record(bare, traced, repeated)
        return record

    # -- the record -------------------------------------------------------------------
    def record(self, bare: dict, traced: dict | None,
               repeated: dict | None = None) -> dict[str, Any]:
        opts = self.opts
        scenario = {"name": opts.scenario.name,
                    "source": "builtin" if opts.scenario.is_builtin else "file",
                    "path": str(opts.scenario.path),
                    "description": opts.scenario.description,
                    "env": opts.scenario.env,
                    "params": {"rows": opts.rows, "workers": opts.workers,
                               "text_bytes": opts.text_bytes, "table": opts.table,
                               "options": dict(opts.options)}}
        database = {"url": safe_url(opts.url), "dialect": opts.url.get_backend_name(),
                    "driver": opts.url.get_driver_name(), "server_version": self.server_version}
        return assemble_record(created=self.created, scenario=scenario, database=database,
                               command=opts.command, bare=bare, traced=traced,
                               full_rows=opts.rows, failure=self.failure,
                               calibration=bare.get("calibration") or [], repeated=repeated)

