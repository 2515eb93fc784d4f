"""Whether a list the collector lists is full: C code may still be filling it.

A C function can make a list of n empty slots (`PyList_New(n)`) and fill it one item at a
time, in order: psycopg2's `fetchall()` does, with a row built between two slots. The
collector lists such a list from the start, and if Python code runs while it is filled
(a typecaster written in Python, json's for a json column; a finalizer), another thread
(a census) can meet it: reading an empty slot from Python crashes the interpreter. A
census looks into a long list only once this says it is full; a full list stays full
(the C code that fills it only fills).

Read from the list's header: a list made to be filled has allocated exactly its length
(one that grew by appends has more, and every slot below its length is set). Only for
such a list is one slot read, the last, which an in-order filler sets last; the whole
array is never read (another thread may grow the list and free the old array between
two steps of Python code: the fewer raw reads, the smaller that window).
"""

from __future__ import annotations

import ctypes

_WORD = ctypes.sizeof(ctypes.c_void_p)
# A list object ends with the address of its slots, then how many it has allocated (the
# same with and without the free-threaded build's longer header).
_SLOTS_AT = list.__basicsize__ - 2 * _WORD
_ALLOCATED_AT = list.__basicsize__ - _WORD


def is_full(items: list) -> bool:
    """True when `items` (an exact list) has no empty slot left to fill; no item is
    taken."""
    count = len(items)
    if count == 0:
        return True
    header = id(items)
    if ctypes.c_ssize_t.from_address(header + _ALLOCATED_AT).value != count:
        return True  # grown by appends: every slot below its length is set
    slots = ctypes.c_void_p.from_address(header + _SLOTS_AT).value
    return bool(slots) and ctypes.c_void_p.from_address(slots + (count - 1) * _WORD).value \
        is not None
