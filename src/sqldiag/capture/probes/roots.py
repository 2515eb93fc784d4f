"""Who keeps a census's biggest holders alive, named from roots a user recognises.

retention.py measures what each holder retains and searches back-reference chains with
gc.get_referrers, each call a scan of the whole heap: seconds at a million objects, and
the program waits for every scan. A census already knows the holders (the lists holding
whole results) and sizes them; this only names who holds them, looking down from the
roots a user would name: the globals of the program's own modules and the locals of
running frames (not sqldiag's own) and of suspended coroutines and generators, and
what those hold up to two steps down (a dict's values, a list's,
set's or tuple's items, an object's attributes, what an lru_cache keeps); the attributes
of the classes the program's modules define are roots too. A holder reached from
nowhere within two steps is left unnamed.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import sys
import types
from collections import deque
from collections.abc import Iterable, Iterator

from sqldiag.capture.attribution.paths import install_prefixes
from sqldiag.capture.probes.gil import PARK_CODE
from sqldiag.capture.probes.slots import is_full
from sqldiag.capture.probes.untouched import class_namespace, instance_dict, module_namespace
from sqldiag.record.categories import LRU_CACHE_ROOT

DEPTH = 2  # steps below a root
MAX_VISITED = 2_000_000  # references looked at (at C speed) per search, at most
# A container with more items is looked into (at C speed) but not descended through: a
# result being loaded, 100,000 instances, would cost a census a Python step each.
MAX_FANOUT = 256
_CONTAINERS = (list, tuple, set, frozenset, deque)
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
           types.MethodType, types.CodeType, types.FrameType)
# references to a frame's snapshot of its locals when only the frame holds it: the
# frame's, _locals' variable and sys.getrefcount's argument
_SNAPSHOT_REFS = 3
_ATOMS = frozenset({str, int, float, bool, bytes, complex, type(None)})
# what functools.lru_cache makes of a function: it keeps each result it returned
_LRU_CACHE = type(functools.lru_cache(None)(len))
_OWN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
# as configured and as resolved: a module's __file__ is matched as it is, with no system
# call (a census that releases the GIL waits for every busy thread's long turn)
_LIBRARY = install_prefixes("stdlib", "platstdlib", "purelib", "platlib")


def _items(value: object) -> Iterable[object] | None:
    """What `value` holds one step down, or None for atoms and machinery."""
    kind = type(value)
    if kind is dict:
        return value.values()  # type: ignore[attr-defined]
    if kind in _CONTAINERS:  # not a list that C code is filling (see slots.py)
        return value if kind is not list or is_full(value) else None  # type: ignore[return-value]
    if issubclass(kind, _OPAQUE):
        return None
    if kind is _LRU_CACHE:  # its cache (unbounded: a dict; else its entries' results)
        return gc.get_referents(value)
    attributes = instance_dict(value)
    return attributes.values() if attributes is not None else None


# The globals of a program that ran to its end here (`sqldiag run`), by the module name it
# ran as: runpy lets go of the program's module when it returns, where python keeps
# __main__'s globals until the process exits; keep_namespace holds them as python would.
_finished: dict[str, dict[str, object]] = {}


def keep_namespace(name: str, namespace: dict[str, object]) -> None:
    """Hold `namespace`, the globals of a program module that has returned, until the
    process ends (or the next run of the program replaces it), and search it as the
    globals of module `name`."""
    _finished[name] = namespace


def all_namespaces() -> Iterator[tuple[str, dict[str, object]]]:
    """(module name, globals) of the programs kept by keep_namespace, then of every
    imported module but sqldiag's own."""
    yield from list(_finished.items())
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] == "sqldiag":
            continue
        namespace = module_namespace(module)
        if namespace is None:
            continue
        path = namespace.get("__file__")
        if type(path) is str and path.startswith(_OWN):
            continue  # sqldiag's program runner, __main__ once the program returned
        yield name, namespace


def _namespaces() -> Iterator[tuple[str, dict[str, object]]]:
    """(module name, globals) of the program's own modules (not the libraries', nor
    sqldiag's), and of the programs kept by keep_namespace."""
    for name, namespace in all_namespaces():
        if name in _finished and _finished[name] is namespace:
            yield name, namespace
            continue
        path = namespace.get("__file__")
        if name != "__main__" and (type(path) is not str or not path or _library(path)):
            continue
        yield name, namespace


def _modules() -> Iterator[tuple[str, object]]:
    """Globals of the program's own modules, by their names ("app.cache"), and the
    attributes of the classes they define ("app.Cache.pages")."""
    for name, namespace in _namespaces():
        for variable, value in list(namespace.items()):
            if variable.startswith("__"):
                continue
            if type(value) is _LRU_CACHE:
                yield f"{name}.{variable} {LRU_CACHE_ROOT}", value
            else:
                yield f"{name}.{variable}", value
            if issubclass(type(value), type):
                yield from _class_attributes(f"{name}.{variable}", value, name)


def _class_attributes(label: str, kind: type, module: str) -> Iterator[tuple[str, object]]:
    """The attributes of class `kind` when module `module` defines it (a cache kept on
    a class), each by `label`.attribute."""
    own = class_namespace(kind)
    if own is None or own.get("__module__") != module:
        return
    for attribute, value in list(own.items()):
        if not attribute.startswith("__") and type(value) not in _ATOMS:
            yield f"{label}.{attribute}", value


