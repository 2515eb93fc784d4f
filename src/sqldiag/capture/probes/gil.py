"""Holding the GIL for a short measurement that must not interleave with the program."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def few_thread_switches(longest: float) -> Iterator[None]:
    """The census's thread keeps the GIL while it runs: with the default switch interval
    the program's threads would take turns with it every 5 ms, change what it counts
    meanwhile and make it several times slower. `longest` is how long a census may take;
    a thread that waits longer asks for its turn (so a census cannot starve the program
    for longer). Safety does not rest on this: see live_objects."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(max(interval, longest))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
