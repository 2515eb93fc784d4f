"""Compare two run records: per phase and category, RSS figures, allocation sites and
statements.

Sites are matched by (category, file, function), statements by (statement, function),
not by line, so that a diff survives small edits to the code between the runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqldiag.analysis.analyse import Analysis, analyse
from sqldiag.record.categories import ALL, row_scale
from sqldiag.record.parts import Record
from sqldiag.record.phases import MOMENTS, PEAK
from sqldiag.units import fmt_bytes

RSS_FIGURES = ("start_rss", "peak_rss", "end_rss", "trim_rss")
SITES_SHOWN = 15
# A peak within this share of A's counts as about the same.
SAME_PEAK_SHARE = 0.02


@dataclass
class Change:
    name: str
    a: int | None
    b: int | None

    @property
    def delta(self) -> int | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ratio(self) -> float | None:
        """Relative change, b/a - 1; None when a is zero or missing."""
        if self.a in (None, 0) or self.b is None:
            return None
        return self.b / self.a - 1

    def to_dict(self) -> dict:
        return {"name": self.name, "a": self.a, "b": self.b, "delta": self.delta,
                "ratio": self.ratio}


@dataclass
class SiteChange:
    category: str
    file: str
    function: str
    a: int
    b: int

    @property
    def delta(self) -> int:
        return self.b - self.a


@dataclass
class QueryChange:
    """A statement run from one function, in A and in B (None: it did not run there)."""

    statement: str
    function: str
    where_a: str | None
    where_b: str | None
    a: int | None  # bytes its results held at peak
    b: int | None
    executions_a: int = 0
    executions_b: int = 0

    @property
    def status(self) -> str:
        if self.a is None:
            return "new"
        if self.b is None:
            return "gone"
        return "grew" if self.b > self.a else "shrank" if self.b < self.a else "same"

    @property
    def delta(self) -> int:
        return (self.b or 0) - (self.a or 0)


def _query_changes(a: Analysis, b: Analysis) -> list[QueryChange]:
    """Statements matched by text and function; largest change first."""
    def by_key(analysis: Analysis) -> dict[tuple[str, str], tuple[int, int, str]]:
        out: dict[tuple[str, str], tuple[int, int, str]] = {}
        for q in analysis.queries:
            held, runs, _ = out.get((q.statement, q.function), (0, 0, q.where))
            out[(q.statement, q.function)] = (held + q.total, runs + q.executions, q.where)
        return out

    qa, qb = by_key(a), by_key(b)
    changes = []
    for key in qa.keys() | qb.keys():
        held_a, runs_a, where_a = qa.get(key, (None, 0, None))
        held_b, runs_b, where_b = qb.get(key, (None, 0, None))
        changes.append(QueryChange(key[0], key[1], where_a, where_b, held_a, held_b,
                                   runs_a, runs_b))
    changes = [c for c in changes if c.status != "same" or c.executions_a != c.executions_b]
    changes.sort(key=lambda c: abs(c.delta), reverse=True)
    return changes


@dataclass
class RunDiff:
    a_name: str
    b_name: str
    rss: list[Change]
    categories: dict[str, list[Change]]  # phase -> changes per category
    sites: list[SiteChange] = field(default_factory=list)  # largest |delta| first
    queries: list[QueryChange] = field(default_factory=list)  # largest |delta| first
    verdict: str = ""

    def to_dict(self) -> dict:
        return {"a": self.a_name, "b": self.b_name,
                "rss": [c.to_dict() for c in self.rss],
                "categories": {p: [c.to_dict() for c in cs] for p, cs in self.categories.items()},
                "sites": [asdict(s) | {"delta": s.delta} for s in self.sites],
                "queries": [asdict(q) | {"delta": q.delta, "status": q.status}
                            for q in self.queries],
                "verdict": self.verdict}

    def changes(self) -> list[Change]:
        """Every compared figure: RSS figures, then categories per phase."""
        out = list(self.rss)
        for phase, changes in self.categories.items():
            out.extend(Change(f"{c.name} at {phase}", c.a, c.b) for c in changes)
        return out


def _site_totals(record: Record, analysis: Analysis) -> dict[tuple[str, str, str], int]:
    totals: dict[tuple[str, str, str], int] = {}
    scale = analysis.summary.scale
    peak = record.breakdowns.get(PEAK)
    for site in peak.sites if peak else ():
        key = (site.category, site.file, site.function)
        totals[key] = totals.get(key, 0) + int(site.size * row_scale(site.category, scale))
    return totals


def _label(record: Record) -> str:
    return f"{record.scenario.name} {record.created_utc}".strip()


def diff_records(a: Record, b: Record) -> RunDiff:
    ana, anb = analyse(a), analyse(b)
    rss = [Change(name, getattr(ana.summary, name), getattr(anb.summary, name))
           for name in RSS_FIGURES]
    categories = {moment: [Change(cat, ana.categories.get(moment, {}).get(cat),
                                  anb.categories.get(moment, {}).get(cat))
                           for cat in ALL]
                  for moment in MOMENTS}
    ta, tb = _site_totals(a, ana), _site_totals(b, anb)
    sites = [SiteChange(*key, ta.get(key, 0), tb.get(key, 0)) for key in set(ta) | set(tb)]
    sites = [s for s in sites if s.delta != 0]
    sites.sort(key=lambda s: abs(s.delta), reverse=True)
    result = RunDiff(_label(a), _label(b), rss, categories, sites[:SITES_SHOWN],
                     _query_changes(ana, anb)[:SITES_SHOWN])
    result.verdict = _verdict(result)
    return result


def _verdict(d: RunDiff) -> str:
    peak = next(c for c in d.rss if c.name == "peak_rss")
    if peak.a is None or peak.b is None:
        return "peak RSS was not measured in both runs"
    start_a = next(c.a for c in d.rss if c.name == "start_rss") or 0
    start_b = next(c.b for c in d.rss if c.name == "start_rss") or 0
    growth_a, growth_b = max(peak.a - start_a, 1), max(peak.b - start_b, 1)
    movers = sorted((c for c in d.categories[PEAK] if c.delta), key=lambda c: abs(c.delta or 0),
                    reverse=True)[:3]
    detail = ", ".join(f"{c.name} {'+' if (c.delta or 0) > 0 else '-'}{fmt_bytes(abs(c.delta or 0))}"
                       for c in movers)
    if abs(peak.b - peak.a) <= SAME_PEAK_SHARE * max(peak.a, 1):
        head = f"B peaks about the same as A ({fmt_bytes(peak.b)} against {fmt_bytes(peak.a)})"
    else:
        head = (f"B peaks {_how_far(growth_b, growth_a)} above its start "
                f"({fmt_bytes(peak.b)} against {fmt_bytes(peak.a)})")
    return f"{head}: {detail}" if detail else head


def _how_far(b: int, a: int) -> str:
    """B's growth against A's: "1.8x higher", or under 1.5x a share ("3% lower": "1.0x
    lower" said nothing)."""
    high, low = max(a, b), min(a, b)
    way = "higher" if b > a else "lower"
    if high >= 1.5 * low:
        return f"{high / low:.1f}x {way}"
    return f"{(b - a) / a:+.0%}".lstrip("+-") + f" {way}"


def growth_failures(d: RunDiff, threshold: float, min_bytes: int = 1 << 20) -> list[str]:
    """Figures that grew by more than `threshold` (0.10 = 10%) and at least min_bytes."""
    failures = []
    for change in d.changes():
        if change.name.startswith("start_rss") or change.delta is None:
            continue
        if change.delta >= min_bytes and (change.ratio is None or change.ratio > threshold):
            grown = f"+{change.ratio:.0%}" if change.ratio is not None else "new"
            failures.append(f"{change.name} grew {grown}: {fmt_bytes(change.a)} -> "
                            f"{fmt_bytes(change.b)}")
    return failures
