"""A snapshot of this running process: a census of what it holds now, as a run record.

The process keeps serving while it is taken. The census lists the collector's objects
in single calls into C (the only stretches where every other thread waits), then sizes
its samples in Python, taking turns with the program's threads (the switch interval is
raised to 50 ms at most, see few_thread_switches). How long a thread of the program
waited at most is measured, not assumed: a thread that wakes every millisecond notes the
longest gap between its wake-ups (PauseMeter).

`other_python` is the growth since install() (the baseline taken then); the categories
of SQLAlchemy's objects are whole, whenever they were made.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sqldiag.capture.probes.live import (
    Baseline,
    CensusAt,
    LiveCensus,
    take_baseline,
    take_census,
)
from sqldiag.capture.probes.queries import QueryLedger
from sqldiag.record.parts import Record, Retention

SNAPSHOT = "snapshot"
MAX_SAMPLES = 2000  # RSS samples a process keeps for its snapshots' timelines
_TICK = 0.001


class PauseMeter:
    """The longest time a thread of this process waited to run while the block ran."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="sqldiag-pause-meter",
                                        daemon=True)

    def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(_TICK)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - _TICK)
            last = now

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _memory() -> tuple[int, int | None]:
    """RSS and USS (the process's own pages) now; USS is None where it cannot be read."""
    import psutil

    process = psutil.Process()
    try:
        full = process.memory_full_info()
        return full.rss, getattr(full, "uss", None)
    except (psutil.AccessDenied, OSError):
        return process.memory_info().rss, None


@dataclass
class LiveState:
    """What a process that called install() keeps for its snapshots."""

    baseline: Baseline
    ledger: QueryLedger
    installed: float  # time.monotonic() at install()
    installed_unix: float
    ready: dict  # RSS, mallinfo and pymalloc at install(), as record parts
    samples: deque = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: LiveCensus | None = None  # the latest census, for metrics

    @classmethod
    def begin(cls, queries: bool = True) -> LiveState:
        """The state at install(); `queries`: keep the ledger of ORM runs (by query;
        no Engine events, which would cost every statement SQLAlchemy's dispatch)."""
        ledger = QueryLedger(every_statement=False)
        if queries:
            ledger.start()
        state = cls(baseline=take_baseline(), ledger=ledger, installed=time.monotonic(),
                    installed_unix=time.time(), ready=_allocator_state())
        state.ready["rss"] = state.sample()[1]
        return state

    def forked(self) -> LiveState:
        """This state in a child just forked: the parent's baseline and statements, the
        child's own clock, samples and locks (a lock another thread held at the fork
        would never be released here)."""
        self.ledger._lock = threading.Lock()
        child = LiveState(baseline=self.baseline, ledger=self.ledger,
                          installed=time.monotonic(), installed_unix=time.time(),
                          ready=dict(self.ready))
        child.ready["rss"] = child.sample()[1]
        return child

    def now(self) -> float:
        return time.monotonic() - self.installed

    def sample(self) -> tuple[float, int, int | None]:
        rss, uss = _memory()
        sample = (round(self.now(), 4), rss, uss)
        self.samples.append(sample)
        return sample

    def census(self) -> LiveCensus:
        """A census now, one at a time; the collector waits for it to end."""
        with self.lock:
            taken = take_census(self.baseline, 0.0, self.ledger, take_turns=True)
            self.last = taken
            return taken


def _allocator_state() -> dict:
    from sqldiag.capture.probes.allocator import allocator_state

    glibc, pymalloc = allocator_state()
    return {"mallinfo": glibc, "pymalloc": pymalloc}


def take_snapshot(state: LiveState, holders: bool = False) -> Record:
    """This process's record now: RSS and its parts, categories, statements, holders."""
    from sqldiag.capture.assemble import assemble_record
    from sqldiag.capture.measure import census_breakdown
    from sqldiag.capture.plan import PassKind
    from sqldiag.capture.results import PassResult
    from sqldiag.record.parts import CensusMark, LiveSnapshot, Phase, Scenario, Timeline
    from sqldiag.record.phases import AT_WORKLOAD_END, PEAK, READY, WORKLOAD_END, WORKLOAD_START
    from sqldiag.redact import scrub

    began, created = time.monotonic(), datetime.now(timezone.utc)
    held = None
    holders_s = None
    with PauseMeter() as meter:
        # RSS before the census: what the census itself allocates is not the process's
        t, rss, _ = state.sample()
        census_began = time.monotonic()
        taken = state.census()
        census_wall = round(time.monotonic() - census_began, 3)
        if holders:
            from sqldiag.capture.probes.retention import measure_holders

            started = time.thread_time()
            with state.lock:
                held = measure_holders(None)
            holders_s = round(time.thread_time() - started, 3)
        allocator_now = _allocator_state()
    at = CensusAt(SNAPSHOT, t, rss, taken)
    breakdown = census_breakdown(at, state.ledger)
    samples = list(state.samples)
    result = PassResult(
        kind=PassKind.PROGRAM, rows=0, workers=1, failure=None, wall_time_s=round(t, 3),
        sample_period_s=0.0,
        timeline=Timeline(t=tuple(s[0] for s in samples), rss=tuple(s[1] for s in samples),
                          uss=tuple(s[2] for s in samples)),
        phases=(Phase(READY, 0.0, state.ready["rss"]), Phase(WORKLOAD_START, 0.0, state.ready["rss"]),
                Phase(WORKLOAD_END, t, rss)),
        t0_unix=round(state.installed_unix, 4), uss_sampled=True,
        censuses=(CensusMark(SNAPSHOT, t, rss, taken.seconds, taken.objects, census_wall),),
        breakdowns={PEAK: breakdown, AT_WORKLOAD_END: breakdown},
        mallinfo={READY: state.ready["mallinfo"], WORKLOAD_END: allocator_now["mallinfo"]},
        pymalloc={READY: state.ready["pymalloc"], WORKLOAD_END: allocator_now["pymalloc"]},
        holders=held)
    name = _program_name()
    record = assemble_record(
        created=created,
        scenario=Scenario(name=f"{name}-{os.getpid()}", source="snapshot",
                          description=f"snapshot of process {os.getpid()} ({name})"),
        database=_database(state.ledger), command=scrub(shlex.join([sys.executable, *sys.argv])),
        bare=result, traced=result, full_rows=None, failure=None)
    info = LiveSnapshot(pid=os.getpid(), seconds=round(time.monotonic() - began, 3),
                        paused_s=round(meter.longest, 3), census_s=taken.seconds,
                        installed_s=round(t, 3), holders_s=holders_s)
    found = held if held is not None else taken.holders
    return replace(record, snapshot=info,
                   retention=Retention(rows=0, holders=found) if found else None)


def _program_name() -> str:
    """The program as its user knows it: the script's name, or the package of a
    `python -m package` (gunicorn, not __main__.py)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    base = os.path.basename(argv0)
    if base == "__main__.py":
        return os.path.basename(os.path.dirname(os.path.abspath(argv0))) or "python"
    return base


def _database(ledger: QueryLedger):
    """The database the process ran its first statement on (its URL without password)."""
    from sqldiag.record.parts import Database

    first = next(iter(ledger.databases.values()), None)
    if first is None:
        return Database()
    url, dialect, driver = first
    return Database(url=url, dialect=dialect, driver=driver)
