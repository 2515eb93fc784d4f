"""Find scenarios by name (built in) or by path (the user's own file)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import sqldiag_scenarios

from sqldiag.errors import SqldiagError


@dataclass(frozen=True)
class ScenarioFile:
    name: str
    path: Path

    @property
    def is_builtin(self) -> bool:
        return self.path.parent.resolve() == builtin_dir().resolve()

    @property
    def env(self) -> dict[str, str]:
        """The file's literal `ENV = {...}`, read without running the file."""
        try:
            tree = ast.parse(self.path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            return {}
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "ENV"):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    raise SqldiagError(f"{self.path}: ENV must be a literal dict of "
                                       "strings") from None
                if isinstance(value, dict):
                    return {str(k): str(v) for k, v in value.items()}
        return {}

    @property
    def description(self) -> str:
        """First line of the module docstring, read without importing the file."""
        try:
            doc = ast.get_docstring(ast.parse(self.path.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError):
            return "(unreadable)"
        return doc.strip().splitlines()[0] if doc else "(no description)"


def builtin_dir() -> Path:
    return Path(sqldiag_scenarios.__file__).parent


def builtin_scenarios() -> list[ScenarioFile]:
    return [ScenarioFile(p.stem, p) for p in sorted(builtin_dir().glob("*.py"))
            if not p.name.startswith("_")]


def find_scenario(spec: str) -> ScenarioFile:
    """A built-in name such as `leak_repro`, or a path to a .py file."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SqldiagError(f"scenario file not found: {spec}")
        return ScenarioFile(path.stem, path.resolve())
    for scenario in builtin_scenarios():
        if scenario.name == spec:
            return scenario
    names = ", ".join(s.name for s in builtin_scenarios())
    raise SqldiagError(f"no built-in scenario named {spec!r} (built in: {names}; "
                       "or give a path to a .py file)")


def load_module(scenario: ScenarioFile) -> ModuleType:
    """Import the scenario file and check it defines run(ctx)."""
    spec = importlib.util.spec_from_file_location(f"sqldiag_scenario_{scenario.name}",
                                                  scenario.path)
    if spec is None or spec.loader is None:
        raise SqldiagError(f"cannot load scenario file {scenario.path}")
    module = importlib.util.module_from_spec(spec)
    # registered so that pickle finds its functions (multiprocessing workers)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SqldiagError(f"scenario {scenario.path} has a syntax error: line {exc.lineno}: "
                           f"{exc.msg}") from None
    if not callable(getattr(module, "run", None)):
        raise SqldiagError(f"scenario {scenario.path} does not define run(ctx)")
    return module
