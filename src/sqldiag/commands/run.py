"""`sqldiag run script.py [args]` / `sqldiag run -m module [args]`: your own program.

The program runs in a process of its own as `python script.py args` would run it (same
sys.argv, `__main__`, stdin and stdout, exit code; nothing of sqldiag's database stack
imported before it), at full size and without tracing (see capture/program.py). Its
record and HTML report are written, and sqldiag's summary goes to stderr so that the
program's own output is unchanged.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from sqldiag.analysis.budgets import parse_budget
from sqldiag.capture.plan import DEFAULT_TRACE_DEPTH
from sqldiag.capture.program import ProgramSpec, recovered
from sqldiag.capture.results import PassResult
from sqldiag.commands.arguments import (
    add_guard_argument,
    add_outcome_arguments,
    max_rss_bytes,
    trace_depth,
)
from sqldiag.errors import EXIT_INTERRUPTED, SqldiagError
from sqldiag.record.codec import RecordError


def _outcome() -> ModuleType:
    """What turns the program's measurement into a record and a report (SQLAlchemy for the
    URL scrubbing, the analysis, the reporters: about half a second of imports), imported
    while the program runs, not before it starts (see _run_program)."""
    from sqldiag.commands import run_outcome

    return run_outcome


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return port


def _repeat(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 3:
        raise argparse.ArgumentTypeError("must be at least 3 to judge growth")
    return value


class RunCommand:
    name = "run"
    help = "run your own program (script or -m module) under sqldiag"
    description = """Run a Python program as `python` would, at full size, then write its
record and report. sqldiag's own output goes to stderr (with --json, the JSON goes to
stdout after the program's own output).

The program runs untraced, at its own speed and size: a watcher process samples its RSS,
and the program is paused briefly (about 0.3 s per million live objects) for a census of
its live objects at each new high of RSS and as SQLAlchemy hands it whole results; the
categories at peak come from the census that found the most alive (or a later one, at a
higher RSS, that found nearly as much), extended to the peak by the Python bytes the
allocators held then. A burst shorter than a tenth of a second can be missed by the
censuses (RSS still shows it). A multiprocessing child measures itself the same way,
except a forked one, which is only sampled (a census would copy its parent's pages into
it). --trace-depth N runs it under tracemalloc instead, for allocation sites
with N frames each, at several times the memory and time (tracemalloc's own memory is
taken out of the RSS figures).

Threads, asyncio and multiprocessing children (fork, spawn, forkserver; Pool and
ProcessPoolExecutor workers) are all measured: each child measures itself and the report
shows every process and the total.

  sqldiag run myservice.py --batch 100
  sqldiag run -m myapp.jobs.export --since yesterday
  sqldiag run --budget peak_rss=500MB --repeat 5 jobs/nightly.py

