"""`sqldiag compare A B ...`: several scenarios on the same database and sizes, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.compare import compare_rows, digest_mismatches
from sqldiag.capture.runner import ScenarioRunner
from sqldiag.commands.arguments import add_run_arguments, run_options
from sqldiag.errors import EXIT_OK, SqldiagError
from sqldiag.record.codec import encode
from sqldiag.record.store import new_run_dir
from sqldiag.reporters.html import write_compare_report
from sqldiag.reporters.run_folder import save_run
from sqldiag.reporters.terminal import print_compare
from sqldiag.workload import database
from sqldiag.workload.scenarios import find_scenario


class CompareCommand:
    name = "compare"
    help = "run several scenarios on the same database and sizes and compare them"
    description = """Run each scenario in its own processes on the same database, rows and
workers, then print one side-by-side table (peak RSS, end RSS, peak per category, wall time,
rows per second) and write it as HTML. Every scenario must consume the same rows as the
first one (an order-independent checksum); a mismatch fails the comparison.

  sqldiag compare leak_repro fix_yield_per fix_core_partitions fix_keyset_pages"""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenarios", nargs="+", help="built-in names or .py paths")
        add_run_arguments(parser)
        parser.add_argument("--html", type=Path, metavar="FILE",
                            help="where to write the HTML table (default: compare.html in "
                                 "the reports folder)")
        parser.add_argument("--allow-different-rows", action="store_true",
                            help="do not fail when scenarios consume different rows")
        parser.add_argument("--json", action="store_true", help="print the table as JSON")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        scenarios = [find_scenario(spec) for spec in args.scenarios]
        url = database.resolve_url(args.url)
        err = Console(stderr=True)
        records = []
        for index, scenario in enumerate(scenarios, 1):
            err.print(f"sqldiag compare [{index}/{len(scenarios)}] {scenario.name}",
                      markup=False, highlight=False, style="dim")
            opts = run_options(args, scenario, url)
            runner = ScenarioRunner(opts, status=lambda m: err.print(
                f"  {m}", markup=False, highlight=False, style="dim"))
            record = runner.run()
            run_dir = save_run(record, analyse(record), args.reports_dir, scenario.name)
            if runner.failure:
                raise SqldiagError(f"{scenario.name}: run incomplete: {runner.failure} "
                                   f"(partial record in {run_dir})")
            records.append(record)
        rows = compare_rows(records)
        html_path = args.html or new_run_dir(args.reports_dir, "compare") / "compare.html"
        write_compare_report(records, rows, html_path)
        if args.json:
            print(json.dumps({"rows": encode(rows), "html": str(html_path)}, indent=2))
        else:
            print_compare(rows, Console())
            print(f"html: {html_path}")
        mismatches = digest_mismatches(rows)
        if mismatches and not args.allow_different_rows:
            raise SqldiagError("the scenarios did not consume the same rows: "
                               + ", ".join(mismatches) + " (--allow-different-rows to accept)")
        return EXIT_OK
