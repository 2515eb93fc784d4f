"""The self-contained HTML report of a run record (Jinja2, autoescaped, inline SVG)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from sqldiag.attribution.categories import ALL, DESCRIPTIONS, TRACED
from sqldiag.charts import bars, timeline
from sqldiag.diff import RunDiff
from sqldiag.processes import process_table
from sqldiag.record import write_atomic
from sqldiag.units import fmt_bytes

REPORT_NAME = "report.html"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("sqldiag", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["bytes"] = lambda value: (fmt_bytes(value) if isinstance(value, (int, float))
                                          and not isinstance(value, bool) else "n/a")
    return env


def render(record: dict) -> str:
    cats = record.get("categories", {})
    return _environment().get_template("report.html.j2").render(
        r=record, s=record.get("summary", {}), categories=ALL, descriptions=DESCRIPTIONS,
        cats=cats, chart=timeline(record),
        peak_bars=bars(cats.get("peak", {})), end_bars=bars(cats.get("end", {})),
        sites=record.get("breakdowns", {}).get("peak", {}).get("sites", []),
        processes=process_table(record), traced_categories=TRACED)


def write_report(record: dict, path: Path) -> Path:
    write_atomic(path, render(record).encode("utf-8"))
    return path


def render_diff(a: dict, b: dict, diff: RunDiff) -> str:
    biggest = max((abs(s.delta) for s in diff.sites), default=0) or 1
    sites = [{"site": s, "w": round(300 * abs(s.delta) / biggest, 1)} for s in diff.sites]
    return _environment().get_template("diff.html.j2").render(
        a=a, b=b, d=diff, sites=sites, chart_a=timeline(a, width=440, height=220, pad=48),
        chart_b=timeline(b, width=440, height=220, pad=48))


def write_diff_report(a: dict, b: dict, diff: RunDiff, path: Path) -> Path:
    write_atomic(path, render_diff(a, b, diff).encode("utf-8"))
    return path


def write_compare_report(records: list[dict], rows: list[dict], path: Path) -> Path:
    biggest = max((r["peak_rss"] or 0 for r in rows), default=0) or 1
    bars_ = [{"row": r, "w": round(420 * (r["peak_rss"] or 0) / biggest, 1),
              "end_w": round(420 * (r["end_rss"] or 0) / biggest, 1)} for r in rows]
    html = _environment().get_template("compare.html.j2").render(
        records=records, rows=rows, bars=bars_, categories=ALL)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html.encode("utf-8"))
    return path
