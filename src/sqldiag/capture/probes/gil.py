"""Holding the GIL for a short measurement that must not interleave with the program."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def few_thread_switches(longest: float) -> Iterator[None]:
    """Fewer switches to the program's threads while a brief measurement runs (with the
    default interval they take turns with it every 5 ms). `longest` is how long another
    thread waits before it asks for its turn. A thread already waiting when the interval
    is raised asks after the old one, and a thread that takes the GIL then (or when the
    measurement gives it up in a system call) keeps it under the raised interval until it
    blocks: raise it only around brief work that makes no system call. Safety does not
    rest on this: see live_objects."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(max(interval, longest))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
