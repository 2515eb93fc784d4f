"""Arguments shared by the commands that run scenarios (scenario, compare): parsed and
checked here, turned into the typed RunOptions the runner reads."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from sqldiag.capture.plan import DEFAULT_TRACE_DEPTH, RunOptions, TraceMode
from sqldiag.errors import SqldiagError
from sqldiag.units import parse_size
from sqldiag.workload.scenarios import ScenarioFile

if TYPE_CHECKING:  # not imported here: `sqldiag run` starts its program before SQLAlchemy
    from sqlalchemy.engine import URL

DEFAULT_MAX_RSS_SHARE = 0.75
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> str:
    """A size as given (300MB, 2GB), checked while the arguments are read: a bad one is
    a usage error, as a bad number is."""
    try:
        parse_size(text)
    except SqldiagError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def trace_depth(text: str) -> int:
    """--trace-depth: 0 (no tracing) to 100 frames."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 (no tracing) and 100")
    return value


def _table(text: str) -> str:
    if not _TABLE_NAME.match(text):
        raise argparse.ArgumentTypeError(f"not a plain table name: {text!r}")
    return text


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a run: database, sizes, tracing, guard (shared with compare)."""
    parser.add_argument("--url", help="SQLAlchemy database URL (default: $SQLDIAG_URL, "
                                      "else an embedded SQLite file in the user cache)")
    parser.add_argument("--rows", type=_positive, default=100_000,
                        help="rows in the users table (default 100,000)")
    parser.add_argument("--workers", type=_positive, default=10,
                        help="concurrent workers (default 10)")
    parser.add_argument("--text-bytes", type=_positive, default=None,
                        help="typical length of the address TEXT values (default 40-60 "
                             "characters; over 512 bytes CPython uses the C allocator)")
    parser.add_argument("--table", type=_table, default="users",
                        help="table name to create and read (default users)")
    parser.add_argument("--trace", choices=[mode.value for mode in TraceMode],
                        default="auto",
                        help="how memory is attributed to categories. auto (default): "
                             "up to 60,000 rows x workers a traced run at full size; above, "
                             "tracemalloc runs at three small sizes after the bare run and "
                             "a fixed + per-row model predicts the full size. full: a "
                             "traced run at full size (slow, memory-hungry). scaled: one "
                             "traced run at about 60,000 rows x workers, scaled linearly. "
                             "off: RSS only")
    parser.add_argument("--trace-rows", type=_positive, default=None,
                        help="rows for the traced pass (overrides --trace auto's choice)")
    parser.add_argument("--trace-depth", type=trace_depth, default=DEFAULT_TRACE_DEPTH,
                        help=f"tracemalloc frames per allocation (default "
                             f"{DEFAULT_TRACE_DEPTH})")
    parser.add_argument("--no-census", action="store_true",
                        help="skip the object-type census (pympler) at peak and end")
    parser.add_argument("--option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE", help="passed to the scenario in ctx.options")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                        help="where run folders are written (default ./reports)")
    parser.add_argument("--repeat", type=_positive, default=None, metavar="N",
                        help="leak or peak: run the workload N more times under tracemalloc "
                             "and report what keeps growing after gc.collect() (N >= 3)")
    add_guard_argument(parser)
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up on a database that does not answer (default 10)")



def add_outcome_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """--budget and --json, the same for a scenario and a program of your own."""
    parser.add_argument("--budget", type=str, action="append", default=[],
                        metavar="NAME=SIZE",
                        help="exit 3 when a figure exceeds SIZE: peak_rss, end_rss, trim_rss, "
                             "a category at peak, or what the statements run from a call "
                             "site held at peak, FILE:FUNCTION or FILE:LINE (e.g. --budget "
                             "peak_rss=300MB --budget orm_objects=50MB --budget "
                             "jobs/export.py:export_users=50MB); repeatable")
    parser.add_argument("--json", action="store_true", help=json_help)


def add_guard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-rss", type=_size, default=None, metavar="SIZE",
                        help="memory guard: stop the workload when its RSS passes SIZE and "
                             "keep the record (default: 75%% of this machine's memory)")


def max_rss_bytes(text: str | None) -> int:
    """--max-rss in bytes, or the default share of this machine's memory."""
    if text:
        return parse_size(text)
    return int(psutil.virtual_memory().total * DEFAULT_MAX_RSS_SHARE)


def run_options(args: argparse.Namespace, scenario: ScenarioFile, url: URL) -> RunOptions:
    """RunOptions from the shared run arguments."""
    return RunOptions(scenario=scenario, url=url, rows=args.rows, workers=args.workers,
                      text_bytes=args.text_bytes, table=args.table,
                      trace=TraceMode(args.trace), trace_depth=args.trace_depth,
                      trace_rows=args.trace_rows, census=not args.no_census,
                      options=dict(args.option), command=_reproduce(args, scenario, url),
                      connect_timeout=args.connect_timeout, repeat=args.repeat or 0,
                      max_rss=max_rss_bytes(args.max_rss))


def _reproduce(args: argparse.Namespace, scenario: ScenarioFile, url: URL) -> str:
    """The command line that reproduces this run, without the password."""
    from sqldiag.redact import safe_url  # imports SQLAlchemy (see TYPE_CHECKING above)

    spec = scenario.name if scenario.is_builtin else str(scenario.path)
    parts = ["python", "-m", "sqldiag", "scenario", spec, "--url", safe_url(url),
             "--rows", str(args.rows), "--workers", str(args.workers)]
    if args.text_bytes:
        parts += ["--text-bytes", str(args.text_bytes)]
    if args.table != "users":
        parts += ["--table", args.table]
    if args.trace != "auto":
        parts += ["--trace", args.trace]
    if args.trace_rows:
        parts += ["--trace-rows", str(args.trace_rows)]
    if args.trace_depth != DEFAULT_TRACE_DEPTH:
        parts += ["--trace-depth", str(args.trace_depth)]
    for key, value in args.option:
        parts += ["--option", f"{key}={value}"]
    if args.max_rss:
        parts += ["--max-rss", args.max_rss]
    if args.repeat:
        parts += ["--repeat", str(args.repeat)]
    for budget in getattr(args, "budget", []):
        parts += ["--budget", budget]
    return shlex.join(parts)

