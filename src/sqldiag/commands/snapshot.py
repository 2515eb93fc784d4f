"""`sqldiag snapshot PID`: what a running process holds now, as a record and report."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from sqldiag.commands.arguments import add_outcome_arguments
from sqldiag.errors import EXIT_OK, BudgetExceeded, SqldiagError
from sqldiag.live.client import start_snapshot

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_UNIT = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds from `60`, `60s`, `500ms`, `5m` or `1h`."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--count must be a whole number >= 1, not {text!r}")
    return value


class SnapshotCommand:
    name = "snapshot"
    help = "ask a running process that called sqldiag.install() for a snapshot"
    description = """Ask a running process what it holds now, without stopping it: a census of its
live objects by category (ORM objects, identity maps, rows, result lists, caches, the rest),
the statements and lines of code whose results hold them, the holders that keep them alive
and RSS with the allocators' free memory. The process must have opted in with
`sqldiag.install()` (or have been started with `sqldiag run --live`); it answers on a Unix
socket only its own user (or root) can open, and keeps serving meanwhile: the report says
how long its threads waited at most (about 0.1 s per million live objects in the listing,
50 ms turns while the census sizes its samples).

Each snapshot is a run folder with record.json and report.html, like any run: `sqldiag diff`
between two snapshots of one process answers "what grew since".

  sqldiag snapshot 4242
  sqldiag snapshot 4242 --every 60s --count 10     # a series, one folder each
  sqldiag diff reports/gunicorn-4242-2026...Z reports/gunicorn-4242-2026...Z

Exit code: 0; 3 when a snapshot exceeded a --budget; 1 with one line when the process is not there, did not opt in, belongs
to another user or did not answer."""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pid", type=int, help="the process to ask")
        parser.add_argument("--every", type=duration, metavar="DURATION",
                            help="take a series: one snapshot every DURATION (30s, 5m)")
        parser.add_argument("--count", type=_count, metavar="N",
                            help="how many snapshots (default 1; with --every, until Ctrl-C)")
        parser.add_argument("--name", help="name of the run folders (default: the "
                                           "process's program and pid)")
        parser.add_argument("--holders", action="store_true",
                            help="also measure kept-alive-by: what each Session's identity "
                                 "map, driver buffer and pool result keeps, and the chain of "
                                 "references to it; it walks all they hold (about 2 s per "
                                 "100,000 ORM objects) and the chain searches pause the "
                                 "process")
        parser.add_argument("--timeout", type=duration, default=120.0, metavar="DURATION",
                            help="how long to wait for each answer (default 120s)")
        parser.add_argument("--socket-dir", type=Path, metavar="DIR",
                            help="where the process's socket is, when it was installed "
                                 "with another (default $SQLDIAG_SOCKET_DIR or "
                                 "/tmp/sqldiag-UID)")
        parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                            help="where the run folders are written (default ./reports)")
        add_outcome_arguments(parser, "print each snapshot's summary as JSON on stdout")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        if args.count and args.count > 1 and args.every is None:
            raise SqldiagError("--count above 1 needs --every (how far apart)")
        count = args.count or (1 if args.every is None else None)
        from sqldiag.analysis.budgets import check_budgets, parse_budget

        budgets = [parse_budget(text) for text in args.budget]  # before anything is asked
        broken: list[str] = []
        taken = 0
        while count is None or taken < count:
            started = time.monotonic()
            if args.every is not None:
                print(f"snapshot {taken + 1}{f' of {count}' if count else ''} of process "
                      f"{args.pid}...", file=sys.stderr, flush=True)
            pending = start_snapshot(args.pid, holders=args.holders, timeout=args.timeout,
                                     socket_dir=args.socket_dir)
            # Imported while the process takes its census: about half a second of the
            # command's own that the user then does not wait for.
            from rich.console import Console

            from sqldiag.analysis.analyse import analyse
            from sqldiag.reporters.json_output import run_json
            from sqldiag.reporters.run_folder import save_run
            from sqldiag.reporters.terminal import print_summary

            err = Console(stderr=True)
            record = pending.record()
            analysis = analyse(record)
            run_dir = save_run(record, analysis, args.reports_dir,
                               args.name or record.scenario.name)
            if args.json:
                print(run_json(record, analysis, run_dir))
                sys.stdout.flush()
            else:
                print_summary(record, analysis, err, str(run_dir))
            broken += [f"{run_dir.name}: {text}" for text in check_budgets(analysis, budgets)]
            taken += 1
            if count is not None and taken >= count:
                break
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
        if broken:
            raise BudgetExceeded("budget exceeded: " + "; ".join(broken))
        return EXIT_OK
