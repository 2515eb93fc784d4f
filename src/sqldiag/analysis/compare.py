"""Side-by-side figures of several runs of the same database and sizes."""

from __future__ import annotations

from dataclasses import dataclass

from sqldiag.analysis.analyse import analyse
from sqldiag.record.parts import Digest, Record
from sqldiag.record.phases import PEAK


@dataclass(frozen=True)
class CompareRow:
    scenario: str
    peak_rss: int | None
    end_rss: int | None
    trim_rss: int | None
    start_rss: int | None
    wall_s: float
    rows_per_s: float
    peak: dict[str, int]  # categories at peak
    digest: Digest | None
    same_rows: str  # "yes", "NO" or "n/a" against the first run


def compare_rows(records: list[Record]) -> list[CompareRow]:
    """One row of figures per record; `same_rows` compares each digest with the first."""
    baseline = records[0].digest if records else None
    rows = []
    for record in records:
        analysis = analyse(record)
        summary = analysis.summary
        wall = record.wall_time_s
        if record.digest is None or baseline is None:
            same = "n/a"
        else:
            same = "yes" if record.digest == baseline else "NO"
        loads = (record.rows or 0) * (record.workers or 1)
        rows.append(CompareRow(
            scenario=record.scenario.name, peak_rss=summary.peak_rss,
            end_rss=summary.end_rss, trim_rss=summary.trim_rss, start_rss=summary.start_rss,
            wall_s=wall, rows_per_s=loads / wall if wall else 0.0,
            peak=analysis.categories.get(PEAK, {}), digest=record.digest,
            same_rows=same))
    return rows


def digest_mismatches(rows: list[CompareRow]) -> list[str]:
    return [row.scenario for row in rows if row.same_rows == "NO"]
