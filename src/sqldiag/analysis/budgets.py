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


# A budget on what the categories hold passes on the figure they measured; when they
# explain less than this share of the peak's RSS growth, the rest went unseen (a census
# came before or after what was held at the peak) and the pass may not be true.
WEAKLY_EXPLAINED = 0.5


def doubtful_passes(analysis: Analysis, budgets: list[Budget]) -> list[str]:
    """One message per category or call-site budget that passed although the growth the
    categories did not explain at the peak is more than the budget had left: what went
    unseen could have put it over."""
    summary = analysis.summary
    growth = summary.growth
    # parts_peak is None where tracing inflated RSS: traced categories miss no peak
    if not growth or growth <= 0 or summary.parts_peak is None:
        return []
    share = summary.explained_share or 0.0
    if share >= WEAKLY_EXPLAINED:
        return []
    unseen = growth - (summary.traced_peak_snapshot or 0)
    doubtful = []
    for budget in budgets:
        if budget.name in SUMMARY_FIGURES:
            continue
        value = budget.measured(analysis)
        if value is not None and value <= budget.limit and unseen > budget.limit - value:
            doubtful.append(
                f"{budget.name} {fmt_bytes(value)} is within its budget of "
                f"{fmt_bytes(budget.limit)}, but the categories explain only {share:.0%} "
                f"of the peak's RSS growth of {fmt_bytes(growth)}: the "
                f"{fmt_bytes(unseen)} not seen could hold more of it")
    return doubtful


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_percent(text: str) -> float:
    match = _PERCENT.match(text)
    if not match:
        raise SqldiagError(f"not a percentage: {text!r} (use e.g. 10%)")
    return float(match.group(1)) / 100
