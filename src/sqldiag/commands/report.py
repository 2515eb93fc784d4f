"""`sqldiag report RUN`: render the summary and HTML again from a saved record."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from sqldiag.analysis.analyse import analyse
from sqldiag.errors import EXIT_OK
from sqldiag.record.store import load_record, resolve_record_path
from sqldiag.reporters.html import REPORT_NAME, write_report
from sqldiag.reporters.json_output import run_json
from sqldiag.reporters.terminal import print_summary


class ReportCommand:
    name = "report"
    help = "show a saved run again and rewrite its HTML report (no database needed)"
    description = "Render a saved run record (a record.json or its run folder) again."

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", help="run folder or record file")
        parser.add_argument("--html", type=Path, default=None,
                            help=f"where to write the HTML (default: {REPORT_NAME} next to "
                                 "the record)")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        record = load_record(args.run)
        analysis = analyse(record)
        html_path = args.html or resolve_record_path(args.run).parent / REPORT_NAME
        write_report(record, analysis, html_path)
        if args.json:
            print(run_json(record, analysis))
        else:
            print_summary(record, analysis, Console(), str(html_path))
        return EXIT_OK
