"""Entry point of a measuring child process: `python -m sqldiag.capture.child SPEC OUT`.

The parent passes the pass spec as a JSON file and the database URL in the
CHILD_URL_ENV environment variable (never on the command line or on disk). The
child always writes its result to OUT, complete or not, and exits 0 when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from sqldiag.capture.calibration import off_the_line, peak_linearity
from sqldiag.capture.follow import Follower
from sqldiag.capture.measure import Interrupted
from sqldiag.capture.plan import DEFAULT_TRACE_DEPTH, PassKind, PassSpec, TableSize
from sqldiag.capture.redeliver import Redelivery
from sqldiag.capture.results import PassResult
from sqldiag.capture.scenario_pass import ScenarioPass
from sqldiag.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MEMORY_GUARD,
    EXIT_OK,
    SqldiagError,
)
from sqldiag.record.parts import Retention, TypeCensus
from sqldiag.record.phases import PEAK
from sqldiag.record.store import write_atomic
from sqldiag.redact import scrub
from sqldiag.units import fmt_bytes

# The database URL, password included, reaches the child here: never argv or disk.
CHILD_URL_ENV = "SQLDIAG_CHILD_URL"
CALIBRATE_NICENESS = 10


_terminated = threading.Event()


def _on_sigterm(signum, frame) -> None:
    _terminated.set()
    raise Interrupted()


def _default_signals_in_forks() -> None:
    """A scenario's forked workers must not inherit this process's handlers: Pool ends
    them with SIGTERM, which here means "write the pass's result" (the same goes for the
    guard's SIGUSR1). They get Python's defaults, as under plain python."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    except ValueError:  # forked from a thread that is not the main one: nothing to undo
        pass


def _write(out_path: Path, result: PassResult) -> None:
    write_atomic(out_path, json.dumps(result.to_json()).encode("utf-8"))


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = PassSpec.from_json(json.loads(spec_path.read_text(encoding="utf-8")))
    if spec.kind is PassKind.CALIBRATE:
        # beside the bare pass: the bare workload and the database server come first,
        # so that what the record reports of the bare pass is what it does alone
        os.nice(CALIBRATE_NICENESS)
    url = make_url(os.environ.pop(CHILD_URL_ENV, ""))
    password = url.password or ""
    signal.signal(signal.SIGTERM, _on_sigterm)
    Redelivery(signal.SIGTERM, _on_sigterm, _terminated.is_set).install()
    follower = (Follower(spec.trace_depth or DEFAULT_TRACE_DEPTH) if spec.follow_children
                else None)
    measured = ScenarioPass(spec, follower)

    def on_guard_signal(signum, frame) -> None:  # SIGUSR1 from the RSS watcher
        # The workload's threads cannot be stopped safely, so the result is written now
        # and the process ends before it takes the machine.
        limit = fmt_bytes(spec.max_rss) if spec.max_rss else "?"
        measured.failure = f"stopped by the memory guard: RSS passed --max-rss {limit}"
        measured.sampler.stop()
        _write(out_path, measured.result())
        os._exit(EXIT_MEMORY_GUARD)

    signal.signal(signal.SIGUSR1, on_guard_signal)
    os.register_at_fork(after_in_child=_default_signals_in_forks)
    code = EXIT_OK
    try:
        if spec.kind is not PassKind.CALIBRATE:
            measured.execute(url)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second one must not lose the result
        measured.failure, code = "interrupted by Ctrl-C (SIGINT)", EXIT_INTERRUPTED
    except Interrupted:
        measured.failure, code = "terminated by SIGTERM", EXIT_INTERRUPTED
    except SqldiagError as exc:
        measured.failure, code = str(exc), EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the scenario is user code
        where = "the scenario raised" if measured.in_workload else "setting up the run failed:"
        measured.failure, code = f"{where} {type(exc).__name__}: {exc}", EXIT_ERROR
    calibration: list[PassResult] = []
    if code == EXIT_OK and spec.calibration:
        code = _calibrate(spec, url, measured, calibration)
    retention, types = None, measured.types
    if code == EXIT_OK and spec.retention is not None:
        retention, types = _retention(spec, spec.retention, url)
    if measured.failure:
        measured.failure = scrub(measured.failure, (password,))
    _write(out_path, dataclasses.replace(measured.result(), calibration=tuple(calibration),
                                         retention=retention, types=types))
    return code


def _sub_pass(spec: PassSpec, kind: PassKind, size: TableSize, **extra) -> ScenarioPass:
    """Another run of the same scenario, workers and options, in this process."""
    return ScenarioPass(PassSpec(
        kind=kind, scenario_name=spec.scenario_name, scenario_path=spec.scenario_path,
        table=size.table, rows=size.rows, workers=spec.workers, options=dict(spec.options),
        connect_timeout=spec.connect_timeout, **extra))


def _retention(spec: PassSpec, size: TableSize,
               url: URL) -> tuple[Retention | None, dict[str, TypeCensus]]:
    """An untraced run that measures, at its workload end, who keeps the memory alive,
    what each statement's results hold, and (with `spec.census`) the census of types:
    untraced, it costs a fraction of what it costs under tracemalloc, where each of its
    own allocations is traced. A failure here costs only these views, never the run."""
    sub = _sub_pass(spec, PassKind.RETENTION, size, measure_holders=True,
                    census_at_highs=True, statements_table=spec.table, census=spec.census)
    try:
        sub.execute(url)
    except Exception:  # noqa: BLE001 - the scenario is user code; the view is optional
        return None, {}
    census = sub.result().breakdowns.get(PEAK)  # the census that found the most alive
    return Retention(rows=size.rows, holders=sub.holders or (), peak=sub.holders_peak,
                     queries=census.queries if census is not None else (),
                     categories=dict(census.categories) if census is not None else {}
                     ), dict(sub.types)


def _calibrate(spec: PassSpec, url: URL, bare: ScenarioPass,
               results: list[PassResult]) -> int:
    """Traced runs at the calibration sizes, in this process after the bare pass: the
    bare figures are already taken, and tracemalloc counts only what it traces. A run
    whose peak lies off the others' line is run again once, and the better of the two
    kept (see calibration.off_the_line)."""
    for size in spec.calibration:
        run = _calibration_run(spec, url, bare, size)
        if isinstance(run, int):
            return run
        results.append(run)
    worst = off_the_line(results)
    if worst is None:
        return EXIT_OK
    again = _calibration_run(spec, url, bare, spec.calibration[worst])
    if isinstance(again, int):
        return again
    retried = [*results[:worst], again, *results[worst + 1:]]
    if peak_linearity(retried) < peak_linearity(results):
        results[worst] = again
    return EXIT_OK


def _calibration_run(spec: PassSpec, url: URL, bare: ScenarioPass,
                     size: TableSize) -> PassResult | int:
    """One traced run at a calibration size: its result, or the exit code it failed
    with (said on `bare`)."""
    sub = _sub_pass(spec, PassKind.TRACED, size, trace_depth=spec.calibration_depth,
                    allocation_overhead=True)
    try:
        sub.execute(url)
    except KeyboardInterrupt:
        bare.failure = "interrupted by Ctrl-C (SIGINT) during calibration"
        return EXIT_INTERRUPTED
    except Interrupted:
        bare.failure = "terminated by SIGTERM during calibration"
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the scenario is user code
        bare.failure = (f"calibration at {size.rows} rows failed: "
                        f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return sub.result()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
