"""Run a scenario as its plan says: seed the tables, run each step's passes in child
processes, and assemble their results into one run record (see plan.py for why several
passes)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from sqldiag.capture.assemble import assemble_record
from sqldiag.capture.child import CHILD_URL_ENV
from sqldiag.capture.plan import PassKind, PassSpec, Plan, RunOptions, TableSize, plan_run
from sqldiag.capture.results import PassResult
from sqldiag.errors import EXIT_INTERRUPTED, SqldiagError
from sqldiag.record.parts import Database, Record, RunParams, Scenario
from sqldiag.redact import safe_url, scrub
from sqldiag.workload import database
from sqldiag.workload.schema import build_schema
from sqldiag.workload.seeding import ensure_seeded

ProgressFactory = Callable[[str, int], Callable[[int], None]]


class ScenarioRunner:
    """Runs one scenario; `failure` and `exit_code` tell how it ended."""

    def __init__(self, opts: RunOptions, progress: ProgressFactory | None = None,
                 status: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.plan: Plan = plan_run(opts, os.cpu_count() or 1)
        self.progress = progress
        self.status = status or (lambda message: None)
        self.created = datetime.now(timezone.utc)
        self.failure: str | None = None
        self.exit_code = 0  # the failing pass's exit code
        self.server_version = "unknown"

    # -- database ---------------------------------------------------------------------
    def _seed(self, engine, size: TableSize) -> None:
        self.status(f"checking table {size.table!r} ({size.rows:,} rows)")

        def bar(total: int) -> Callable[[int], None]:
            if self.progress is None:
                return lambda n: None
            return self.progress(f"seeding {size.table}", total)

        ensure_seeded(engine, build_schema(size.table), size.rows, self.opts.text_bytes, bar)

    def prepare(self) -> None:
        """Seed the tables the passes read."""
        opts = self.opts
        engine = database.open_engine(opts.url, connect_timeout=opts.connect_timeout)
        try:
            self.server_version = database.server_version(engine)
            for size in self.plan.seed:
                self._seed(engine, size)
        except DBAPIError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise SqldiagError(f"the database refused to prepare table {opts.table!r}: "
                               f"{scrub(reason, (opts.url.password or '',))}") from None
        finally:
            engine.dispose()

    # -- passes -----------------------------------------------------------------------
    def _run_passes(self, specs: tuple[PassSpec, ...]) -> list[PassResult]:
        """Run measuring children at the same time (one each), wait for all, and return
        their results in order. Ctrl-C is passed on to each; their partial results
        are still collected."""
        with tempfile.TemporaryDirectory(prefix="sqldiag-") as tmp:
            procs, outs = [], []
            env = dict(os.environ) | self.opts.scenario.env
            env[CHILD_URL_ENV] = self.opts.url.render_as_string(hide_password=False)
            for index, spec in enumerate(specs):
                spec_path = Path(tmp) / f"spec{index}.json"
                outs.append(Path(tmp) / f"result{index}.json")
                spec_path.write_text(json.dumps(spec.to_json()), encoding="utf-8")
                # the scenario's own prints go to stderr: stdout is sqldiag's (--json)
                procs.append(subprocess.Popen([sys.executable, "-m", "sqldiag.capture.child",
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
            return [self._read_result(spec, proc, out)
                    for spec, proc, out in zip(specs, procs, outs)]

    @staticmethod
    def _read_result(spec: PassSpec, proc: subprocess.Popen, out: Path) -> PassResult:
        if not out.exists():
            raise SqldiagError(f"the {spec.kind.value} pass died with exit code "
                               f"{proc.returncode} before writing a result")
        result = PassResult.from_json(json.loads(out.read_text(encoding="utf-8")))
        failure = result.failure
        if proc.returncode < 0 and not failure:
            failure = f"killed by signal {-proc.returncode}"
        code = proc.returncode if proc.returncode > 0 else (
            EXIT_INTERRUPTED if proc.returncode < 0 else 0)
        return dataclasses.replace(result, failure=failure, exit_code=code)

    @staticmethod
    def _merged(results: list[PassResult]) -> PassResult:
        """A step's passes as one: the first pass's figures, with the calibration and
        retention a pass beside it measured, and the first failure."""
        main = results[0]
        for other in results[1:]:
            main = dataclasses.replace(
                main, calibration=main.calibration or other.calibration,
                retention=main.retention or other.retention,
                failure=main.failure or other.failure,
                exit_code=main.exit_code or (other.exit_code if other.failure else 0))
        return main

    def run(self) -> Record:
        self.prepare()
        results: list[PassResult] = []
        for index, step in enumerate(self.plan.steps):
            if index and results[0].failure:
                break  # later steps measure the same workload: no use after a failure
            self.status(step.status)
            results.append(self._merged(self._run_passes(step.passes)))
        bare = results[0]
        traced = next((r for r in results[1:] if r.kind is PassKind.TRACED), None)
        repeated = next((r for r in results[1:] if r.kind is PassKind.REPEAT), None)
        failed = next((r for r in results if r.failure), None)
        self.failure = failed.failure if failed else None
        self.exit_code = failed.exit_code if failed else 0
        self.status("assembling the record")
        return self.record(bare, traced, repeated)

    # -- the record -------------------------------------------------------------------
    def record(self, bare: PassResult, traced: PassResult | None,
               repeated: PassResult | None = None) -> Record:
        opts = self.opts
        scenario = Scenario(
            name=opts.scenario.name, source="builtin" if opts.scenario.is_builtin else "file",
            path=str(opts.scenario.path), description=opts.scenario.description,
            env=opts.scenario.env,
            params=RunParams(rows=opts.rows, workers=opts.workers, text_bytes=opts.text_bytes,
                             table=opts.table, options=dict(opts.options)))
        db = Database(url=safe_url(opts.url), dialect=opts.url.get_backend_name(),
                      driver=opts.url.get_driver_name(), server_version=self.server_version)
        return assemble_record(created=self.created, scenario=scenario, database=db,
                               command=opts.command, bare=bare, traced=traced,
                               full_rows=opts.rows, failure=self.failure, repeated=repeated)
