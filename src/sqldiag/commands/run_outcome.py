"""What `sqldiag run` does once the program has ended: its record, run folder, summary,
budgets and exit code.

A module of its own so that `sqldiag run` starts the program before importing it
(SQLAlchemy, the analysis and the reporters: about half a second), and imports it while
the program runs (commands/run.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from datetime import datetime

from rich.console import Console

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.budgets import Budget, check_budgets, doubtful_passes
from sqldiag.capture.assemble import assemble_record
from sqldiag.capture.results import PassResult
from sqldiag.errors import BudgetExceeded
from sqldiag.record.parts import Database, Scenario
from sqldiag.redact import scrub
from sqldiag.reporters.json_output import run_json
from sqldiag.reporters.run_folder import save_run
from sqldiag.reporters.terminal import print_summary


def report_outcome(args: argparse.Namespace, argv: list[str], budgets: list[Budget],
                   name: str, target: str, created: datetime, code: int,
                   result: PassResult) -> int:
    """Save the run's record and report, print the summary (JSON with --json), check the
    budgets; the exit code: the program's own, or BudgetExceeded when it succeeded over
    a budget."""
    if result.failure:  # the program's own error text may carry a URL's password
        result = replace(result, failure=scrub(result.failure))
    record = assemble_record(
        created=created,
        scenario=Scenario(name=name, source="run", description=f"run: {target}"),
        database=Database(), command=_reproduce(args, argv), bare=result, traced=result,
        full_rows=None, failure=result.failure,
        repeated=result if result.iterations else None)
    analysis = analyse(record)
    run_dir = save_run(record, analysis, args.reports_dir, name)
    sys.stdout.flush()
    if args.json:
        print(run_json(record, analysis, run_dir))
    else:
        print_summary(record, analysis, Console(stderr=True), str(run_dir))
    broken = check_budgets(analysis, budgets)
    for doubt in doubtful_passes(analysis, budgets):
        print(f"sqldiag: warning: {doubt} (--trace-depth 8 sees every transient peak)",
              file=sys.stderr)
    if broken and code == 0:
        raise BudgetExceeded("budget exceeded: " + "; ".join(broken) +
                             f" (record: {run_dir / 'record.json'})")
    if broken:  # the program's own failure decides the exit code
        print(f"sqldiag: budget exceeded: {'; '.join(broken)}", file=sys.stderr)
    return code


def _reproduce(args: argparse.Namespace, argv: list[str]) -> str:
    """The command line that runs the program again (passwords scrubbed)."""
    parts = ["sqldiag", "run"]
    if args.trace_depth:
        parts += ["--trace-depth", str(args.trace_depth)]
    if args.repeat:
        parts += ["--repeat", str(args.repeat)]
    if args.module:
        parts += ["-m", args.module]
    return scrub(shlex.join([*parts, *argv]))
