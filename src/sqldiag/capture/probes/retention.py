"""Kept-alive-by: the holders that keep the workload's memory from being freed.

At the workload-end phase, with the results still held (and, in the same run, at each
phase mark during the workload, keeping the largest: the peak view), each known
holder's retained size is measured by walking gc referents (no attribute access: pympler's asizeof calls
hasattr, which runs SQLAlchemy's memoized properties, and it walks into the whole mapper
registry). The walk counts data, not machinery: it stops at classes, modules, functions,
code, frames, weak references, and SQLAlchemy or driver objects other than per-row ones
(InstanceState, Row, the identity map itself, PyMySQL's buffered result). Rule for bytes
reachable from two holders: they are counted once, for the first holder in this order:

  1. the workload's return value, held by its caller (the user's result lists)
  2. pool results not yet fetched: values held by multiprocessing(.dummy) pool result
     objects (ApplyResult, MapResult, imap iterators) and concurrent.futures Futures
  3. driver buffers: PyMySQL's buffered results still referenced by connections
  4. Session identity maps (their dicts, keys and InstanceStates)
  5. SQLAlchemy's compiled-statement caches of live engines

Weak references are not followed, as the garbage collector does not follow them. A
back-reference chain (objgraph) from each holder to a root a user recognises, a module
global or a thread's frame (not sqldiag's own), shows who keeps it.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from dataclasses import dataclass

import objgraph

from sqldiag.capture.probes.live import objects_of_types, subclasses_of
from sqldiag.capture.probes.roots import frame_locals
from sqldiag.capture.program_imports import imported_attribute
from sqldiag.record.categories import HOLDER_CACHE as CACHE
from sqldiag.record.categories import HOLDER_DRIVER as DRIVER
from sqldiag.record.categories import HOLDER_IDENTITY as IDENTITY
from sqldiag.record.categories import HOLDER_POOL as POOL
from sqldiag.record.categories import HOLDER_RESULT as RESULT
from sqldiag.record.parts import Holder


@dataclass
class HolderObjects:
    """The objects of one kind of holder."""

    name: str
    objects: list

    def count(self) -> int:
        return len(self.objects)


# Pool result classes are looked up where the program imported them: measuring does not
# import multiprocessing.pool or concurrent.futures into the program's process, which a
# program that never uses them would not have.
def _future() -> type | None:
    return imported_attribute("concurrent.futures._base", "Future")


def _imap_iterator() -> type | None:
    return imported_attribute("multiprocessing.pool", "IMapIterator")


def _pool_kinds() -> tuple[type, ...]:
    """The pool result classes the program can have made objects of."""
    found = (imported_attribute("multiprocessing.pool", "ApplyResult"), _imap_iterator(),
             _future())
    return tuple(kind for kind in found if kind is not None)


def _is(obj: object, kind: type | None) -> bool:
    return kind is not None and isinstance(obj, kind)


def find_holders(result: object) -> list[HolderObjects]:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    driver_result = imported_attribute("pymysql.connections", "MySQLResult")
    pool_kinds = subclasses_of(_pool_kinds())
    future = _future()
    found = objects_of_types(subclasses_of((Engine, Session, driver_result)) | pool_kinds)
    pools, driver, identity, caches = [], [], [], []
    for obj in found:
        if type(obj) in pool_kinds:
            if not _is(obj, future) or (obj.done() and not obj.cancelled()):
                pools.append(obj)
        elif isinstance(obj, Session):
            identity.append(obj.identity_map)
        elif isinstance(obj, Engine):
            if getattr(obj, "_compiled_cache", None) is not None:
                caches.append(obj._compiled_cache)
        else:
            driver.append(obj)
    return [HolderObjects(RESULT, [result] if result is not None else []),
            HolderObjects(POOL, pools), HolderObjects(DRIVER, driver),
            HolderObjects(IDENTITY, identity), HolderObjects(CACHE, caches)]


def _pool_values(container: object) -> object:
    """What a pool result object holds for its caller: the value, not the pool machinery
    (its pool, events and callbacks) that it also refers to."""
    if _is(container, _future()):
        return container._result  # type: ignore[attr-defined]
    if _is(container, _imap_iterator()):
        return container._items  # type: ignore[attr-defined] # results not yet iterated
    return getattr(container, "_value", None)


def _running_locals() -> dict[int, str]:
    """id of each object held by a local variable of a running function (any thread, not
    sqldiag's own frames) -> where, e.g. "local self of get() in multiprocessing/pool.py:768"."""
    where: dict[int, str] = {}
    for label, value in frame_locals():
        where.setdefault(id(value), label)
    return where


def _chain(obj: object) -> list[str]:
    """From a root a user recognises (a running function's local variable, or a module
    global) down to `obj`; [] when none is within reach."""
    held_by_locals = _running_locals()

    def is_root(candidate: object) -> bool:
        return id(candidate) in held_by_locals or objgraph.is_proper_module(candidate)

    try:
        chain = objgraph.find_backref_chain(obj, is_root, max_depth=8,
                                            extra_ignore=(id(held_by_locals),))
    except Exception:  # noqa: BLE001 - a diagnostic aid; never fail the run over it
        return []
    if not chain or not is_root(chain[0]):
        return []
    root = chain[0]
    name = held_by_locals.get(id(root)) or f"module {root.__name__}"  # type: ignore[attr-defined]
    return [name] + [type(link).__qualname__ for link in chain]


_STOP_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
               types.CodeType, types.FrameType)