def _library(path: str) -> bool:
    """A file of the standard library or of an installed package."""
    return path.startswith(_LIBRARY)


def _roots(suspended: Iterable[object] = ()) -> Iterator[tuple[str, object]]:
    """(name a user knows, value): the program's own modules' globals, then running
    frames' locals, then the locals of `suspended` coroutines and generators. The
    libraries' globals (the standard library's and site-packages') are not searched:
    thousands of them would cost a census of a small program more than the census
    itself (80 ms), and results are kept by the program's own code."""
    yield from _modules()
    yield from frame_locals()
    yield from suspended_locals(suspended)


def _where(frame: types.FrameType) -> str | None:
    """"of main() in app/jobs.py:12", or None for sqldiag's own code."""
    code = frame.f_code
    if code.co_filename.startswith(_OWN):
        return None
    place = "/".join(code.co_filename.replace("\\", "/").rsplit("/", 2)[-2:])
    return f"of {code.co_name}() in {place}:{frame.f_lineno}"


def frame_locals() -> list[tuple[str, object]]:
    """(e.g. "local rows of main() in app/jobs.py:12", value) for every running frame of
    every thread, sqldiag's own left out. Their locals are invisible to
    gc.get_referrers (the thread owns them), so they are read from the frames. A list,
    not a generator: one left suspended would hold the frames it walked, its own among
    them, a cycle that keeps what it read alive until the collector runs."""
    found: list[tuple[str, object]] = []
    top: types.FrameType | None
    for top in sys._current_frames().values():
        frame: types.FrameType | None = top
        parked = False
        while frame is not None:
            where = _where(frame)
            if where is not None:
                found.extend((f"local {variable} {where}", value)
                             for variable, value in _locals(frame, parked))
            parked = frame.f_code is PARK_CODE
            frame = frame.f_back
    # `top` may be this very frame (the census's thread is walked too): a cycle
    top = frame = None
    return found


SUSPENDED_KINDS = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def suspended_locals(suspended: Iterable[object]) -> list[tuple[str, object]]:
    """(e.g. "local rows of handler() in app/api.py:30 (suspended)", value) for each
    coroutine or generator of `suspended` that waits (at an await or a yield): no thread
    runs its frame, so frame_locals() does not see what it holds, and an asyncio
    service's requests are such coroutines. Running ones are walked with their thread."""
    found: list[tuple[str, object]] = []
    for waiting in suspended:
        frame = getattr(waiting, "cr_frame", None) or getattr(waiting, "gi_frame", None) \
            or getattr(waiting, "ag_frame", None)
        running = getattr(waiting, "cr_running", None) or getattr(waiting, "gi_running", None) \
            or getattr(waiting, "ag_running", None)
        where = _where(frame) if frame is not None and not running else None
        if where is not None:
            found.extend((f"local {variable} {where} (suspended)", value)
                         for variable, value in _locals(frame))
    frame = None
    return found


def _locals(frame: types.FrameType, parked: bool = False) -> list[tuple[str, object]]:
    """A running function's local variables. Before 3.13 reading them makes a snapshot
    dict that the frame keeps: it would keep each value alive after the function lets go
    of it (until the frame ends or is read again), so the program's memory would depend
    on when a census came. The snapshot is emptied again, unless someone else holds it
    (the function's own `locals()`), or the frame is `parked` (its thread waits in
    gil.threads_parked's profile function: on 3.12 the call of a profile function made
    the snapshot and copies it back into the frame after it, and an empty one would
    unbind every local): the next read fills it anew."""
    names = frame.f_locals  # 3.13: a view of the frame, not a copy
    items = list(names.items())
    if type(names) is dict and frame.f_code.co_flags & inspect.CO_OPTIMIZED \
            and not parked and sys.getrefcount(names) <= _SNAPSHOT_REFS:
        names.clear()
    return items


def find_roots(targets: Iterable[object],
               suspended: Iterable[object] = ()) -> dict[int, tuple[str, ...]]:
    """For each target found (by id): the chain from a root to it, e.g.
    ("app._pages", "dict", "list"); `suspended`: coroutines and generators whose locals
    are roots too (see suspended_locals)."""
    wanted = {id(target) for target in targets}
    found: dict[int, tuple[str, ...]] = {}
    visited = 0
    for label, value in _roots(suspended):
        if not wanted or visited > MAX_VISITED:
            break
        if id(value) in wanted:
            wanted.discard(id(value))
            found[id(value)] = (label, type(value).__qualname__)
            continue
        level: list[tuple[object, tuple[str, ...]]] = [(value, (label,))]
        for depth in range(1, DEPTH + 1):
            below: list[tuple[object, tuple[str, ...]]] = []
            for holder, chain in level:
                items = _items(holder)
                if items is None:
                    continue
                items = list(items)
                visited += len(items)
                chain = (*chain, type(holder).__qualname__)
                if not wanted.isdisjoint(map(id, items)):
                    for item in items:
                        if id(item) in wanted:
                            wanted.discard(id(item))
                            found[id(item)] = (*chain, type(item).__qualname__)
                if depth < DEPTH and len(items) <= MAX_FANOUT:
                    below += [(item, chain) for item in items if type(item) not in _ATOMS]
            level = below
            if not level or visited > MAX_VISITED:
                break
    return found
