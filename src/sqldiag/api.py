"""Measure a block of your own code in-process: `with sqldiag.capture(name=...) as run:`.

The block runs untraced at its own speed and size: RSS is sampled, and censuses of live
objects at RSS highs and at the block's end give the categories (capture/probes/live.py).
`trace_depth=N` runs it under tracemalloc with N frames per allocation instead, for
allocation sites (RSS taken net of tracemalloc's own memory), at several times the
memory and time. On exit a run record and HTML report are written to `reports_dir`;
`run.record` (what was measured), `run.analysis` (the figures and verdict) and
`run.run_dir` hold them. Also usable as a decorator: `@sqldiag.capture(name="job")`.
Children started by multiprocessing inside the block measure themselves (see follow.py)
and appear in the record's processes unless `follow_children=False`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

from sqldiag.capture.follow import Follower
from sqldiag.capture.measure import MeasuredPass
from sqldiag.capture.plan import PassKind, PassSpec

if TYPE_CHECKING:
    from sqldiag.analysis.analyse import Analysis
    from sqldiag.record.parts import Record


class Capture(contextlib.ContextDecorator):
    def __init__(self, name: str = "capture", reports_dir: str | Path = "reports",
                 trace_depth: int = 0, census: bool = False,
                 follow_children: bool = True) -> None:
        self.name = name
        self.reports_dir = Path(reports_dir)
        self.spec = PassSpec(kind=PassKind.of_program(trace_depth), scenario_name=name,
                             scenario_path="", table="", rows=0, workers=1,
                             trace_depth=trace_depth, census=census,
                             census_at_highs=trace_depth == 0,
                             follow_children=follow_children, allocator_highs=True,
                             statements=trace_depth > 0)
        self.record: Record | None = None
        self.analysis: Analysis | None = None
        self.run_dir: Path | None = None
        self._pass: MeasuredPass | None = None
        self._decorator: Capture | None = None  # a decorated call's: the decorator
        self._created = datetime.now(timezone.utc)
        self.source = "capture"  # what the record's scenario.source says

    def __call__(self, func):
        """As a decorator: each call of `func` is measured on its own and gets its own
        record (calls may overlap: a handler that several threads run; each record is of
        the whole process while its call ran, overlapping calls included); for a coroutine
        function, each run of its coroutine to the end (not the call that makes it).
        `record`, `analysis` and `run_dir` are then the last finished call's."""
        if not inspect.iscoroutinefunction(func):
            return super().__call__(func)

        @functools.wraps(func)
        async def captured(*args, **kwargs):
            with self._recreate_cm():
                return await func(*args, **kwargs)
        return captured

    def _recreate_cm(self) -> Capture:
        call = copy.copy(self)
        call._pass, call._decorator = None, self
        return call

    def mark(self, phase: str) -> None:
        """Mark a phase on the timeline (thread-safe)."""
        if self._pass is not None:
            self._pass.mark(phase)

    def census(self, phase: str) -> None:
        """Mark a phase and, untraced, take a census of what is alive now."""
        if self._pass is not None:
            self._pass.mark(phase, snapshot=True)

    def __enter__(self) -> Self:
        if self._pass is not None:
            raise RuntimeError(f"capture {self.name!r} is already measuring a block: "
                               "use one capture() per block")
        self._created = datetime.now(timezone.utc)
        follower = (Follower(self.spec.trace_depth)
                    if self.spec.follow_children else None)
        self._pass = MeasuredPass(self.spec, follower)
        self._pass.begin()
        self._pass.in_workload = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        measured = self._pass
        assert measured is not None
        failure = None
        if exc_type is not None:
            failure = f"the captured code raised {exc_type.__name__}: {exc}"
        result = measured.end_in_process(failure)
        # Imported only now: loaded during the block, the analysis and the reporters
        # (Jinja2, rich) would be part of the peak RSS the block is measured by.
        from sqldiag.analysis.analyse import analyse
        from sqldiag.capture.assemble import assemble_record
        from sqldiag.record.parts import Database, Scenario
        from sqldiag.reporters.run_folder import save_run

        self.record = assemble_record(
            created=self._created,
            scenario=Scenario(name=self.name, source=self.source,
                              description=f"{self.source}: {self.name}"),
            database=Database(), command=shlex.join([sys.executable, *sys.argv]),
            bare=result, traced=result, full_rows=None, failure=failure)
        self.analysis = analyse(self.record)
        self.run_dir = save_run(self.record, self.analysis, self.reports_dir, self.name)
        self._pass = None
        if self._decorator is not None:
            decorator = self._decorator
            decorator.record, decorator.analysis, decorator.run_dir = (
                self.record, self.analysis, self.run_dir)
        return False  # never swallow the block's exception
