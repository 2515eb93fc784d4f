"""A measured pass that runs a scenario: engine, schema, the scenario's run(ctx)."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker

from sqldiag.capture.measure import MeasuredPass
from sqldiag.capture.plan import PassKind
from sqldiag.capture.probes.census import live_type_counts
from sqldiag.workload import database
from sqldiag.workload.scenario_api import ScenarioContext
from sqldiag.workload.scenarios import ScenarioFile, load_module
from sqldiag.workload.schema import build_schema


class ScenarioPass(MeasuredPass):
    """Runs the spec's scenario once (or `repeat` times) under the probes."""

    def execute(self, url: URL) -> None:
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
            if self.spec.kind is PassKind.REPEAT:
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
        for index in range(self.spec.repeat):
            self.in_workload = True
            held = [module.run(ctx)]
            self.in_workload = False
            held.clear()
            gc.collect()
            label = f"after run {index + 1}"
            self.mark(label, snapshot=True)
            self.iterations.append((index + 1, label, live_type_counts()))
        self.wall_time = time.monotonic() - self._started
        if self.tracing is not None:
            self.tracing.watching = False

