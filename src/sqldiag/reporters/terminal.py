"""The terminal summary of a run, drawn with rich."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sqldiag.analysis.analyse import Analysis
from sqldiag.analysis.compare import CompareRow
from sqldiag.analysis.diff import RunDiff
from sqldiag.analysis.findings import brief
from sqldiag.analysis.processes import process_table
from sqldiag.record.categories import ALL, DESCRIPTIONS, IN_USE
from sqldiag.record.parts import Holder, Record
from sqldiag.record.phases import END, PEAK
from sqldiag.units import fmt_bytes

QUERIES_SHOWN = 8


def print_summary(record: Record, analysis: Analysis, console: Console,
                  report_path: str | None = None) -> None:
    s = analysis.summary
    scenario, params, db = record.scenario, record.params, record.database
    version = f" ({db.server_version})" if db.server_version else ""
    where = f" on {db.url}{version}" if db.url else ""
    size = (f": {params.rows:,} rows x {params.workers} workers" if params and params.rows
            else f" ({scenario.source or 'run'})")
    console.print(f"sqldiag {scenario.name}{where}{size}, {record.wall_time_s:.1f} s",
                  markup=False, highlight=False)
    figures = Table(show_header=False, box=None, pad_edge=False)
    for label, value in (("start RSS", s.start_rss), ("peak RSS", s.peak_rss),
                         ("end RSS (after gc)", s.end_rss),
                         ("RSS after malloc_trim", s.trim_rss)):
        figures.add_row(label, fmt_bytes(value))
    share = s.explained_share
    figures.add_row("explained by categories", f"{share:.0%}" if share is not None else "n/a")
    for label, parts in (("named parts at peak", s.parts_peak),
                         ("named parts after the work", s.parts_end)):
        if parts is not None and parts.named_share is not None:
            figures.add_row(label, f"{parts.named_share:.0%}")
    console.print(figures)
    cats = analysis.categories
    if cats:
        table = Table(title="memory by category", title_justify="left")
        table.add_column("category")
        table.add_column("at peak", justify="right")
        table.add_column("at end", justify="right")
        table.add_column("what it is", style="dim")
        for name in ALL:
            table.add_row(name, fmt_bytes(cats.get(PEAK, {}).get(name)),
                          fmt_bytes(cats.get(END, {}).get(name)), DESCRIPTIONS[name])
        console.print(table)
    _print_queries(analysis, console)
    _print_processes(record, analysis, console)
    peak = analysis.kept_alive_peak
    if peak is not None:
        _print_holders(f"kept alive by (at the workload's peak: {escape(peak.label)})",
                       peak.holders, console)
    when = "at the snapshot" if record.snapshot is not None else "at the workload's end"
    _print_holders(f"kept alive by ({when})", analysis.kept_alive, console)
    console.print("[bold]verdict[/bold]", markup=True)
    for line in analysis.verdict:
        console.print(f"  - {line}", markup=False, highlight=False)
    how, live = record.measurement, record.snapshot
    depth = f" (tracemalloc depth {how.trace_depth})" if how.trace_depth else ""
    if live is not None:
        console.print(f"measured by: a snapshot of process {live.pid} in {live.seconds:.2f} s; "
                      f"its threads waited at most {live.paused_s:.3f} s",
                      style="dim", markup=False)
    else:
        console.print(f"measured by: {how.method.value}{depth}, RSS every "
                      f"{how.sample_period_s} s", style="dim", markup=False)
    if report_path:
        console.print(f"record and report: {report_path}", markup=False, highlight=False)


def _print_queries(analysis: Analysis, console: Console) -> None:
    """What each statement's results held at peak, largest first."""
    held = [q for q in analysis.queries if q.total][:QUERIES_SHOWN]
    if not held:
        return
    table = Table(title="by query (what its results held at peak)", title_justify="left")
    table.add_column("where")
    table.add_column("statement", style="dim")
    table.add_column("runs", justify="right")
    table.add_column("instances", justify="right")
    table.add_column("held", justify="right")
    for query in held:
        table.add_row(escape(query.where), escape(brief(query.statement)),
                      f"{query.executions:,}",
                      f"{query.objects:,}" if analysis.instances_counted else "-",
                      fmt_bytes(query.total))
    console.print(table)
    if analysis.queries_measured:
        console.print(f"  {analysis.queries_measured}", style="dim", markup=False)
    rest = len(analysis.queries) - len(held)
    if rest > 0:
        console.print(f"  {rest} other statement{'s' if rest != 1 else ''} held nothing at peak",
                      style="dim", markup=False)


