"""The tool's own error type and its documented exit codes."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_ERROR = 1  # bad input, database problems, unreadable records
EXIT_USAGE = 2  # argparse's own code for bad command lines
EXIT_BUDGET = 3  # a --budget or --fail-on-growth limit was exceeded
EXIT_MEMORY_GUARD = 4  # the workload passed --max-rss and was stopped; the record is kept
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM; the partial record is still written


class SqldiagError(Exception):
    """An error the user can act on; printed as one line, no traceback."""

    exit_code = EXIT_ERROR


class BudgetExceeded(SqldiagError):
    exit_code = EXIT_BUDGET
