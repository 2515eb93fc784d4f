"""What the program has imported, and calling back once it imports a module.

Measuring imports nothing of the program's stack into its process before the program
does (a program that puts its own SQLAlchemy first on sys.path gets its own): the
probes look for the classes they serve among the modules already imported, and wrap or
listen to a module once the program's own import of it has run.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any


def imported(name: str, importing: bool) -> bool:
    """Whether the program has imported `name` (and it has run to its end, unless it is
    being imported and has just run)."""
    module = sys.modules.get(name)
    return module is not None and (importing or not getattr(
        getattr(module, "__spec__", None), "_initializing", False))


def imported_attribute(module: str, name: str) -> Any:
    """`module.name` when the program has imported `module`, else None."""
    return getattr(sys.modules.get(module), name, None)


class AfterImport(importlib.abc.MetaPathFinder):
    """Calls back once a module has been executed by the program's own import of it."""

    def __init__(self, name: str, callback: Callable[[], object]) -> None:
        self.name, self.callbacks = name, [callback]

    @classmethod
    def watch(cls, name: str, callback: Callable[[], object]) -> None:
        """Once per callback, module and process: the callback finds what it serves when
        it runs."""
        finder = next((f for f in sys.meta_path if isinstance(f, cls) and f.name == name),
                      None)
        if finder is None:
            sys.meta_path.insert(0, cls(name, callback))
        elif callback not in finder.callbacks:
            finder.callbacks.append(callback)

    def callback(self) -> None:
        for callback in self.callbacks:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - never break the program's import
                sys.stderr.write(f"sqldiag: after importing {self.name}: "
                                 f"{type(exc).__name__}: {exc}\n")

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and the finders below find the real spec
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ThenCall(spec.loader, self.callback)
        return spec


class _ThenCall:
    """A module's own loader, calling back after it has run the module."""

    def __init__(self, loader, callback: Callable[[], object]) -> None:
        self._loader, self._callback = loader, callback

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback()