def _print_holders(title: str, holders: tuple[Holder, ...], console: Console) -> None:
    holders = tuple(h for h in holders if h.bytes)
    if not holders:
        return
    kept = Table(title=title, title_justify="left")
    kept.add_column("holder")
    kept.add_column("objects", justify="right")
    kept.add_column("bytes", justify="right")
    for holder in holders:
        kept.add_row(escape(holder.holder), str(holder.objects), fmt_bytes(holder.bytes))
    console.print(kept)


def _print_processes(record: Record, analysis: Analysis, console: Console) -> None:
    rows = process_table(record, analysis)
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
        largest = sorted(((b, c) for c, b in row.categories.items() if b), reverse=True)[:2]
        table.add_row(escape(row.process), str(row.pid or ""), escape(row.start_method),
                      fmt_bytes(row.peak_rss), fmt_bytes(row.peak_uss),
                      fmt_bytes(row.python_bytes),
                      ", ".join(f"{c} {fmt_bytes(b)}" for b, c in largest))
    console.print(table)


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:+.0%}"


def _signed(delta: int | None) -> str:
    if delta is None:
        return "n/a"
    return ("+" if delta > 0 else "") + fmt_bytes(delta) if delta else "0"


def print_diff(d: RunDiff, console: Console) -> None:
    console.print(f"A: {d.a_name}\nB: {d.b_name}", markup=False, highlight=False)
    table = Table(title="RSS and categories", title_justify="left")
    for column in ("figure", "A", "B", "delta", "%"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for change in d.changes():
        table.add_row(change.name, fmt_bytes(change.a), fmt_bytes(change.b),
                      _signed(change.delta), _pct(change.ratio))
    console.print(table)
    if d.sites:
        sites = Table(title="allocation sites at peak that changed", title_justify="left")
        for column in ("category", "site", "A", "B", "delta"):
            sites.add_column(column, justify="right" if column in ("A", "B", "delta") else "left")
        for s in d.sites:
            style = "red" if s.delta > 0 else "green"
            sites.add_row(s.category, escape(f"{s.file} in {s.function}"), fmt_bytes(s.a),
                          fmt_bytes(s.b), f"[{style}]{_signed(s.delta)}[/{style}]")
        console.print(sites)
    if d.queries:
        queries = Table(title="statements that changed (held at peak)", title_justify="left")
        for column in ("statement", "where", "runs", "A", "B", "delta"):
            queries.add_column(column, justify="right" if column in ("runs", "A", "B", "delta")
                               else "left")
        for q in d.queries:
            style = "red" if q.delta > 0 else "green"
            queries.add_row(escape(f"{q.status}: {brief(q.statement)}"),
                            escape(q.where_b or q.where_a or ""),
                            f"{q.executions_a:,} -> {q.executions_b:,}", fmt_bytes(q.a),
                            fmt_bytes(q.b), f"[{style}]{_signed(q.delta)}[/{style}]")
        console.print(queries)
    console.print(f"verdict: {d.verdict}", markup=False, highlight=False)


COMPARE_COLUMNS = ("scenario", "peak RSS", "end RSS", "after trim", "wall s", "rows/s",
                   "same rows", "largest at peak")


def _compare_cells(row: CompareRow) -> tuple[str, ...]:
    """A row's figures, in COMPARE_COLUMNS' order (the scenario's name escaped)."""
    # memory in use: Python objects and C memory, not what the allocators keep free
    in_use = {c: v for c, v in row.peak.items() if c in IN_USE}
    largest = max(in_use, key=in_use.get) if in_use else None
    return (escape(row.scenario), fmt_bytes(row.peak_rss), fmt_bytes(row.end_rss),
            fmt_bytes(row.trim_rss), f"{row.wall_s:.1f}", f"{row.rows_per_s:,.0f}",
            row.same_rows, f"{largest} {fmt_bytes(in_use[largest])}" if largest else "n/a")


def print_compare(rows: list[CompareRow], console: Console) -> None:
    """The scenarios side by side; on a terminal too narrow for the table (80 columns
    cut the names to "leak_r…"), a line of figures per scenario instead."""
    title = "scenarios side by side (every category: --json or the HTML)"
    table = Table(title=title, title_justify="left")
    for column in COMPARE_COLUMNS:
        table.add_column(column, justify="left" if column in ("scenario", "largest at peak")
                         else "right")
    cells = [_compare_cells(row) for row in rows]
    for row_cells in cells:
        table.add_row(*row_cells)
    natural = console.measure(table, options=console.options.update_width(1 << 16))
    if natural.maximum <= console.width:
        console.print(table)
        return
    console.print(title)
    units = {"wall s": "{} s", "rows/s": "{} rows/s"}
    for name, *figures in cells:
        console.print(f"[bold]{name}[/bold]: " + ", ".join(
            units[column].format(figure) if column in units else f"{column} {figure}"
            for column, figure in zip(COMPARE_COLUMNS[1:], figures)), highlight=False)
