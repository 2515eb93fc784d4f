"""`sqldiag scenario NAME|PATH|list`: run a workload under the probes."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.budgets import check_budgets, parse_budget
from sqldiag.capture.runner import ScenarioRunner
from sqldiag.commands.arguments import add_outcome_arguments, add_run_arguments, run_options
from sqldiag.errors import EXIT_ERROR, EXIT_OK, BudgetExceeded
from sqldiag.reporters.json_output import run_json
from sqldiag.reporters.run_folder import save_run
from sqldiag.reporters.terminal import print_summary
from sqldiag.workload import database
from sqldiag.workload.scenarios import builtin_scenarios, find_scenario


class ScenarioCommand:
    name = "scenario"
    help = "run a scenario (built-in name or path to a .py file), or `list` them"
    description = """Run a workload under sqldiag's probes and explain its memory.

  sqldiag scenario list                     the built-in scenarios
  sqldiag scenario leak_repro               the post's workload on the embedded SQLite file
  sqldiag scenario leak_repro --url mysql+pymysql://root@127.0.0.1:3306/test
  sqldiag scenario path/to/my_scenario.py   your own scenario file (see the README)

The run's record (record.json) and report (report.html) land in
REPORTS_DIR/<scenario>-<UTC timestamp>/."""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="built-in scenario name, path to a .py file, "
                                             "or `list`")
        add_run_arguments(parser)
        add_outcome_arguments(parser, "print the summary as JSON on stdout instead of the table")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        if args.scenario == "list":
            return self._list()
        budgets = [parse_budget(text) for text in args.budget]
        scenario = find_scenario(args.scenario)
        url = database.resolve_url(args.url)
        opts = run_options(args, scenario, url)
        err = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=True,
                      disable=not err.is_terminal) as progress:
            def seeding(label: str, total: int):
                task = progress.add_task(label, total=total)
                return lambda n: progress.advance(task, n)

            started = time.perf_counter()

            def status(message: str) -> None:
                err.print(f"sqldiag [{time.perf_counter() - started:5.1f}s] {message}",
                          markup=False, highlight=False, style="dim")

            runner = ScenarioRunner(opts, progress=seeding, status=status)
            record = runner.run()
        analysis = analyse(record)
        run_dir = save_run(record, analysis, args.reports_dir, scenario.name)
        if args.json:
            print(run_json(record, analysis, run_dir))
        else:
            print_summary(record, analysis, Console(), str(run_dir))
        if runner.failure is None:
            broken = check_budgets(analysis, budgets)
            if broken:
                raise BudgetExceeded("budget exceeded: " + "; ".join(broken) +
                                     f" (record: {run_dir / 'record.json'})")
            return EXIT_OK
        print(f"sqldiag: error: run incomplete: {runner.failure} (partial record in "
              f"{run_dir})", file=sys.stderr)
        return runner.exit_code or EXIT_ERROR

    @staticmethod
    def _list() -> int:
        console = Console()
        for scenario in builtin_scenarios():
            console.print(f"[bold]{scenario.name:<24}[/bold] {scenario.description}",
                          highlight=False)
        return EXIT_OK
