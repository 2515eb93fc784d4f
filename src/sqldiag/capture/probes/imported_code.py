"""The code of the modules a program imports during the work, which the collector never lists.

A census counts gc-tracked objects (functions, classes, module dicts), but the bulk of
an import is not tracked: code objects, their bytecode, names, constants, docstrings and
line tables. Importing SQLAlchemy's ORM with PyMySQL puts 26 MB in tracemalloc's traces,
about 15 MB of it from unmarshalling code; in a program that loads 20,000 rows that is
as much as its rows. This walks what each new module defines and adds up the objects
the collector does not track, once per module (code does not change once imported);
a global's long dict or set is left to plain_values.py, which sizes it as it grows.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from sqldiag.capture.attribution.overhead import SMALL_REQUEST
from sqldiag.capture.probes.plain_values import is_long_container
from sqldiag.capture.probes.untouched import class_namespace, module_namespace

_OWN_PREFIX = "sqldiag"
_EMPTY_TUPLE = sys.getsizeof(())
_EMPTY_BYTES = sys.getsizeof(b"")
# 3.11 keeps a code object's bytecode inside it (getsizeof counts it) and builds
# co_code, co_varnames, co_cellvars and co_freevars anew on each access from its
# local names: those are sized by arithmetic, not asked for
_CODE_INLINE = sys.version_info >= (3, 11)


class ImportedCode:
    """Untracked bytes of the modules imported after it was made (sqldiag's own left out)."""

    def __init__(self, present: Iterable[str] | None = None) -> None:
        self._before = frozenset(sys.modules if present is None else present)
        # per module name: id of the module object, and the untracked bytes it defines,
        # all and in blocks larger than SMALL_REQUEST (outside pymalloc)
        self._sized: dict[str, tuple[int, int, int]] = {}

    def bytes_now(self) -> ImportedBytes:
        """What the modules imported since define, that are still imported. Only modules
        not sized before are walked; a module's objects reached first from another module
        of the same walk are that module's."""
        modules = [(name, module) for name, module in list(sys.modules.items())
                   if name not in self._before and module is not None
                   and not name.startswith(_OWN_PREFIX)]
        fresh = [(name, module) for name, module in modules
                 if self._sized.get(name, (None,))[0] != id(module)]
        if fresh:
            seen: set[int] = set()
            for name, module in fresh:
                self._sized[name] = (id(module), *_walk(module, name, seen))
        return ImportedBytes(sum(self._sized[name][1] for name, _ in modules),
                             sum(self._sized[name][2] for name, _ in modules), len(modules))


class ImportedBytes(NamedTuple):
    """What imported modules define: the bytes the collector does not list; the bytes in
    blocks outside pymalloc, listed or not (their dicts' tables, classes, code objects
    with long bytecode); how many modules."""

    total: int = 0
    large: int = 0
    modules: int = 0


NOTHING_IMPORTED = ImportedBytes()


# The kinds the walk sizes and looks into: the interpreter's own, whose size and parts it
# reads without running any code of the program's. Instances of other classes (a proxy,
# a lazy object: Django's settings, werkzeug's LocalProxy) are left alone; asking them
# anything (their __class__, their __sizeof__) may run their code. They are gc-tracked,
# and other_python counts them with the collector's growth.
_ATOMS = frozenset({str, bytes, int, float, complex, type(None), bool})
_CONTAINERS = frozenset({dict, tuple, frozenset})
_CALLABLES = frozenset({types.FunctionType, types.CodeType, staticmethod, classmethod,
                        property})
def _named(module_name: object, name: str) -> bool:
    """Whether a __module__ is `name` (compared only when it is a str: a program may set
    anything there, and an object's own __eq__ is its code)."""
    return type(module_name) is str and module_name == name


def _walk(module: types.ModuleType, name: str, seen: set[int]) -> tuple[int, int]:
    """Untracked bytes reached from `module`'s dict through what it defines itself (its
    functions' code and the code nested in it, its classes and their attributes, and
    the strings, bytes, numbers and tuples among them), and the bytes in large blocks
    of all it reached, tracked or not (see ImportedBytes)."""
    namespace = module_namespace(module)
    if namespace is None:
        return 0, 0
    getsizeof, is_tracked = sys.getsizeof, gc.is_tracked
    total = large = 0
    stack: list[object] = [namespace]
    # long dicts and sets of its globals are plain_values.py's: sized as they grow
    try:
        seen.update(id(value) for value in namespace.values() if is_long_container(value))
    except RuntimeError:  # another thread defines a global meanwhile
        pass
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        kind = type(obj)
        # another module's class or function met here is left unmarked: its own module's
        # walk counts it (a registry module, walked first, holds later modules' classes
        # and functions; marking them hid their code from those modules' walks)
        if issubclass(kind, type):  # a class: its own (not another module's, imported)
            own = class_namespace(obj)  # type: ignore[arg-type]
            if own is None or not _named(own.get("__module__"), name):
                continue
            stack.append(own)
        elif (kind not in _ATOMS and kind not in _CONTAINERS and kind not in _CALLABLES) or (
                kind is types.FunctionType
                and not _named(obj.__module__, name)):  # type: ignore[attr-defined]
            continue
        seen.add(id(obj))
        size = getsizeof(obj)
        if not is_tracked(obj):
            total += size
        if size > SMALL_REQUEST:
            large += size
        if kind is dict:
            _extend_from(stack, obj)  # type: ignore[arg-type]
        elif kind is tuple or kind is frozenset:
            stack.extend(obj)  # type: ignore[call-overload]
        elif kind is types.FunctionType:
            stack.append(obj.__code__)  # type: ignore[attr-defined]
            stack.append(obj.__doc__)  # type: ignore[attr-defined]
        elif kind is types.CodeType:
            total += _code_parts(obj, stack)  # type: ignore[arg-type]
        elif kind is staticmethod or kind is classmethod:
            stack.append(obj.__func__)  # type: ignore[attr-defined]
        elif kind is property:
            stack.extend((obj.fget, obj.fset, obj.fdel))  # type: ignore[attr-defined]
    return total, large


def _extend_from(stack: list[object], namespace: Mapping[object, object]) -> None:
    """Its keys and values onto `stack` (not its items: a pair is a new tuple, whose
    address a later pair may take, and the walk knows objects by their addresses)."""
    try:
        stack.extend(namespace.keys())
        stack.extend(namespace.values())
    except RuntimeError:  # another thread adds to it meanwhile
        pass


def _code_parts(code: types.CodeType, stack: list[object]) -> int:
    """Puts a code object's own parts on `stack`; returns the bytes of those that
    would be built anew if asked for (see _CODE_INLINE)."""
    stack.extend((code.co_consts, code.co_names, code.co_linetable, code.co_name,
                  code.co_filename))
    if not _CODE_INLINE:
        stack.extend((code.co_code, code.co_varnames, code.co_cellvars, code.co_freevars))
        return 0
    stack.extend((code.co_qualname, code.co_exceptiontable))
    names = (code.co_varnames, code.co_cellvars, code.co_freevars)
    stack.extend(local for part in names for local in part)
    count = sum(map(len, names))
    # the local names' tuple and their kinds' bytes, as the code object holds them
    return _EMPTY_TUPLE + 8 * count + _EMPTY_BYTES + count
