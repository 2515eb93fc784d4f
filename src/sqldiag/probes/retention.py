"""Kept-alive-by: the holders that keep the workload's memory from being freed.

At the workload-end phase, with the results still held, each known holder's retained
size is measured by walking gc referents (no attribute access: pympler's asizeof calls
hasattr, which runs SQLAlchemy's memoized properties, and it walks into the whole mapper
registry). The walk counts data, not machinery: it stops at classes, modules, functions,
code, frames, weak references, and SQLAlchemy or driver objects other than per-row ones
(InstanceState, Row, the identity map itself, PyMySQL's buffered result). Rule for bytes
reachable from two holders: they are counted once, for the first holder in this order:

  1. the workload's return value, held by its caller (the user's result lists)
  2. driver buffers: PyMySQL's buffered results still referenced by connections
  3. Session identity maps (their dicts, keys and InstanceStates)
  4. SQLAlchemy's compiled-statement caches of live engines

Weak references are not followed, as the garbage collector does not follow them. A
back-reference chain (objgraph) from each holder to a module global shows who keeps it.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from dataclasses import dataclass

import objgraph

RESULT, DRIVER, IDENTITY, CACHE = ("result held by its caller", "driver buffers",
                                   "Session identity maps", "compiled-SQL caches")
HOLDER_ORDER = (RESULT, DRIVER, IDENTITY, CACHE)


@dataclass
class Holder:
    name: str
    objects: list

    def count(self) -> int:
        return len(self.objects)


def find_holders(result: object) -> list[Holder]:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    driver, identity, caches = [], [], []
    for obj in gc.get_objects():
        kind = type(obj)
        if kind.__name__ == "MySQLResult" and kind.__module__.startswith("pymysql"):
            driver.append(obj)
        elif isinstance(obj, Session):
            identity.append(obj.identity_map)
        elif isinstance(obj, Engine) and getattr(obj, "_compiled_cache", None) is not None:
            caches.append(obj._compiled_cache)
    return [Holder(RESULT, [result] if result is not None else []), Holder(DRIVER, driver),
            Holder(IDENTITY, identity), Holder(CACHE, caches)]


def _chain(obj: object) -> list[str]:
    """Type names from a module global down to `obj`, or [] when none within reach."""
    try:
        chain = objgraph.find_backref_chain(obj, objgraph.is_proper_module, max_depth=8)
    except Exception:  # noqa: BLE001 - a diagnostic aid; never fail the run over it
        return []
    if len(chain) < 2 or not objgraph.is_proper_module(chain[0]):
        return []
    names = [f"module {chain[0].__name__}"]
    names += [type(link).__qualname__ for link in chain[1:]]
    return names


_STOP_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
               types.CodeType, types.FrameType, types.MethodType, weakref.ref,
               weakref.ProxyType)
_DATA_TYPES = {"InstanceState", "Row", "LegacyRow", "WeakInstanceDict", "_WeakInstanceDict",
               "IdentitySet",
               "MySQLResult", "LRUCache"}
_LIBRARIES = ("sqlalchemy", "pymysql", "psycopg", "MySQLdb", "asyncpg", "aiomysql")


def _is_machinery(obj: object) -> bool:
    if isinstance(obj, _STOP_TYPES):
        return True
    kind = type(obj)
    module = getattr(kind, "__module__", "") or ""
    return module.startswith(_LIBRARIES) and kind.__name__ not in _DATA_TYPES


def retained_sizes(roots: list[list]) -> list[int]:
    """Bytes reachable from each group of roots; an object reached from an earlier group
    is not counted again."""
    seen: set[int] = set()
    sizes = []
    for group in roots:
        total = 0
        stack = [obj for obj in group if not _is_machinery(obj) or
                 type(obj).__name__ in _DATA_TYPES]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            total += sys.getsizeof(obj)
            for ref in gc.get_referents(obj):
                if id(ref) not in seen and not _is_machinery(ref):
                    stack.append(ref)
        sizes.append(total)
    return sizes


def measure_holders(result: object) -> list[dict]:
    """Retained bytes per holder (shared bytes counted for the first holder only)."""
    holders = find_holders(result)
    sizes = retained_sizes([h.objects for h in holders])
    out = []
    for holder, size in zip(holders, sizes):
        out.append({"holder": holder.name, "objects": holder.count(), "bytes": int(size),
                    "chain": _chain(holder.objects[0]) if holder.objects and
                    holder.name != RESULT else []})
    return out
