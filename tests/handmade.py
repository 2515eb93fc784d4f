"""Hand-made records for unit tests of the analysis: no database, no measuring, every
figure chosen by the test."""

from __future__ import annotations

from dataclasses import replace

from sqldiag.record.categories import TRACED
from sqldiag.record.parts import (
    FORMAT,
    SCHEMA_VERSION,
    Allocator,
    AllocatorHigh,
    Breakdown,
    Database,
    Digest,
    Environment,
    Mallinfo,
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


def with_allocators(rec: Record, *, start_arenas: int, end_arenas: int, end_used: int,
                    start_used: int = 0, start_in_use: int = 0, end_in_use: int = 0,
                    start_free: int = 0, end_free: int = 0,
                    peak: tuple[int, int, int, int] | None = None) -> Record:
    """`rec` with pymalloc's and glibc's figures at the start and after gc.collect(), and
    with `peak` = (arena bytes, used bytes, glibc in use, glibc free) read at the peak."""
    stats = {READY: PymallocStats(arena_bytes=start_arenas, used_bytes=start_used),
             AFTER_GC: PymallocStats(arena_bytes=end_arenas, used_bytes=end_used)}
    glibc = {READY: Mallinfo(in_use_bytes=start_in_use, mmap_bytes=0, free_bytes=start_free),
             AFTER_GC: Mallinfo(in_use_bytes=end_in_use, mmap_bytes=0, free_bytes=end_free,
                                arenas=4)}
    high = None
    if peak is not None:
        arenas, used, in_use, free = peak
        high = AllocatorHigh(t=4.0, rss=max(rec.timeline.rss),
                             mallinfo=Mallinfo(in_use_bytes=in_use, mmap_bytes=0,
                                               free_bytes=free, arenas=4),
                             pymalloc=PymallocStats(arena_bytes=arenas, used_bytes=used))
    return replace(rec, allocator=Allocator(pymalloc=stats, mallinfo=glibc, at_high=high))


def with_digest(rec: Record, rows: int) -> Record:
    return replace(rec, digest=Digest(rows=rows, digest="0" * 16))
