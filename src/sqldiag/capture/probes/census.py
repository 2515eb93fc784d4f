"""Live objects by type: counts and shallow sizes, bounded in cost on very large heaps.

This is the figure pympler's `summary.summarize(muppy.get_objects())` gives, computed
directly: pympler formats a type name per object, which costs seconds per 100,000
objects, while grouping by the type object itself does not.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Iterable
from types import ModuleType

from sqldiag.record.parts import TypeCensus, TypeCount

# Visiting objects allocates, and under tracemalloc each allocation is traced: above these
# counts the census visits every k-th container (or walks every k-th one's referents for
# strings and numbers) and scales by k.
MAX_CONTAINERS = 100_000
MAX_ATOM_WALKS = 20_000
MAX_REFS_PER_WALK = 256
TOP_TYPES = 25


def size_of(obj: object) -> int:
    """sys.getsizeof, or the object's base size where its class's own __sizeof__ (code
    of the program's: a proxy's, pandas') raises: a census must not fail on it."""
    try:
        return sys.getsizeof(obj)
    except Exception:  # noqa: BLE001
        return object.__sizeof__(obj)


def _type_name(kind: type) -> str:
    module = getattr(kind, "__module__", "builtins")
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def type_census(top: int = TOP_TYPES, exclude: Iterable[object] = ()) -> TypeCensus:
    """The object types holding the most bytes (shallow sizes).

    gc sees containers only; strings, numbers and bytes are reached as the referents of
    containers (each counted once per walk). Figures above the limits are estimates.
    `exclude` names containers whose contents are the measuring's own.
    """
    skip = {id(obj) for obj in exclude}  # the probes' own data (raw snapshots)
    containers = [obj for obj in gc.get_objects() if id(obj) not in skip] if skip \
        else gc.get_objects()
    total = len(containers)
    step = max(1, total // MAX_CONTAINERS)
    atom_step = max(1, total // MAX_ATOM_WALKS)
    counts: Counter[type] = Counter()
    sizes: Counter[type] = Counter()
    getsizeof, is_tracked = size_of, gc.is_tracked
    for obj in containers[::step]:
        kind = type(obj)
        counts[kind] += step
        sizes[kind] += getsizeof(obj) * step
    atoms: dict[int, tuple[object, int]] = {}
    for obj in containers[::atom_step]:
        # Not a module's: its dict is listed on its own, and its C code's traverse may
        # visit anything. _asyncio's, on 3.12 before 3.12.6, visits the free list of its
        # future iterators: freed memory that gc.get_referents hands out as objects, freed
        # again when the list is dropped, after which the free list loops and the next
        # collection never ends (CPython gh-122695; a test process hung in gc.collect).
        if issubclass(type(obj), ModuleType):
            continue
        refs = gc.get_referents(obj)
        weight = atom_step
        if len(refs) > MAX_REFS_PER_WALK:  # a huge list: walk an even sample of it
            weight = atom_step * len(refs) // MAX_REFS_PER_WALK
            refs = refs[:: len(refs) // MAX_REFS_PER_WALK]
        for ref in refs:
            if not is_tracked(ref):
                atoms[id(ref)] = (ref, weight)
    del containers
    for ref, weight in atoms.values():
        counts[type(ref)] += weight
        sizes[type(ref)] += getsizeof(ref) * weight
    del atoms
    ranked = sizes.most_common(top)
    return TypeCensus(types=tuple(TypeCount(_type_name(kind), counts[kind], size)
                                  for kind, size in ranked),
                      sampled_every=step, atoms_sampled_every=atom_step, containers=total)


def live_type_counts(top: int = 40) -> dict[str, int]:
    """Live gc-tracked objects per type name, the most numerous first (as SQLAlchemy's
    own test_memusage.py counts them to tell a leak from a one-time cost)."""
    counts = Counter(map(type, gc.get_objects()))
    return {_type_name(kind): count for kind, count in counts.most_common(top)}
