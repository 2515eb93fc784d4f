"""Assemble a run record from the results of measured passes: measurements only."""

from __future__ import annotations

from datetime import datetime

from sqldiag._version import __version__
from sqldiag.capture import environment
from sqldiag.capture.calibration import fit_model
from sqldiag.capture.probes import allocator
from sqldiag.capture.results import PassResult
from sqldiag.record.parts import (
    FORMAT,
    SCHEMA_VERSION,
    Allocator,
    CalibrationRun,
    Database,
    Measurement,
    Method,
    Processes,
    Record,
    Repeat,
    Retention,
    Scenario,
    Status,
)
from sqldiag.record.phases import END, PEAK
from sqldiag.workload.database import driver_distribution


def _method(bare: PassResult, traced: PassResult | None,
            full_rows: int | None) -> tuple[Method, float | None]:
    if traced is None:
        return Method.RSS_ONLY, None
    if traced is bare:
        return (Method.CENSUS if traced.censuses and not traced.trace_depth
                else Method.IN_PROCESS), None
    if full_rows is None or traced.rows == full_rows:
        return Method.FULL_TRACE, None
    return Method.SCALED_TRACE, full_rows / traced.rows


def _census_retention(bare: PassResult, traced: PassResult | None) -> Retention | None:
    """Kept-alive-by of a program measured in its own process, as its censuses found
    who holds the lists of results (at full size: rows 0, nothing to scale)."""
    if traced is not bare or not (bare.holders or bare.holders_peak):
        return None
    return Retention(rows=0, holders=bare.holders or (), peak=bare.holders_peak)


def assemble_record(*, created: datetime, scenario: Scenario, database: Database,
                    command: str, bare: PassResult, traced: PassResult | None,
                    full_rows: int | None, failure: str | None,
                    repeated: PassResult | None = None) -> Record:
    """`bare` gives RSS, phases and the trim probe; `traced` the categories. They may be the
    same pass (in-process capture), in which case RSS is taken net of tracemalloc. A bare
    pass that calibrated carries its calibration runs: the largest is the traced run."""
    calibration = bare.calibration
    if traced is None and calibration:
        traced = calibration[-1]
    method, scale = _method(bare, traced, full_rows)
    # a scenario's census of types is its untraced retention run's (the bare pass's)
    types = traced.types if traced is not None and traced.types else bare.types
    model = fit_model(calibration) if calibration else None
    if model is not None:
        method, scale = Method.CALIBRATED, None
    measurement = Measurement(
        method=method,
        trace_depth=traced.trace_depth if traced else 0,
        traced_rows=traced.rows if traced and traced is not bare else None,
        scale=scale,
        sample_period_s=bare.sample_period_s,
        uss_sampled=bare.uss_sampled,
        census=bool(types),
        traced_peak=traced.traced_peak if traced else None,
        traced_wall_time_s=traced.wall_time_s if traced else None,
        analysis=traced.analysis if traced else None,
        traced_phases=traced.phases if traced and traced is not bare else (),
        snapshots=traced.snapshots if traced else (),
        model=model,
        calibration=tuple(CalibrationRun(
            rows=c.rows, wall_time_s=c.wall_time_s,
            peak_total=c.breakdowns[PEAK].total if PEAK in c.breakdowns else None,
            end_total=c.breakdowns[END].total if END in c.breakdowns else None)
            for c in calibration),
        full_rows=full_rows,
        censuses=traced.censuses if traced else (),
        own_rss=bare.own_rss)
    return Record(
        format=FORMAT, schema_version=SCHEMA_VERSION, sqldiag_version=__version__,
        created_utc=created.isoformat(timespec="seconds"),
        status=Status(complete=failure is None, reason=failure, exit_code=bare.exit_code),
        command=command, scenario=scenario, database=database,
        environment=environment.describe(driver_distribution(database.driver or "")),
        measurement=measurement,
        timeline=bare.timeline, phases=bare.phases,
        breakdowns=traced.breakdowns if traced else {},
        types=types,
        allocator=Allocator(glibc=allocator.glibc_version(), malloc_trim=bare.malloc_trim,
                            mallinfo=bare.mallinfo, pymalloc=bare.pymalloc,
                            at_high=bare.allocator_high, file_rss=bare.file_rss),
        wall_time_s=bare.wall_time_s,
        digest=bare.digest,
        processes=Processes(children_peak_rss=bare.child_peaks,
                            children=bare.children or (traced.children if traced else ())),
        retention=bare.retention or _census_retention(bare, traced),
        statements=bare.statements if traced is not bare else (),
        repeat=Repeat(rows=repeated.rows, iterations=repeated.iterations)
        if repeated is not None else None)
