"""The contract between sqldiag and a scenario file.

A scenario file is a Python module that defines

    def run(ctx: ScenarioContext) -> object

and, optionally, a module docstring (its first line is the description shown by
`sqldiag scenario list`) and `ENV`, a dict of environment variables its process needs
(such as MALLOC_ARENA_MAX, which glibc reads at start-up). `run` does the workload; whatever it returns is kept alive
until the "workload end" phase has been measured, as the caller of the original code
would hold it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from sqldiag.workload.digest import RowDigest


@dataclass
class ScenarioContext:
    """What a scenario receives."""

    engine: Engine  # connected to the seeded database
    Session: sessionmaker  # sessionmaker bound to `engine`
    User: type  # the mapped class of the users table
    table: Table  # the users table
    rows: int  # rows in the table
    workers: int  # how many concurrent workers the scenario should use
    mark: Callable[[str], None]  # mark("phase name"): record a phase on the timeline
    options: dict[str, Any] = field(default_factory=dict)  # --option key=value pairs
    digest: RowDigest = field(default_factory=RowDigest)  # digest.add(row) per row consumed
