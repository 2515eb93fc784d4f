"""A call back each time SQLAlchemy hands the program a whole result.

`.all()`, `fetchall()` and `Query.all()` all end in `ResultInternal._allrows`: when it
returns, every object of the result is alive and the caller has dropped none of them,
the best moment for a census (see CensusProbe). The method is wrapped once per process,
as soon as the program has imported SQLAlchemy (nothing of it is imported here), and
only when some listener wants it: a traced run never has the wrapper.

This module is not under capture/probes/ on purpose: tracemalloc's attribution takes an
allocation with a frame in probes/ for the measuring's own, and the wrapper's frame is
in the traceback of every row a traced `.all()` loads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from sqldiag.capture.probes.queries import CORE_MODULE, _AfterImport, _imported

WHOLE_RESULT_ROWS = 1000  # smaller results are not worth a census of their own

_listeners: list[Callable[[int], object]] = []


def listen(callback: Callable[[int], object]) -> None:
    """`callback(rows)` after each whole result with rows, from the thread that asked
    for it, until unlisten(). Results of fewer than WHOLE_RESULT_ROWS are not worth a
    census of their own, but many of them kept are (a loop over slices of a table)."""
    _listeners.append(callback)
    if not _wrap():
        _AfterImport.watch(CORE_MODULE, _wrap_imported)


def unlisten(callback: Callable[[int], object]) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def _wrap_imported() -> None:
    _wrap(importing=True)


def _wrap(importing: bool = False) -> bool:
    """True once wrapped (or SQLAlchemy has no such method); False before the program
    has imported SQLAlchemy, or when no one listens."""
    if not _listeners or not _imported(CORE_MODULE, importing):
        return False
    internal = getattr(sys.modules.get("sqlalchemy.engine.result"), "ResultInternal", None)
    allrows = getattr(internal, "_allrows", None)
    if not callable(allrows) or getattr(allrows, "_sqldiag", False):
        return True

    def _allrows(self):
        rows = allrows(self)
        if rows:
            for callback in tuple(_listeners):
                try:
                    callback(len(rows))
                except Exception as exc:  # noqa: BLE001 - never break the program's query
                    unlisten(callback)
                    sys.stderr.write(f"sqldiag: no census at whole results: "
                                     f"{type(exc).__name__}: {exc}\n")
        return rows

    _allrows._sqldiag = True  # type: ignore[attr-defined]
    internal._allrows = _allrows  # type: ignore[union-attr]
    return True
