"""The terminal summary of a run record, drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sqldiag.attribution.categories import ALL, DESCRIPTIONS
from sqldiag.processes import process_table
from sqldiag.units import fmt_bytes


def print_summary(record: dict, console: Console, report_path: str | None = None) -> None:
    s = record["summary"]
    scenario = record["scenario"]
    params = scenario.get("params", {})
    db = record.get("database") or {}
    where = f" on {db['url']} ({db.get('server_version')})" if db.get("url") else ""
    size = (f": {params['rows']:,} rows x {params.get('workers')} workers"
            if params.get("rows") else f" ({scenario.get('source', 'run')})")
    console.print(f"sqldiag {scenario['name']}{where}{size}, "
                  f"{record.get('wall_time_s', 0):.1f} s", markup=False, highlight=False)
    figures = Table(show_header=False, box=None, pad_edge=False)
    for label, key in (("start RSS", "start_rss"), ("peak RSS", "peak_rss"),
                       ("end RSS (after gc)", "end_rss"), ("RSS after malloc_trim", "trim_rss")):
        figures.add_row(label, fmt_bytes(s.get(key)))
    share = s.get("explained_share")
    figures.add_row("explained by categories", f"{share:.0%}" if share is not None else "n/a")
    console.print(figures)
    cats = record.get("categories", {})
    if cats:
        table = Table(title="memory by category", title_justify="left")
        table.add_column("category")
        table.add_column("at peak", justify="right")
        table.add_column("at end", justify="right")
        table.add_column("what it is", style="dim")
        for name in ALL:
            peak = cats.get("peak", {}).get(name)
            end = cats.get("end", {}).get(name)
            table.add_row(name, fmt_bytes(peak), fmt_bytes(end), DESCRIPTIONS[name])
        console.print(table)
    _print_processes(record, console)
    peak = record.get("kept_alive_peak") or {}
    peak_title = f"kept alive by (at the workload's peak: {escape(str(peak.get('label')))})"
    for title, holders in ((peak_title,
                            peak.get("holders") or []),
                           ("kept alive by (at the workload's end)",
                            record.get("kept_alive") or [])):
        holders = [h for h in holders if h.get("bytes")]
        if not holders:
            continue
        kept = Table(title=title, title_justify="left")
        kept.add_column("holder")
        kept.add_column("objects", justify="right")
        kept.add_column("bytes", justify="right")
        for holder in holders:
            kept.add_row(escape(str(holder["holder"])), str(holder["objects"]),
                         fmt_bytes(holder["bytes"]))
        console.print(kept)
    console.print("[bold]verdict[/bold]", markup=True)
    for line in record.get("verdict", []):
        console.print(f"  - {line}", markup=False, highlight=False)
    method = record.get("measurement", {})
    console.print(f"measured by: {method.get('method')} (tracemalloc depth "
                  f"{method.get('trace_depth')}), RSS every {method.get('sample_period_s')} s",
                  style="dim", markup=False)
    if report_path:
        console.print(f"record and report: {report_path}", markup=False, highlight=False)


def _print_processes(record: dict, console: Console) -> None:
    rows = process_table(record)
    if not rows:
        return
    table = Table(title="processes (each at its own peak)", title_justify="left")
    table.add_column("process")
    table.add_column("pid", justify="right")
    table.add_column("start")
    table.add_column("peak RSS", justify="right")
    table.add_column("peak USS", justify="right")
    table.add_column("Python objects", justify="right")
    table.add_column("largest", style="dim")
    for row in rows:
        cats = row["categories"]
        largest = sorted(((b, c) for c, b in cats.items() if b), reverse=True)[:2]
        table.add_row(escape(str(row["process"])), str(row["pid"] or ""),
                      escape(str(row["start_method"])),
                      fmt_bytes(row["peak_rss"]), fmt_bytes(row["peak_uss"]),
                      fmt_bytes(sum(cats.values())),
                      ", ".join(f"{c} {fmt_bytes(b)}" for b, c in largest))
    console.print(table)
