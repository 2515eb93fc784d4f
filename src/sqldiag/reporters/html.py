"""The self-contained HTML report of a run, a diff and a comparison (Jinja2,
autoescaped, inline SVG, no script)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from sqldiag.analysis.analyse import Analysis
from sqldiag.analysis.compare import CompareRow
from sqldiag.analysis.diff import RunDiff
from sqldiag.analysis.method import how_measured, measuring_notes
from sqldiag.analysis.processes import process_table
from sqldiag.record.categories import ALL, DESCRIPTIONS, TRACED, UNTRACED
from sqldiag.record.parts import Record
from sqldiag.record.phases import END, PEAK
from sqldiag.record.store import write_atomic
from sqldiag.reporters.charts import bars, timeline
from sqldiag.units import fmt_bytes

REPORT_NAME = "report.html"


def _bytes(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_bytes(value)
    return "n/a"


@cache
def _environment() -> Environment:
    """One Jinja2 environment for the process: templates are compiled once."""
    env = Environment(loader=PackageLoader("sqldiag.reporters", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["bytes"] = _bytes
    return env


def render(record: Record, analysis: Analysis) -> str:
    cats = analysis.categories
    peak = record.breakdowns.get(PEAK)
    return _environment().get_template("report.html.j2").render(
        r=record, a=analysis, s=analysis.summary, categories=ALL, descriptions=DESCRIPTIONS,
        untraced=UNTRACED,
        cats=cats, chart=timeline(record),
        peak_bars=bars(cats.get(PEAK, {})), end_bars=bars(cats.get(END, {})),
        sites=peak.sites if peak else (),
        processes=process_table(record, analysis), traced_categories=TRACED,
        how_measured=how_measured(record, analysis.summary),
        measuring_notes=measuring_notes(record))


def write_report(record: Record, analysis: Analysis, path: Path) -> Path:
    write_atomic(path, render(record, analysis).encode("utf-8"))
    return path


def render_diff(a: Record, b: Record, diff: RunDiff) -> str:
    biggest = max((abs(s.delta) for s in diff.sites), default=0) or 1
    sites = [{"site": s, "w": round(300 * abs(s.delta) / biggest, 1)} for s in diff.sites]
    return _environment().get_template("diff.html.j2").render(
        a=a, b=b, d=diff, sites=sites, chart_a=timeline(a, width=440, height=220, pad=48),
        chart_b=timeline(b, width=440, height=220, pad=48))


def write_diff_report(a: Record, b: Record, diff: RunDiff, path: Path) -> Path:
    write_atomic(path, render_diff(a, b, diff).encode("utf-8"))
    return path


def write_compare_report(records: list[Record], rows: list[CompareRow], path: Path) -> Path:
    biggest = max((r.peak_rss or 0 for r in rows), default=0) or 1
    bars_ = [{"row": r, "w": round(420 * (r.peak_rss or 0) / biggest, 1),
              "end_w": round(420 * (r.end_rss or 0) / biggest, 1)} for r in rows]
    html = _environment().get_template("compare.html.j2").render(
        records=records, rows=rows, bars=bars_, categories=ALL)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html.encode("utf-8"))
    return path