Exit code: the program's own; 3 when it succeeded but a budget was exceeded, 4 when the
memory guard stopped it, 1 when it could not be started."""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-m", dest="module", metavar="MODULE",
                            help="run a module as `python -m MODULE` does")
        parser.add_argument("--name", help="name of the run folder (default: the program)")
        parser.add_argument("--census", action="store_true",
                            help=argparse.SUPPRESS)  # the default since 0.3; kept for scripts
        parser.add_argument("--trace-depth", type=trace_depth, default=0, metavar="N",
                            help="run under tracemalloc with N frames per allocation "
                                 f"(1-100, {DEFAULT_TRACE_DEPTH} is a good start) instead of "
                                 "censuses; default: no tracing")
        parser.add_argument("--repeat", type=_repeat, default=0, metavar="N",
                            help="leak or peak: run the program N times (N >= 3) in one "
                                 "process and report what keeps growing after gc.collect()")
        parser.add_argument("--no-follow", dest="follow", action="store_false",
                            help="do not measure multiprocessing children in themselves "
                                 "(their RSS is still sampled)")
        parser.add_argument("--live", action="store_true",
                            help="let `sqldiag snapshot PID` ask the running program for "
                                 "snapshots, as sqldiag.install() in it would (its PID is "
                                 "printed at the start)")
        parser.add_argument("--metrics-port", type=_port, metavar="PORT",
                            help="with --live: serve Prometheus metrics on "
                                 "127.0.0.1:PORT/metrics while the program runs")
        parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                            help="where the run folder is written (default ./reports)")
        add_outcome_arguments(parser, "print the summary as JSON on stdout once the "
                                      "program has ended")
        add_guard_argument(parser)
        parser.add_argument("program", nargs=argparse.REMAINDER,
                            help="script.py and its arguments (or the module's arguments)")

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        argv = list(args.program)
        if argv and argv[0] == "--":
            argv = argv[1:]
        if args.module is None and not argv:
            raise SqldiagError("nothing to run: give script.py or -m module")
        if args.module is None and not Path(argv[0]).is_file():
            raise SqldiagError(f"no such script: {argv[0]}")
        if args.census and args.trace_depth:
            raise SqldiagError("--census and --trace-depth exclude each other: censuses are "
                               "the default, --trace-depth traces instead")
        budgets = [parse_budget(text) for text in args.budget]
        target = args.module or argv[0]
        name = args.name or Path(target).stem.replace(".", "_")
        spec = ProgramSpec(name=name, argv=tuple(argv), module=args.module,
                           trace_depth=args.trace_depth,
                           follow_children=args.follow, max_rss=max_rss_bytes(args.max_rss),
                           repeat=args.repeat, live=args.live or args.metrics_port is not None,
                           metrics_port=args.metrics_port)
        created = datetime.now(timezone.utc)
        code, result = _run_program(spec)
        return _outcome().report_outcome(args, argv, budgets, name, target, created, code,
                                         result)


def program_marked(argv: list[str]) -> list[str]:
    """`argv` (sqldiag's, from the command on) with "--" after `-m MODULE`: what follows
    is the module's, as python reads `-m MODULE ARGS`, and argparse would take its options
    (gunicorn's -w 2) for run's. A script's arguments need no mark: the script's name,
    the first positional, already starts them."""
    probe = argparse.ArgumentParser(add_help=False)
    RunCommand().prepare_parser(probe)
    takes_value = {option for action in probe._actions for option in action.option_strings
                   if action.nargs != 0}
    at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv)) + 1
    while at < len(argv):
        arg = argv[at]
        if arg == "--" or not arg.startswith("-"):
            return argv  # the program's arguments start here, marked or by the script's name
        if arg.startswith("-m"):
            at += 2 if arg == "-m" else 1  # -m MODULE, or -mMODULE
            return argv[:at] + ["--"] + argv[at:] if at <= len(argv) else argv
        at += 2 if arg in takes_value else 1
    return argv


def _run_program(spec: ProgramSpec) -> tuple[int, PassResult]:
    """Run the program's process; its exit code and what it measured."""
    with tempfile.TemporaryDirectory(prefix="sqldiag-run-") as tmp:
        spec_path, out = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec = replace(spec, checkpoints=tmp)
        spec_path.write_text(json.dumps(spec.to_json()), encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "sqldiag.capture.program",
                                 str(spec_path), str(out)])
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            try:
                _outcome()  # meanwhile, beside the program
            except KeyboardInterrupt:
                pass  # the terminal sent it to the program too; imported again later
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:
                    continue  # the terminal sent it to the program too: wait for its end
        finally:
            signal.signal(signal.SIGTERM, previous)
        if not out.exists():
            result = recovered(Path(tmp), code, spec.max_rss)
            if result is None:
                raise SqldiagError(f"the program's process died with exit code {code} "
                                   "before writing what it measured")
            # the guard's own code, or as a shell reports a killed process
            code = result.exit_code or (128 - code if code < 0 else code)
            return code, replace(result, exit_code=code)
        data = json.loads(out.read_text(encoding="utf-8"))
    if "error" in data:
        raise SqldiagError(str(data["error"]))
    try:
        result = PassResult.from_json(data)
    except RecordError as exc:
        raise SqldiagError(f"the program's measurement is unreadable: {exc}") from None
    if code < 0:
        code = EXIT_INTERRUPTED if code in (-signal.SIGINT, -signal.SIGTERM) else 128 - code
    return code, replace(result, exit_code=code)
