"""`sqldiag diff A B`: what grew and what shrank between two runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from sqldiag.analysis.budgets import parse_percent
from sqldiag.analysis.diff import diff_records, growth_failures
from sqldiag.errors import EXIT_OK, BudgetExceeded
from sqldiag.record.store import load_record
from sqldiag.reporters.html import write_diff_report
from sqldiag.reporters.terminal import print_diff


class DiffCommand:
    name = "diff"
    help = "compare two runs (record files or run folders)"
    description = """Compare run A with run B: RSS figures, bytes per category at peak and at
the end, the allocation sites that grew or shrank (matched by file and function), and the
SQL statements whose results held more or less at peak, new or gone (matched by statement
and function).

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
        result = diff_records(a, b)
        if args.html:
            write_diff_report(a, b, result, args.html)
        if args.json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            print_diff(result, Console())
        if threshold is not None:
            failures = growth_failures(result, threshold)
            if failures:
                raise BudgetExceeded("B grew beyond --fail-on-growth "
                                     f"{args.fail_on_growth}: " + "; ".join(failures))
        return EXIT_OK
