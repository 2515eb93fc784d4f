"""`sqldiag diff A B`: what grew and what shrank between two runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sqldiag.budgets import parse_percent
from sqldiag.diff import RunDiff, diff_records, growth_failures
from sqldiag.errors import EXIT_OK, BudgetExceeded
from sqldiag.html_report import write_diff_report
from sqldiag.record import checked_render, load_record
from sqldiag.units import fmt_bytes


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
            sites.add_row(s.category, f"{s.file} in {s.function}", fmt_bytes(s.a), fmt_bytes(s.b),
                          f"[{style}]{_signed(s.delta)}[/{style}]")
        console.print(sites)
    console.print(f"verdict: {d.verdict}", markup=False, highlight=False)


class DiffCommand:
    name = "diff"
    help = "compare two runs (record files or run folders)"
    description = """Compare run A with run B: RSS figures, bytes per category at peak and at
the end, and the allocation sites that grew or shrank (matched by file and function).

  sqldiag diff reports/leak_repro-20261125T110000Z reports/leak_repro-20261125T120000Z
  sqldiag diff before.json after.json --fail-on-growth 10%   # exit 3 when B grew"""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("a", help="run A: a run folder or record file")
        parser.add_argument("b", help="run B: a run folder or record file")
        parser.add_argument("--json", action="store_true", help="print the diff as JSON")
        parser.add_argument("--html", type=Path, metavar="FILE", help="write an HTML diff")
        parser.add_argument("--fail-on-growth", type=str, metavar="PCT",
                            help="exit 3 when any figure grew by more than PCT (e.g. 10%%) "
                                 "and at least 1 MB")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        threshold = parse_percent(args.fail_on_growth) if args.fail_on_growth else None
        a, b = load_record(args.a), load_record(args.b)
        hint = f"{args.a} or {args.b}"
        result = checked_render(hint, lambda: diff_records(a, b))
        if args.html:
            checked_render(hint, lambda: write_diff_report(a, b, result, args.html))
        if args.json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            checked_render(hint, lambda: print_diff(result, Console()))
        if threshold is not None:
            failures = growth_failures(result, threshold)
            if failures:
                raise BudgetExceeded("B grew beyond --fail-on-growth "
                                     f"{args.fail_on_growth}: " + "; ".join(failures))
        return EXIT_OK