# Counted but not followed: an InstanceState's weak reference to its instance and the
# bound method that is its callback are the state's own (two of them, 140 bytes an
# instance); what they lead to is the instance (already reached) and machinery.
_LEAF_TYPES = (types.MethodType, weakref.ref, weakref.ProxyType)
_DATA_TYPES = {"InstanceState", "Row", "LegacyRow", "WeakInstanceDict", "_WeakInstanceDict",
               "IdentitySet",
               "MySQLResult", "LRUCache"}
_INLINE_VALUES = sys.version_info >= (3, 13)
_LIBRARIES = ("sqlalchemy", "pymysql", "psycopg", "MySQLdb", "asyncpg", "aiomysql")


def _is_machinery(obj: object) -> bool:
    kind = type(obj)  # not isinstance(): it asks a proxy for its __class__ (its code)
    if issubclass(kind, _STOP_TYPES):
        return True
    module = getattr(kind, "__module__", "") or ""
    return module.startswith(_LIBRARIES) and kind.__name__ not in _DATA_TYPES


def _referents(obj: object) -> list:
    """gc referents, with a mapped instance's __dict__: from 3.13 an object whose values
    live inline hands gc its values even once its __dict__ exists (SQLAlchemy makes
    it), so the dict itself, 100 bytes and more an instance, is never reached."""
    refs = gc.get_referents(obj)
    if _INLINE_VALUES and hasattr(type(obj), "_sa_class_manager"):
        own = getattr(obj, "__dict__", None)
        if own is not None:
            refs.append(own)
    return refs


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
            if issubclass(type(obj), _LEAF_TYPES):
                continue
            for ref in _referents(obj):
                if id(ref) not in seen and not _is_machinery(ref):
                    stack.append(ref)
        sizes.append(total)
    return sizes


def _largest(objects: list) -> object:
    """The holder object that holds the most (a MapResult with values, not an empty
    Future; the identity map with the most instances): the one whose chain explains the
    bytes."""
    def size(obj: object) -> int:
        if isinstance(obj, _pool_kinds()):
            return len(gc.get_referents(_pool_values(obj)))
        try:
            return len(obj)  # type: ignore[arg-type]  # an identity map: its instances
        except TypeError:
            return 0

    return max(objects, key=size)


def measure_holders(result: object) -> tuple[Holder, ...]:
    """Retained bytes per holder (shared bytes counted for the first holder only)."""
    holders = find_holders(result)
    roots = [[_pool_values(c) for c in h.objects] if h.name == POOL else h.objects
             for h in holders]
    sizes = retained_sizes(roots)
    return tuple(Holder(holder=holder.name, objects=holder.count(), bytes=int(size),
                        chain=tuple(_chain(_largest(holder.objects)))
                        if holder.objects and holder.name != RESULT else ())
                 for holder, size in zip(holders, sizes))
