"""Hand-made records for unit tests of the analysis: no database, no measuring, every
figure chosen by the test."""

from __future__ import annotations

from dataclasses import replace

from sqldiag.record.categories import TRACED
from sqldiag.record.parts import (
    FORMAT,
    SCHEMA_VERSION,
    Allocator,
    Breakdown,
    Database,
    Digest,
    Environment,
    Measurement,
    Method,
    Phase,
    PymallocStats,
    Record,
    RunParams,
    Scenario,
    SnapshotMark,
    Status,
    Timeline,
)
from sqldiag.record.phases import AFTER_GC, AFTER_TRIM, READY, WORKLOAD_END, WORKLOAD_START

MB = 1 << 20


def breakdown(**categories: int) -> Breakdown:
    cats = {c: int(categories.get(c, 0)) for c in TRACED}
    return Breakdown(total=sum(cats.values()), categories=cats)


def record(*, start: int = 50 * MB, peak: int = 1000 * MB, end: int = 60 * MB,
           trim: int | None = None, rows: int | None = 1000, workers: int = 10,
           peak_cats: dict[str, int] | None = None, end_cats: dict[str, int] | None = None,
           held_share: float = 1.0, method: Method = Method.FULL_TRACE,
           complete: bool = True) -> Record:
    """A run that starts at `start` RSS, peaks at `peak`, ends at `end` (and `trim` after
    malloc_trim). Categories are traced at full size unless `method` says otherwise;
    `held_share` is traced memory at the workload's end as a share of the highest."""
    peak_cats = peak_cats if peak_cats is not None else {"orm_objects": 600 * MB,
                                                         "driver_rows": 200 * MB}
    end_cats = end_cats if end_cats is not None else {"statement_cache": 100_000}
    phases = [Phase(READY, 0.0, start), Phase(WORKLOAD_START, 0.1, start),
              Phase(WORKLOAD_END, 5.0, peak), Phase(AFTER_GC, 5.5, end)]
    if trim is not None:
        phases.append(Phase(AFTER_TRIM, 5.6, trim))
    traced_peak = sum(peak_cats.values())
    breakdowns = {"peak": breakdown(**peak_cats), "end": breakdown(**end_cats)}
    snapshots = (SnapshotMark("traced high", 4.0, traced_peak),
                 SnapshotMark(WORKLOAD_END, 5.0, int(held_share * traced_peak)))
    return Record(
        format=FORMAT, schema_version=SCHEMA_VERSION, sqldiag_version="test",
        created_utc="2026-11-25T00:00:00+00:00",
        status=Status(complete=complete, reason=None if complete else "stopped"),
        command="python -m sqldiag scenario leak_repro",
        scenario=Scenario(name="leak_repro",
                          params=RunParams(rows=rows, workers=workers) if rows else None),
        database=Database(url="sqlite:///x.sqlite3", dialect="sqlite", driver="pysqlite"),
        environment=Environment(),
        measurement=Measurement(method=method, trace_depth=8, snapshots=snapshots),
        timeline=Timeline(t=(0.0, 2.0, 4.0, 5.5), rss=(start, peak // 2, peak, end)),
        phases=tuple(phases),
        breakdowns=breakdowns if method is not Method.RSS_ONLY else {},
        wall_time_s=5.0)


def with_pymalloc(rec: Record, *, start_arenas: int, end_arenas: int, end_used: int,
                  start_used: int = 0) -> Record:
    """`rec` with pymalloc's figures at the start and after gc.collect()."""
    stats = {READY: PymallocStats(arena_bytes=start_arenas, used_bytes=start_used),
             AFTER_GC: PymallocStats(arena_bytes=end_arenas, used_bytes=end_used)}
    return replace(rec, allocator=Allocator(pymalloc=stats))


def with_digest(rec: Record, rows: int) -> Record:
    return replace(rec, digest=Digest(rows=rows, digest="0" * 16))
