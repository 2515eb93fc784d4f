"""The processes table: the main process and each followed child at its own peak.

The total adds each process's own peak: the processes need not peak at the same moment,
so it is an upper bound on what they held at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqldiag.analysis.analyse import Analysis
from sqldiag.record.categories import TRACED, summed
from sqldiag.record.parts import Record
from sqldiag.record.phases import PEAK


@dataclass(frozen=True)
class ProcessRow:
    process: str
    pid: int | None
    start_method: str
    peak_rss: int | None
    peak_uss: int | None
    end_rss: int | None
    failure: str | None
    categories: dict[str, int]

    @property
    def python_bytes(self) -> int:
        return sum(self.categories.values())


def process_table(record: Record, analysis: Analysis) -> list[ProcessRow]:
    """One row per process (the main one first, then each followed child) and a total;
    empty when no child was followed."""
    children = record.processes.children
    if not children:
        return []
    main_cats = analysis.categories.get(PEAK, {})
    rows = [ProcessRow("main", None, "", analysis.summary.peak_rss,
                       max(record.timeline.net_uss(), default=None), analysis.summary.end_rss,
                       None, {c: int(main_cats.get(c, 0)) for c in TRACED})]
    for child in children:
        rows.append(ProcessRow(str(child.name or "child"), child.pid, child.start_method or "",
                               child.peak_rss, child.peak_uss, child.end_rss, child.failure,
                               dict(child.categories.get(PEAK, {}))))
    rows.append(ProcessRow("all (sum of peaks)", None, "",
                           sum(r.peak_rss or 0 for r in rows),
                           sum(r.peak_uss or 0 for r in rows) or None,
                           sum(r.end_rss or 0 for r in rows), None,
                           summed([r.categories for r in rows])))
    return rows
