"""`sqldiag compare A B ...`: several scenarios on the same database and sizes, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sqldiag import database
from sqldiag.attribution.categories import TRACED
from sqldiag.commands.scenario import ScenarioCommand, run_options
from sqldiag.compare import compare_rows, digest_mismatches
from sqldiag.errors import EXIT_OK, SqldiagError
from sqldiag.html_report import write_compare_report
from sqldiag.orchestrator import Orchestrator
from sqldiag.record import new_run_dir, save_record
from sqldiag.scenarios import find_scenario
from sqldiag.units import fmt_bytes


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
        ScenarioCommand.add_run_arguments(parser)
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
            session = Orchestrator(opts, status=lambda m: err.print(
                f"  {m}", markup=False, highlight=False, style="dim"))
            record = session.run()
            run_dir = new_run_dir(args.reports_dir, scenario.name)
            save_record(record, run_dir)
            if session.failure:
                raise SqldiagError(f"{scenario.name}: run incomplete: {session.failure} "
                                   f"(partial record in {run_dir})")
            records.append(record)
        rows = compare_rows(records)
        html_path = args.html or new_run_dir(args.reports_dir, "compare") / "compare.html"
        write_compare_report(records, rows, html_path)
        if args.json:
            print(json.dumps({"rows": rows, "html": str(html_path)}, indent=2))
        else:
            _print_table(rows, Console())
            print(f"html: {html_path}")
        mismatches = digest_mismatches(rows)
        if mismatches and not args.allow_different_rows:
            raise SqldiagError("the scenarios did not consume the same rows: "
                               + ", ".join(mismatches) + " (--allow-different-rows to accept)")
        return EXIT_OK


def _print_table(rows: list[dict], console: Console) -> None:
    table = Table(title="scenarios side by side (every category: --json or the HTML)",
                  title_justify="left")
    for column in ("scenario", "peak RSS", "end RSS", "after trim", "wall s", "rows/s",
                   "same rows", "largest at peak"):
        table.add_column(column, justify="left" if column in ("scenario", "largest at peak")
                         else "right")
    for row in rows:
        traced = {c: v for c, v in row["peak"].items() if c in TRACED}
        largest = max(traced, key=traced.get) if traced else None
        table.add_row(row["scenario"], fmt_bytes(row["peak_rss"]), fmt_bytes(row["end_rss"]),
                      fmt_bytes(row["trim_rss"]), f"{row['wall_s']:.1f}",
                      f"{row['rows_per_s']:,.0f}", row["same_rows"],
                      f"{largest} {fmt_bytes(traced[largest])}" if largest else "n/a")
    console.print(table)
