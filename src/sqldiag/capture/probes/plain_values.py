"""Plain values that module globals hold, which the collector does not list.

A census counts gc-tracked objects. Strings and numbers are not tracked, nor is a dict or
tuple that holds only such values (CPython untracks it to spare the collector): a
module-level cache of plain values (`CACHE[user.id] = {"name": user.name}`) is one big
tracked dict over memory no census saw, which the allocators then showed only as
"Python memory no category counted". This samples the long dicts, sets and frozensets
that module globals hold (a long list the census sizes itself) and sizes what is
untracked in them, scaled by their length, reading nothing but the interpreter's own
types (no code of the program's runs).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

from sqldiag.capture.attribution.overhead import SMALL_REQUEST
from sqldiag.capture.probes.roots import all_namespaces

MIN_ITEMS = 16  # shorter containers are left to other_python's shallow count
SAMPLED = 256  # items sized per container; the rest are scaled from them
DEPTH = 4  # untracked containers inside untracked containers, looked into this deep
_KINDS = (dict, set, frozenset)
_LOOKED_INTO = (dict, tuple, frozenset)
# references to a value while it is sized: the list it is sized from, the loop variable
# and sys.getrefcount's argument (the same on 3.10 to 3.13)
LOOKING_REFS = 3


def is_singleton(value: object) -> bool:
    """Objects CPython shares process-wide: counting them per holder would be wrong."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return -5 <= value <= 256  # type: ignore[operator]
    if kind is str:
        return len(value) <= 1  # type: ignore[arg-type]
    return False


class Held(NamedTuple):
    """A global's container and the untracked bytes found in it (all, and those in
    blocks over pymalloc's SMALL_REQUEST, which glibc serves)."""

    name: str  # module.global
    container: object
    untracked: int
    large: int


def is_long_container(value: object) -> bool:
    """Whether a global's value is one this module sizes (ImportedCode leaves it)."""
    return type(value) in _KINDS and len(value) >= MIN_ITEMS  # type: ignore[arg-type]


def _globals() -> Iterator[tuple[str, str, object]]:
    """(module.global, module, value) of every long dict, set or frozenset a module
    global holds, each once (`from m import CACHE` names m's twice), sqldiag's own
    modules left out and a program's __main__ that has returned in."""
    seen: set[int] = set()
    for module_name, namespace in all_namespaces():
        try:
            items = list(namespace.items())
        except RuntimeError:  # another thread defines a global meanwhile
            continue
        for name, value in items:
            if is_long_container(value) and id(value) not in seen:
                seen.add(id(value))
                yield f"{module_name}.{name}", module_name, value


def _sizes(values: list, depth: int) -> tuple[float, float]:
    """Untracked bytes of `values` (all, and in large blocks), each value's split among
    those that refer to it (a key string shared by 100,000 dicts is one string). A
    dict or tuple is looked into whether or not the collector tracks it (a tuple is
    tracked until a collection first looks at it): a tracked one's own size is the
    census's, the plain values in it are not."""
    total = large = 0.0
    getsizeof, is_tracked, refcount = sys.getsizeof, gc.is_tracked, sys.getrefcount
    for value in values:
        kind = type(value)
        if is_singleton(value) or (is_tracked(value) and kind not in _LOOKED_INTO):
            continue
        share = 1.0 / max(1, refcount(value) - LOOKING_REFS)
        if not is_tracked(value):
            size = getsizeof(value)
            total += size * share
            if size > SMALL_REQUEST:
                large += size * share
        if depth < DEPTH and kind in _LOOKED_INTO:
            inner = _parts(value)  # type: ignore[arg-type]
            got, got_large = _sizes(inner, depth + 1)
            del inner
            total, large = total + got * share, large + got_large * share
    return total, large


def _parts(container: dict | tuple | frozenset | set) -> list:
    """The objects a container refers to, as a list (a dict's keys and values)."""
    if type(container) is dict:
        return [*container.keys(), *container.values()]  # type: ignore[union-attr]
    return list(container)


def _sampled(container: dict | set | frozenset) -> tuple[list, float]:
    """An even sample of a container's items (a dict's keys and values) and its weight."""
    count = len(container)
    step = max(1, count // SAMPLED)
    try:
        if type(container) is dict:
            pairs = list(islice(container.items(), 0, None, step))  # type: ignore[union-attr]
            sample = [part for pair in pairs for part in pair]
            del pairs
        else:
            sample = list(islice(container, 0, None, step))
    except RuntimeError:  # another thread changed it meanwhile
        return [], 0.0
    taken = len(sample) // (2 if type(container) is dict else 1)
    return sample, count / max(1, taken)


def _measured(container: dict | set | frozenset) -> tuple[int, int]:
    """The untracked bytes in a container (all, and in large blocks), the container
    itself among them when it is untracked."""
    sample, weight = _sampled(container)
    inside, inside_large = _sizes(sample, 1)
    del sample
    own = 0 if gc.is_tracked(container) else sys.getsizeof(container)
    return (int(own + inside * weight),
            int((own if own > SMALL_REQUEST else 0) + inside_large * weight))


class GlobalValues:
    """The untracked bytes module globals' long containers gained since the baseline
    (made then): a container seen then is counted beyond what it held, one not seen then
    (a new cache, or a table of a module imported since) from nothing. A container is
    sized again only when its length changed: the libraries' constant tables cost one
    look each."""

    def __init__(self) -> None:
        self._before: dict[int, int] = {}  # by address: untracked bytes at the baseline
        self._last: dict[int, tuple[int, int, int]] = {}  # length, untracked, large
        for _, _, container in _globals():
            self._before[id(container)] = self._look(container)[1]

    def _look(self, container: dict | set | frozenset) -> tuple[int, int, int]:
        key, length = id(container), len(container)
        last = self._last.get(key)
        if last is None or last[0] != length:
            last = self._last[key] = (length, *_measured(container))
        return last

    def grown(self) -> list[Held]:
        """The containers that grew, largest growth first."""
        out = []
        for name, _, container in _globals():
            _, untracked, large = self._look(container)  # type: ignore[arg-type]
            growth = untracked - self._before.get(id(container), 0)
            if growth > 0:
                out.append(Held(name, container, growth, large * growth // untracked))
        return sorted(out, key=lambda held: -held.untracked)
