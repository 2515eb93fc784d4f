"""Command line entry point: subcommands, one-line errors, documented exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqldiag import __version__
from sqldiag.commands import COMMAND_CLASSES, load_commands
from sqldiag.errors import EXIT_ERROR, EXIT_INTERRUPTED, SqldiagError

EPILOG = """exit codes: 0 ok, 1 error (one line on stderr; --debug for a traceback),
2 bad command line, 3 a budget was exceeded, 4 stopped by the --max-rss memory guard,
130 interrupted by Ctrl-C or SIGTERM (runs keep their partial record)"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, of that command alone (the others are not imported)."""
    parser = argparse.ArgumentParser(
        prog="sqldiag",
        description="Explain where a Python database workload's memory goes: run a scenario "
                    "under instrumentation, attribute memory to driver rows, SQLAlchemy rows, "
                    "ORM objects, the identity map, result lists, caches and allocator free "
                    "memory, and save a record and an HTML report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sqldiag {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in load_commands([only] if only else None):
        sub = subparsers.add_parser(command.name, help=command.help,
                                    description=command.description,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        command.prepare_parser(sub)
        sub.set_defaults(handler=command)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The subcommand argv asks for, found before parsing, or None."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMAND_CLASSES else None


def main(argv: Sequence[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else list(argv)
    command = _command_named(args_given)
    if command == "run":
        from sqldiag.commands.run import program_marked

        args_given = program_marked(args_given)
    parser = build_parser(command)
    args = parser.parse_args(args_given)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.handler.run(args, parser)
    except SqldiagError as exc:
        if args.debug:
            raise
        print(f"sqldiag: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sqldiag: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
