"""`sqldiag run script.py [args]` / `sqldiag run -m module [args]`: your own program.

The program runs in this process as `python script.py args` would run it (same
sys.argv, `__main__`, stdin and stdout, exit code) under an in-process capture; the
record and HTML report are written, and sqldiag's summary goes to stderr so that the
program's own output is unchanged.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from rich.console import Console

from sqldiag.api import Capture
from sqldiag.capture.plan import DEFAULT_TRACE_DEPTH
from sqldiag.errors import SqldiagError
from sqldiag.reporters.terminal import print_summary


class RunCommand:
    name = "run"
    help = "run your own program (script or -m module) under sqldiag"
    description = """Run a Python program as `python` would, under sqldiag's probes, then
write its record and report. sqldiag's own output goes to stderr.

Threads, asyncio and multiprocessing children (fork, spawn, forkserver; Pool and
ProcessPoolExecutor workers) are all measured: each child traces itself and the report
shows every process and the total.

  sqldiag run myservice.py --batch 100
  sqldiag run -m myapp.jobs.export --since yesterday"""

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-m", dest="module", metavar="MODULE",
                            help="run a module as `python -m MODULE` does")
        parser.add_argument("--name", help="name of the run folder (default: the program)")
        parser.add_argument("--trace-depth", type=int, default=DEFAULT_TRACE_DEPTH,
                            help=f"tracemalloc frames per allocation (default {DEFAULT_TRACE_DEPTH})")
        parser.add_argument("--no-follow", dest="follow", action="store_false",
                            help="do not measure multiprocessing children in themselves "
                                 "(their RSS is still sampled)")
        parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                            help="where the run folder is written (default ./reports)")
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
        target = args.module or argv[0]
        name = args.name or Path(target).stem.replace(".", "_")
        code = 0
        saved_argv, saved_main = sys.argv, sys.modules.get("__main__")
        capture = Capture(name=name, reports_dir=args.reports_dir,
                          trace_depth=args.trace_depth, census=True,
                          follow_children=args.follow)
        capture.source = "run"
        try:
            with capture:
                code = _run_program(args.module, argv)
        except SystemExit as exc:  # raised inside the capture: already recorded
            code = _exit_code(exc)
        except KeyboardInterrupt:
            code = 130
        finally:
            sys.argv = saved_argv
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
        sys.stdout.flush()
        if capture.record is not None and capture.analysis is not None:
            print_summary(capture.record, capture.analysis, Console(stderr=True),
                          str(capture.run_dir))
        return code


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_program(module: str | None, argv: list[str]) -> int:
    """Run like the interpreter: sys.argv as python sets it, __main__ as the run name."""
    try:
        if module is not None:
            sys.argv = [module, *argv]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, str(Path(argv[0]).resolve().parent))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc)
    return 0
