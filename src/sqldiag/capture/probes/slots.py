"""Whether a list the collector lists is full: C code may still be filling it.

A C function can make a list of n empty slots (`PyList_New(n)`) and fill it one item at a
time: psycopg2's `fetchall()` does, with a row built between two slots. The collector
lists such a list from the start, and if Python code runs while it is filled (a
typecaster written in Python, json's for a json column; a finalizer), another thread (a
census) can meet it: reading an empty slot from Python crashes the interpreter. A census
looks into a long list only once this says it is full; a full list stays full (the C code
that fills it only fills).
"""

from __future__ import annotations

import ctypes

_POINTER = ctypes.sizeof(ctypes.c_void_p)
# A list object ends with the address of its slots, then how many it has allocated (the
# same with and without the free-threaded build's longer header).
_SLOTS_AT = list.__basicsize__ - 2 * _POINTER
_EMPTY = bytes(_POINTER)
# read in pieces below glibc's mmap threshold: a large block, freed, would raise it (see
# live.release) and leave the program's own blocks in RSS after they are freed
_PIECE = (64 << 10) // _POINTER * _POINTER


def is_full(items: list) -> bool:
    """True when no slot of `items` (an exact list) is empty; read at C speed, without
    taking any item."""
    count = len(items)
    if count == 0:
        return True
    address = ctypes.c_void_p.from_address(id(items) + _SLOTS_AT).value
    if not address:
        return False
    end = address + count * _POINTER
    for start in range(address, end, _PIECE):
        raw = ctypes.string_at(start, min(_PIECE, end - start))
        at = raw.find(_EMPTY)
        while at != -1:  # eight zero bytes across two addresses are not an empty slot
            if at % _POINTER == 0:
                return False
            at = raw.find(_EMPTY, at + 1)
    return True
