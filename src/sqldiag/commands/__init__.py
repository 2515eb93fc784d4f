"""One module per subcommand; each is an object with prepare_parser() and run().

A command's module is imported only when it is the one asked for (or for the full
help): importing every command's dependencies (SQLAlchemy, the reporters) costs about
half a second that `sqldiag snapshot`, say, does not need before it asks its process."""

from __future__ import annotations

import importlib

# name -> (module, class), in the order the help lists them
COMMAND_CLASSES = {
    "scenario": ("sqldiag.commands.scenario", "ScenarioCommand"),
    "run": ("sqldiag.commands.run", "RunCommand"),
    "compare": ("sqldiag.commands.compare", "CompareCommand"),
    "diff": ("sqldiag.commands.diff", "DiffCommand"),
    "report": ("sqldiag.commands.report", "ReportCommand"),
    "snapshot": ("sqldiag.commands.snapshot", "SnapshotCommand"),
}


def load_commands(names: list[str] | None = None) -> list:
    """The command objects named (all by default), in the help's order."""
    chosen = [name for name in COMMAND_CLASSES if names is None or name in names]
    out = []
    for name in chosen:
        module, cls = COMMAND_CLASSES[name]
        out.append(getattr(importlib.import_module(module), cls)())
    return out
