"""A call back each time SQLAlchemy hands the program a whole result.

`.all()`, `fetchall()` and `Query.all()` all end in `ResultInternal._allrows`: when it
returns, every object of the result is alive and the caller has dropped none of them,
the best moment for a census (see CensusProbe). An ORM result read by iterating it
(`for user in session.scalars(...)`) never gets there: its objects are built as one
chunk by the ORM's loader (`ChunkedIteratorResult`'s chunks), which is the moment
then, with the driver's rows still alive beside them. The methods are wrapped once
per process, as soon as the program has imported SQLAlchemy (nothing of it is imported
here), and only when some listener wants it: a traced run never has the wrappers.

This module is not under capture/probes/ on purpose: tracemalloc's attribution takes an
allocation with a frame in probes/ for the measuring's own, and the wrapper's frame is
in the traceback of every row a traced `.all()` loads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from sqldiag.capture.probes.queries import CORE_MODULE
from sqldiag.capture.program_imports import AfterImport, imported

WHOLE_RESULT_ROWS = 1000  # smaller results are not worth a census of their own

_listeners: list[Callable[[int], object]] = []
# How deep the code running now is in building whole chunks of ORM results (a
# relationship's selectinload runs its own load inside the parent's chunk), and the
# mark of its outermost one. Context variables, not per thread: asyncio tasks that
# stream results build theirs in one thread, each in its own greenlet and context.
_depth: ContextVar[int] = ContextVar("sqldiag_chunk_depth", default=0)
_outermost: ContextVar[object | None] = ContextVar("sqldiag_chunk_builder", default=None)
_building: set[object] = set()  # the marks of the outermost chunks being built now


def building_alone() -> bool:
    """Whether exactly one whole ORM result has its objects being built: its end is
    told (listen()), a census before it would see part of the load."""
    return len(_building) == 1


def building_none() -> bool:
    """Whether no whole ORM result has its objects being built (in any thread or task)."""
    return not _building


def listen(callback: Callable[[int], object]) -> None:
    """`callback(rows)` after each whole result with rows, from the thread that asked
    for it, until unlisten(). Results of fewer than WHOLE_RESULT_ROWS are not worth a
    census of their own, but many of them kept are (a loop over slices of a table)."""
    _listeners.append(callback)
    if not _wrap():
        AfterImport.watch(CORE_MODULE, _wrap_imported)


def unlisten(callback: Callable[[int], object]) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def _wrap_imported() -> None:
    _wrap(importing=True)


def _wrap(importing: bool = False) -> bool:
    """True once wrapped (or SQLAlchemy has no such method); False before the program
    has imported SQLAlchemy, or when no one listens."""
    if not _listeners or not imported(CORE_MODULE, importing):
        return False
    module = sys.modules.get("sqlalchemy.engine.result")
    chunked = getattr(module, "ChunkedIteratorResult", None)
    _wrap_chunks(chunked)
    internal = getattr(module, "ResultInternal", None)
    allrows = getattr(internal, "_allrows", None)
    if not callable(allrows) or getattr(allrows, "_sqldiag", False):
        return True

    def _allrows(self):
        rows = allrows(self)
        # an ORM result's objects were told of as its chunk was built (_wrap_chunks)
        if rows and not isinstance(getattr(self, "_real_result", self), chunked or ()):
            _tell(len(rows))
        return rows

    _allrows._sqldiag = True  # type: ignore[attr-defined]
    internal._allrows = _allrows  # type: ignore[union-attr]
    return True


def _wrap_chunks(chunked: type | None) -> None:
    """Each ChunkedIteratorResult's chunks told of as they are handed over, when a chunk
    is the whole result (asked for with no size: not yield_per's batches, which the
    program drops one after the other)."""
    init = getattr(chunked, "__init__", None)
    if chunked is None or not callable(init) or getattr(init, "_sqldiag", False):
        return

    def __init__(self, cursor_metadata, chunks, *args, **kwargs):
        def told(size: int | None) -> Iterator[Any]:
            if size is not None:  # yield_per's batches: no whole result
                yield from chunks(size)
                return
            whole = iter(chunks(None))
            while True:
                _entered()
                try:
                    chunk = next(whole)
                except StopIteration:
                    return
                finally:
                    outermost = _left()
                # a load nested in another's chunk is not the top: the outer one's end is
                if outermost and chunk:
                    _tell(len(chunk))
                yield chunk

        init(self, cursor_metadata, told, *args, **kwargs)

    __init__._sqldiag = True  # type: ignore[attr-defined]
    chunked.__init__ = __init__  # type: ignore[misc]


def _entered() -> None:
    """The code running now starts building a chunk."""
    depth = _depth.get()
    if not depth:
        mark = object()
        _outermost.set(mark)
        _building.add(mark)
    _depth.set(depth + 1)


def _left() -> bool:
    """The code running now is out of one chunk it was building; True when it builds no
    other."""
    depth = max(0, _depth.get() - 1)
    _depth.set(depth)
    if depth:
        return False
    _building.discard(_outermost.get())
    return True


def _tell(rows: int) -> None:
    """Every listener told of a whole result of `rows` rows; one that raises is dropped."""
    for callback in tuple(_listeners):
        try:
            callback(rows)
        except Exception as exc:  # noqa: BLE001 - never break the program's query
            unlisten(callback)
            sys.stderr.write(f"sqldiag: no census at whole results: "
                             f"{type(exc).__name__}: {exc}\n")
