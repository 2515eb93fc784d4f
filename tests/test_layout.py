"""The package's layout follows the data flow: no module imports one from a later stage,
and no modules import each other in a circle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import sqldiag

PACKAGE = Path(sqldiag.__file__).parent

# Stages in the order of the flow (DESIGN.md): a module may import its own stage or an
# earlier one, never a later one.
STAGES = ("base", "record", "workload", "capture", "analysis", "reporters", "entry")
ENTRY_MODULES = {"sqldiag", "sqldiag.__main__", "sqldiag.cli", "sqldiag.api",
                 "sqldiag.pytest_plugin"}


def stage_of(module: str) -> str:
    if module in ENTRY_MODULES or module.startswith("sqldiag.commands"):
        return "entry"
    if module.startswith("sqldiag.live"):  # measures a running service: a capture stage
        return "capture"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in STAGES:
        return parts[1]
    return "base"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def known_modules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
                # importing a.b.c runs the __init__ of a.b too (the root package's own
                # __init__ imports nothing at module level, so it is left out)
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return found


def import_graph() -> dict[str, set[str]]:
    known = known_modules()
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        graph[name] = {m for m in imports_of(path, known) if m != name}
    return graph


def test_no_module_imports_a_later_stage():
    graph = import_graph()
    wrong = sorted(f"{module} ({stage_of(module)}) imports {target} ({stage_of(target)})"
                   for module, targets in graph.items() for target in targets
                   if STAGES.index(stage_of(target)) > STAGES.index(stage_of(module)))
    assert wrong == []


def test_no_import_circle():
    graph = import_graph()
    # A package's __init__ importing its own submodules is not a circle of modules.
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, ts in graph.items()}
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_checks_see_a_violation():
    """The graph is read from real imports: a known edge is present."""
    graph = import_graph()
    assert "sqldiag.record.store" in graph["sqldiag.analysis.summary"] | {
        t for ts in graph.values() for t in ts}
    assert stage_of("sqldiag.reporters.html") == "reporters"
    assert stage_of("sqldiag.commands.run") == "entry"
