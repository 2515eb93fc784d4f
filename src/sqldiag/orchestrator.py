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
from sqldiag.scenarios import ScenarioFile, builtin_dir
from sqldiag.schema import build_schema
from sqldiag.seeding import ensure_seeded

# Above this many rows x workers, the traced pass runs on a smaller table and is scaled.
TRACE_BUDGET_ROW_LOADS = 60_000
MIN_TRACE_ROWS = 1_000

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


def traced_rows(opts: RunOptions) -> int | None:
    """Rows for the traced pass: None when not tracing."""
    if opts.trace == "off" or opts.trace_depth == 0:
        return None
    if opts.trace_rows:
        return min(opts.trace_rows, opts.rows)
    if opts.trace == "full" or opts.rows * opts.workers <= TRACE_BUDGET_ROW_LOADS:
        return opts.rows
    return max(MIN_TRACE_ROWS, TRACE_BUDGET_ROW_LOADS // opts.workers)


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
    def _run_pass(self, spec: PassSpec) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sqldiag-") as tmp:
            spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
            env = dict(os.environ)
            env[URL_ENV] = self.opts.url.render_as_string(hide_password=False)
            # the scenario's own prints go to stderr: stdout is sqldiag's (--json)
            proc = subprocess.Popen([sys.executable, "-m", "sqldiag.child", str(spec_path),
                                     str(out_path)], env=env, stdout=sys.stderr)
            previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
            try:
                while True:
                    try:
                        proc.wait()
                        break
                    except KeyboardInterrupt:
                        # pass it on (a terminal sends it to both; kill -INT only to us)
                        # and wait for the child to write its partial result
                        if proc.poll() is None:
                            proc.send_signal(signal.SIGINT)
            finally:
                signal.signal(signal.SIGTERM, previous)
            if not out_path.exists():
                raise SqldiagError(f"the {spec.kind} pass died with exit code "
                                   f"{proc.returncode} before writing a result")
            result = json.loads(out_path.read_text(encoding="utf-8"))
        if proc.returncode < 0 and not result.get("failure"):
            result["failure"] = f"killed by signal {-proc.returncode}"
        result["exit_code"] = proc.returncode if proc.returncode > 0 else (
            EXIT_INTERRUPTED if proc.returncode < 0 else 0)
        return result

    def run(self) -> dict[str, Any]:
        opts = self.opts
        trace_rows = self.prepare()
        common: dict[str, Any] = {"scenario_name": opts.scenario.name,
                                  "scenario_path": str(opts.scenario.path),
                                  "workers": opts.workers, "options": dict(opts.options),
                                  "connect_timeout": opts.connect_timeout,
                                  "max_rss": opts.max_rss}
        self.status(f"pass 1/{1 if trace_rows is None else 2}: {opts.rows:,} rows x "
                    f"{opts.workers} workers, RSS sampling only")
        bare = self._run_pass(PassSpec(kind="bare", table=opts.table, rows=opts.rows, **common))
        traced = None
        if trace_rows is not None and not bare.get("failure"):
            table = opts.table if trace_rows == opts.rows else self.trace_table(trace_rows)
            self.status(f"pass 2/2: {trace_rows:,} rows x {opts.workers} workers under "
                        f"tracemalloc ({opts.trace_depth} frames)")
            traced = self._run_pass(PassSpec(kind="traced", table=table, rows=trace_rows,
                                             trace_depth=opts.trace_depth,
                                             census=opts.census, **common))
        self.failure = bare.get("failure") or (traced or {}).get("failure")
        self.exit_code = bare.get("exit_code") or (traced or {}).get("exit_code") or 0
        self.status("analysing")
        return self.record(bare, traced)

    # -- the record -------------------------------------------------------------------
    def record(self, bare: dict, traced: dict | None) -> dict[str, Any]:
        opts = self.opts
        scenario = {"name": opts.scenario.name,
                    "source": "builtin" if _is_builtin(opts.scenario.path) else "file",
                    "path": str(opts.scenario.path),
                    "description": opts.scenario.description,
                    "params": {"rows": opts.rows, "workers": opts.workers,
                               "text_bytes": opts.text_bytes, "table": opts.table,
                               "options": dict(opts.options)}}
        database = {"url": safe_url(opts.url), "dialect": opts.url.get_backend_name(),
                    "driver": opts.url.get_driver_name(), "server_version": self.server_version}
        return assemble_record(created=self.created, scenario=scenario, database=database,
                               command=opts.command, bare=bare, traced=traced,
                               full_rows=opts.rows, failure=self.failure)


def _is_builtin(path: Path) -> bool:
    return path.parent.resolve() == builtin_dir().resolve()
