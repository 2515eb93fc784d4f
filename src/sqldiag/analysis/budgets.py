"""Budgets for CI: limits on a run's figures, and on growth between two runs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqldiag.analysis.analyse import Analysis
from sqldiag.errors import SqldiagError
from sqldiag.record.categories import ALL
from sqldiag.record.phases import PEAK
from sqldiag.units import fmt_bytes, parse_size

# Figures a budget can name, besides the categories (which are checked at peak).
SUMMARY_FIGURES = ("peak_rss", "end_rss", "trim_rss")


@dataclass(frozen=True)
class Budget:
    name: str  # a summary figure, a category, or a call site: FILE:FUNCTION or FILE:LINE
    limit: int  # bytes

    def measured(self, analysis: Analysis) -> int | None:
        if self.name in SUMMARY_FIGURES:
            return getattr(analysis.summary, self.name)
        if ":" in self.name:
            return _held_from(analysis, self.name)
        return analysis.categories.get(PEAK, {}).get(self.name)


def _held_from(analysis: Analysis, site: str) -> int | None:
    """What the statements run from a call site held at peak (None: none ran there)."""
    path, _, where = site.rpartition(":")
    path = path.replace("\\", "/")
    matched = [q for q in analysis.queries
               if (q.file == path or q.file.endswith("/" + path) or path.endswith("/" + q.file))
               and where in (q.function, str(q.line))]
    return sum(q.total for q in matched) if matched else None


def parse_budget(text: str) -> Budget:
    """'peak_rss=300MB', 'orm_objects=50MB' or 'jobs/export.py:export_users=50MB' (what
    the statements run from that function, or line, held at peak)."""
    name, sep, size = text.partition("=")
    name = name.strip()
    path, colon, where = name.rpartition(":")
    site = bool(colon and path and where)
    if not sep or not (site or name in SUMMARY_FIGURES + ALL):
        known = ", ".join(SUMMARY_FIGURES + ALL)
        raise SqldiagError(f"not a budget: {text!r} (use NAME=SIZE with NAME one of {known}, "
                           "or a call site FILE:FUNCTION or FILE:LINE)")
    return Budget(name, parse_size(size))


def check_budgets(analysis: Analysis, budgets: list[Budget]) -> list[str]:
    """One message per exceeded budget; a figure that was not measured is a failure too."""
    broken = []
    for budget in budgets:
        value = budget.measured(analysis)
        if value is None:
            broken.append(f"{budget.name} was not measured (budget {fmt_bytes(budget.limit)})")
        elif value > budget.limit:
            broken.append(f"{budget.name} {fmt_bytes(value)} exceeds its budget of "
                          f"{fmt_bytes(budget.limit)}")
    return broken


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_percent(text: str) -> float:
    match = _PERCENT.match(text)
    if not match:
        raise SqldiagError(f"not a percentage: {text!r} (use e.g. 10%)")
    return float(match.group(1)) / 100
