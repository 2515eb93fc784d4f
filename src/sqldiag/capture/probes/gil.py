"""Holding the GIL for a short measurement that must not interleave with the program."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A profile function given to every thread at once parks them (see threads_parked):
# threading.setprofile_all_threads is there from 3.12, but 3.12 copies a frame's locals
# into a dict around each call of a profile function and back after it (a census leaves
# a parked frame's copy as it is, see roots._locals), and with threads parked there an
# end-to-end test lost its statement's orm_objects at peak in 3 runs of 28, for a
# reason not found yet: from 3.13, where a frame's locals are a view.
CAN_PARK = sys.version_info >= (3, 13)


@contextmanager
def few_thread_switches(longest: float) -> Iterator[None]:
    """The census's thread keeps the GIL while it runs: with the default switch interval
    the program's threads would take turns with it every 5 ms, change what it counts
    meanwhile and make it several times slower. `longest` is how long a census may take;
    a thread that waits longer asks for its turn (so a census cannot starve the program
    for longer). Safety does not rest on this: see live_objects.

    A thread that was already waiting for the GIL when the interval is raised asks for it
    after the old interval and keeps it, under the new one, until it blocks; threads that
    start waiting meanwhile wait the new interval, after it too. Threads that compute
    without blocking then run one after another in turns of `longest` (four threads
    building lists, which peaked together at 593 MB alone, peaked at 317-686 MB): see
    threads_parked, which does not change the program's turns."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(max(interval, longest))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


_gate = threading.Lock()  # held while the other threads are parked
_parker: int | None = None  # the thread that parks the others


def _park(frame: object, event: str, arg: object) -> None:
    """The profile function every thread gets while parked: at its next call or return
    it waits for the gate (giving up the GIL) until the measurement is over."""
    if threading.get_ident() != _parker:
        _gate.acquire()
        _gate.release()


PARK_CODE = _park.__code__  # the frame a parked thread waits in


@contextmanager
def threads_parked(longest: float) -> Iterator[None]:
    """The program's other threads wait at their next function call or return, each on a
    lock, while this thread measures: none takes the GIL from it meanwhile (a thread
    already waiting for it runs only to its next call), and none is left waiting under a
    raised switch interval afterwards, so the program's threads take the turns they
    take alone. Threads in C code without the GIL (I/O) wait when they come back.
    Python 3.13+ and no profiler of the program's own (setprofile would replace it): else
    few_thread_switches(longest)."""
    global _parker
    if _parker == threading.get_ident():
        yield  # within a measurement that parked them already
        return
    if not CAN_PARK or sys.getprofile() is not None or threading.getprofile() is not None:
        with few_thread_switches(longest):
            yield
        return
    with _gate:
        _parker = threading.get_ident()
        threading.setprofile_all_threads(_park)
        sys.setprofile(None)  # not this one
        try:
            yield
        finally:
            threading.setprofile_all_threads(None)
            _parker = None
