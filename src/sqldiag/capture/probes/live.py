"""A census of live objects by category, taken without tracing.

tracemalloc costs this workload 2.3x its memory and 2.7x its time even at one frame; a
census costs nothing between censuses. It lists the garbage collector's objects, counts
them by type (at C speed), and sizes the kinds that make up a database workload's
memory from an even sample of each kind, scaled by its count:

  orm_objects      a mapped instance, its __dict__, its InstanceState with the state's
                   own dict, set, weak reference and committed-state dict
  driver_rows      the row values in a mapped instance's __dict__ or a Row (strings,
                   numbers, dates: what the driver built from the wire), and raw row
                   tuples in lists; small ints and one-character strings are shared
                   singletons and count nothing
  identity_map     each state's identity key (class, (pk,), token) and the dict of every
                   live Session's identity map
  sqlalchemy_rows  Core Row objects
  result_lists     lists holding mapped instances, Rows or other result lists
  statement_cache  the compiled-SQL caches of live engines (their dicts and entries)
  other_python     the growth since the baseline of every other kind of gc-tracked
                   object (shallow sizes; strings only they reference are not counted),
                   and the untracked values module globals' long containers gained
                   (plain_values.py)

Bytes are those of sys.getsizeof, which for gc-tracked objects includes the GC header,
as tracemalloc's blocks do. Nothing of SQLAlchemy is imported here: its classes are
found in sys.modules, so a program that never imported it gets only other_python.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, compress, count, islice, repeat
from operator import attrgetter, ge, is_, is_not, mul
from types import BuiltinFunctionType, CodeType, MethodDescriptorType, WrapperDescriptorType

from sqldiag.capture import whole_results
from sqldiag.capture.attribution.overhead import SMALL_REQUEST
from sqldiag.capture.probes.census import size_of
from sqldiag.capture.probes.gil import few_thread_switches, threads_parked
from sqldiag.capture.probes.imported_code import NOTHING_IMPORTED, ImportedBytes, ImportedCode
from sqldiag.capture.probes.plain_values import LOOKING_REFS, GlobalValues, Held, is_singleton
from sqldiag.capture.probes.queries import Key, QueryLedger
from sqldiag.capture.probes.roots import SUSPENDED_KINDS, find_roots
from sqldiag.capture.probes.rss import rss_reader
from sqldiag.capture.probes.sampler import leave_signals_to_the_main_thread
from sqldiag.capture.probes.slots import is_full
from sqldiag.capture.probes.untouched import defined
from sqldiag.capture.whole_results import WHOLE_RESULT_ROWS
from sqldiag.record.categories import (
    DRIVER_ROWS,
    HOLDER_IDENTITY,
    IDENTITY_MAP,
    ORM_OBJECTS,
    OTHER_PYTHON,
    RESULT_LISTS,
    SQLALCHEMY_ROWS,
    STATEMENT_CACHE,
    TRACED,
)
from sqldiag.record.parts import CensusMark, Holder

HIGH = "census at an RSS high"
SAMPLE_PER_KIND = 2000  # instances sized per kind; the rest are scaled from them
CHUNK = 200_000  # objects handled per call into C while the program's threads wait
# s: how long a census may keep the other threads out, at least and at most
CENSUS_SWITCH_INTERVAL = (0.05, 5.0)
MIN_LIST = 16  # shorter lists are other_python, whatever they hold
RAW_ROWS_SAMPLED = 64  # rows of a raw result (or values of a list) sized, then scaled
ITEMS_LOOKED_AT = 4  # a list's kind is judged from a few of its items
_STATE = "_sa_instance_state"
MAX_HOLDER_TARGETS = 10_000  # lists of results whose holders are looked for, the biggest
RESULTS_HELD_BY = "results held by"
PLAIN_VALUES_HELD_BY = "plain values held by"  # strings, numbers, dicts of them
MAX_GLOBAL_HOLDERS = 3
MIN_HELD_BYTES = 1 << 20
UNNAMED = "results being loaded, or held deeper than two steps below a global or a local"


# glibc serves a block of 128 KB or more by mmap, and when such a block is freed it raises
# its mmap threshold to that block's size (up to 32 MB): the program's later blocks below
# it come from the heap and, once freed, stay in RSS as free chunks. A census's lists of
# live objects (MBs) would raise it for the program: under `sqldiag run`, 151 MB of free
# chunks at the original report's peak that a fixed threshold did not leave. Emptied from
# their end one item at a time (15 ns an item, in C), they shrink by realloc, which glibc
# does for an mmapped block by mremap, and the last small block freed leaves the threshold
# where the program put it. (Growing them past 32 MB first did too, but wrote 32 MB: a
# census of 131,072 objects or more raised RSS by 32 MB for a moment, and a small
# program's reported peak with it. `del items[1:]` copies what it removes into a
# temporary block of the same size, which is freed.) Lists under 1 MB are cleared at once:
# a threshold of 1 MB at most leaves few blocks in the heap.
SHRUNK_FROM = 1 << 20


def release(items: list) -> None:
    """Empty a census's own list so that freeing it leaves glibc's mmap threshold as it
    was (see SHRUNK_FROM): a list whose block glibc may have mmapped is emptied from its
    end, shrinking as it goes. The same steps as the collector's listings get
    (_released)."""
    for _ in _released({0: items}):
        pass


@dataclass(frozen=True)
class Baseline:
    """What was alive before the work: tracked bytes, the long lists that already
    existed (the interpreter's and the test runner's own lines, paths and names), and
    the modules then imported (the code of those imported since is counted: `code`)."""

    tracked: int = 0
    # each by its address and its first item's: an address alone may be a new list's,
    # once the old one is freed
    lists: frozenset[tuple[int, int]] = frozenset()
    code: ImportedCode | None = None
    values: GlobalValues | None = None  # plain values module globals hold (untracked)


def _listed(pick: Callable[[object, object], bool]) -> tuple[Iterator, Iterator]:
    """The collector's objects and beside them `pick(type(obj), tuple)`, from one call
    to gc.get_objects() made only when the first object is asked for, from C. Once both
    have gone through the list, the picks run on into `_released(box)` (false picks),
    which empties the list as `release` does, in C too."""
    box: dict[int, list] = {}
    listed = map(box.setdefault, repeat(0, 1), islice(iter(gc.get_objects, None), 1))
    again = map(box.get, repeat(0, 1))  # the same list
    # two more data, so that the picks reach _released's two steps
    objects = chain(chain.from_iterable(listed), (None, None))
    picks = map(pick, map(type, chain.from_iterable(again)), repeat(tuple))
    return objects, chain(picks, map(is_, _released(box), repeat(0)))


def _released(box: dict[int, list]) -> Iterator[object]:
    """Two steps, each one call into C when pulled: empty the listed list from its end
    (if it is large enough to be mmapped: see SHRUNK_FROM; the items go to a deque that
    keeps none), then take it out of `box` and clear it."""
    def listed() -> Iterator[list]:
        return map(box.get, repeat(0, 1))
    mapped = map(ge, map(len, listed()), repeat(SHRUNK_FROM // 8, 1))
    popped = map(mul, map(len, listed()), mapped)  # how many: all, or none
    pops = map(map, map(attrgetter("pop"), listed()), map(repeat, repeat(-1, 1), popped))
    return chain(map(deque, pops, repeat(0, 1)),
                 map(list.clear, map(box.pop, repeat(0, 1))))


def live_objects(chunk: int | None = None) -> tuple[list, int]:
    """Every gc-tracked object but tuples, and the bytes of the tuples.

    Another thread may be half-way through building a tuple (tuple() of a generator,
    paused at a thread switch); CPython resizes it in place only while nothing else refers
    to it, and a census holding it when that thread resumes makes the program fail with
    "SystemError: bad argument to internal function". No list of the collector's objects
    ever reaches Python code, where a thread switch can happen: each statement below
    lists them, sizes or leaves out the tuples and lets go of the listing inside one
    call into C, where no other thread runs (nor the collector, which could run Python
    finalizers). The caller clear()s the list when done: a frame in it may hold it."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        tuple_bytes = sum(map(sys.getsizeof, compress(*_listed(is_))))
        others = list(compress(*_listed(is_not)))
    finally:
        if collecting:
            gc.enable()
    # The list being filled was listed too: out of itself, or it would keep itself alive.
    # No nested scope may refer to `others` here: its cell would be listed and keep it
    # alive too. Frames listed may hold it once it is returned: the caller clear()s it.
    # (It holds no tuple: this may take turns with the program's threads.)
    found: list[int] = []
    for start, part in zip(count(0, chunk or len(others) or 1), in_chunks(others, chunk)):
        found.extend(compress(count(start), map(is_, part, repeat(others))))
    for index in reversed(found):
        del others[index]
    return others, tuple_bytes


def listed_count() -> int:
    """How many objects the collector lists now: about 50 ns an object, a seventh of a
    census's cost. The listing is made, counted and let go of inside one call into C
    (see live_objects), emptied from its end as a census's is (see _released), with the
    collector off (allocating the list could start it)."""
    box: dict[int, list] = {}
    listed = map(box.setdefault, repeat(0, 1), islice(iter(gc.get_objects, None), 1))
    collecting = gc.isenabled()
    gc.disable()
    try:  # the release's steps give None (is_ makes it False: 0)
        return sum(chain(map(len, listed), map(is_, _released(box), repeat(0))))
    finally:
        if collecting:
            gc.enable()


def picked_at_once(wanted: dict[type, object]) -> tuple[int, int, list] | None:
    """(how many objects the collector lists, their bytes, those of the `wanted` types),
    from one listing that never reaches Python code: sized and picked inside one call
    into C (see live_objects). Faster than live_objects, tracked_bytes and a pick over
    its list: one listing instead of two, no list of every object. None when some class
    sizes itself in Python code (which could switch threads while the listing is held):
    the caller lists in steps then. `wanted` may not name a tuple type."""
    if _runs_python_code():
        return None
    box: dict[int, list] = {}
    picked = _Picks()
    listed = map(box.setdefault, repeat(0, 1), islice(iter(gc.get_objects, None), 1))

    def again() -> Iterator[list]:
        return map(box.get, repeat(0, 1))
    lengths: list[int] = []
    sizes = map(sys.getsizeof, chain.from_iterable(listed))
    counted = map(lengths.append, map(len, again()))
    # by the type's id: a metaclass may hash in Python (typing_extensions' Protocols do)
    ids = frozenset(map(id, wanted))
    masks = map(map, repeat(ids.__contains__, 1),
                map(map, repeat(id, 1), map(map, repeat(type, 1), again())))
    picking = map(picked.extend, map(compress, again(), masks))
    collecting = gc.isenabled()
    gc.disable()
    try:  # the side steps give None (is_ makes it False: 0 bytes)
        total = sum(chain(sizes, map(is_, chain(counted, picking, _released(box)),
                                     repeat(0))))
    finally:
        if collecting:
            gc.enable()
    return lengths[0], total, picked


class _Picks(list):
    """The census's picks: a list (one block, which release() frees without moving glibc's
    mmap threshold) that the listing it is filled from does not pick as a list."""


def _runs_python_code() -> bool:
    """Whether a class in the process has a __sizeof__ in Python (sys.getsizeof would
    run it)."""
    stack, seen = [object], set()
    while stack:
        kind = stack.pop()
        if id(kind) in seen:
            continue
        seen.add(id(kind))
        stack.extend(type.__subclasses__(kind))
        if _sizes_in_python(kind):
            return True
    return False


def _sizes_in_python(kind: type) -> bool:
    own = defined(kind, "__sizeof__")
    return own is not None and not issubclass(type(own), _IN_C)


_IN_C = (WrapperDescriptorType, MethodDescriptorType, BuiltinFunctionType)


def take_baseline() -> Baseline:
    with few_thread_switches(CENSUS_SWITCH_INTERVAL[0]):
        _, tracked, lists = _picked({list: "list"}, None)
        long_lists = frozenset((id(o), id(o[0])) for o in _long_lists(lists))
        release(lists)  # a frame it holds may hold it: no cycle outlives the baseline
    return Baseline(tracked, long_lists, ImportedCode(), GlobalValues())


def _long_lists(lists: Iterable[list]) -> Iterator[list]:
    """The lists long enough to be looked into, and full (see slots.py: one that C code
    is still filling has empty slots, which crash Python code that reads them)."""
    return (o for o in lists if len(o) >= MIN_LIST and is_full(o))


@dataclass(frozen=True)
class LiveCensus:
    categories: dict[str, int]
    objects: int  # gc-tracked objects listed
    # per statement and call site that loaded them: bytes by category, and instances
    queries: dict[Key, tuple[dict[str, int], int]]
    # how long the census held the GIL (the program paused): its thread's CPU time, not
    # the time it waited for its turn
    seconds: float
    # who keeps the lists of whole results alive, by the root they were found from
    holders: tuple[Holder, ...] = ()
    # the part of other_python that is the code of modules imported since the baseline
    imported: ImportedBytes = NOTHING_IMPORTED
    # of the categories, bytes in blocks over pymalloc's SMALL_REQUEST, which glibc serves:
    # those it sized one by one (identity maps' tables, long lists, large code objects);
    # the objects sized by sample and other_python's growth are taken to be pymalloc's
    outside_pymalloc: int = 0


def _value_bytes(values: Iterable[object], shared: bool = False) -> float:
    """Bytes of the row values among `values`: atoms only (containers are not values).

    With `shared`, a value's bytes are split among the containers that refer to it: a
    string the driver built is referred to by its raw row, the Row over it and the mapped
    instance's __dict__ while all three live, and each of them is sized on its own; it
    was allocated once."""
    total = 0.0
    getsizeof, is_tracked, refcount = sys.getsizeof, gc.is_tracked, sys.getrefcount
    values = list(values)
    for value in values:
        if not is_singleton(value) and not is_tracked(value):
            holders = refcount(value) - LOOKING_REFS if shared else 1
            total += getsizeof(value) / max(1, holders)
    return total


def _as_list(items: Iterable) -> list:
    """`items` as a list, or [] when another thread changed them while listing (a weak
    collection the program is adding to)."""
    try:
        return list(items)
    except RuntimeError:
        return []


def _mapped_classes(mapperlib: object) -> set[type]:
    """The classes the program has mapped, read without running SQLAlchemy's code: a
    census may come while a class statement is being mapped, when its manager exists
    and registry.mappers raises UnmappedClassError (that killed the census thread, and
    the program's whole load went unseen)."""
    mapped: set[type] = set()
    for registry in _as_list(getattr(mapperlib, "_mapper_registries", None) or ()):
        for manager in _as_list(getattr(registry, "_managers", None) or ()):
            # ClassManager.mapper is a memoized property that raises until it is set
            if "mapper" in getattr(manager, "__dict__", {}):
                mapped.add(manager.class_)
    return mapped


class _SqlAlchemyKinds:
    """SQLAlchemy's classes, if the program imported SQLAlchemy (never imported here)."""

    def __init__(self) -> None:
        modules = sys.modules
        self.state: type | None = getattr(modules.get("sqlalchemy.orm.state"),
                                          "InstanceState", None)
        self.identity_map: type | None = getattr(modules.get("sqlalchemy.orm.identity"),
                                                 "IdentityMap", None)
        self.row: type | None = getattr(modules.get("sqlalchemy.engine.row"), "Row", None)
        self.engine: type | None = getattr(modules.get("sqlalchemy.engine.base"), "Engine",
                                           None)
        self.result: type | None = getattr(modules.get("sqlalchemy.engine.result"), "Result",
                                           None)
        self.driver_results: set[type] = set()
        for module, name in (("pymysql.connections", "MySQLResult"),
                             ("pymysql.cursors", "Cursor"), ("MySQLdb.cursors", "BaseCursor")):
            base = getattr(modules.get(module), name, None)
            stack = [base] if isinstance(base, type) else []
            while stack:  # the class and its subclasses (SSCursor, DictCursor, ...)
                kind = stack.pop()
                self.driver_results.add(kind)
                stack.extend(kind.__subclasses__())
        self.mapped: set[type] = _mapped_classes(modules.get("sqlalchemy.orm.mapper"))

    def is_mapped(self, kind: type) -> bool:
        return kind in self.mapped

    def is_row(self, kind: type) -> bool:
        return self.row is not None and issubclass(kind, self.row)

    def kinds_wanted(self, known: set[type]) -> dict[type, str]:
        """The types the census looks at one by one, with what each is."""
        wanted: dict[type, str] = {list: "list", **dict.fromkeys(SUSPENDED_KINDS, "suspended")}
        wanted.update(dict.fromkeys(self.mapped, "mapped"))
        wanted.update(dict.fromkeys(self.driver_results, "driver"))
        for kind in known:
            if self.row is not None and issubclass(kind, self.row):
                wanted[kind] = "row"
            elif self.identity_map is not None and issubclass(kind, self.identity_map):
                wanted[kind] = "map"
            elif self.engine is not None and issubclass(kind, self.engine):
                wanted[kind] = "engine"
            elif self.result is not None and issubclass(kind, self.result):
                wanted[kind] = "result"
        return wanted


class _Sizer:
    """Adds bytes to categories, and the gc-tracked part of them by type (what
    other_python must not count again); while `query` is set, to that statement too."""

    def __init__(self) -> None:
        self.bytes: dict[str, float] = dict.fromkeys(TRACED, 0.0)
        self.tracked: dict[type, float] = defaultdict(float)
        self.query: Key | None = None
        self.by_query: dict[Key, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.objects_by_query: dict[Key, float] = defaultdict(float)
        self.large = 0.0  # of all added, bytes in blocks outside pymalloc (SMALL_REQUEST)

    def add(self, category: str, obj: object, weight: float = 1.0) -> None:
        one = sys.getsizeof(obj)
        size = one * weight
        if one > SMALL_REQUEST:
            self.large += size
        self.bytes[category] += size
        if self.query is not None:
            self.by_query[self.query][category] += size
        if gc.is_tracked(obj):
            self.tracked[type(obj)] += size

    def add_values(self, values: Iterable[object], weight: float) -> None:
        size = _value_bytes(values, shared=True) * weight
        self.bytes[DRIVER_ROWS] += size
        if self.query is not None:
            self.by_query[self.query][DRIVER_ROWS] += size

    @contextmanager
    def charged_to(self, query: Key | None) -> Iterator[None]:
        """What is added inside is that statement's too (None: no statement's)."""
        self.query = query
        try:
            yield
        finally:
            self.query = None

    def add_shared(self, category: str, obj: object, shares: dict[Key | None, float]) -> None:
        """An object some statements share: each its share of it (no shares: nobody's)."""
        for query, share in shares.items():
            with self.charged_to(query):
                self.add(category, obj, share)
        if not shares:
            self.add(category, obj)


def _sample(objects: list, limit: int) -> tuple[list, float]:
    """An even sample of at most `limit` objects, and the weight of each."""
    if len(objects) <= limit:
        return objects, 1.0
    step = len(objects) / limit
    return [objects[int(i * step)] for i in range(limit)], step


def _state_of(instance: object) -> object | None:
    """A mapped instance's InstanceState (None for anything else)."""
    return (getattr(instance, "__dict__", None) or {}).get(_STATE)


def _size_mapped(sizer: _Sizer, instances: list, weight: float,
                 ledger: QueryLedger | None = None) -> None:
    for obj in instances:
        query = (ledger.key_of_run(getattr(_state_of(obj), "runid", None))
                 if ledger is not None else None)  # the statement whose run loaded it
        if query is not None:
            sizer.objects_by_query[query] += weight
        with sizer.charged_to(query):
            _size_instance(sizer, obj, weight)


def _size_instance(sizer: _Sizer, obj: object, weight: float) -> None:
    sizer.add(ORM_OBJECTS, obj, weight)
    values = getattr(obj, "__dict__", None)
    if values is None:
        return
    sizer.add(ORM_OBJECTS, values, weight)
    sizer.add_values((v for k, v in values.items() if k != _STATE), weight)
    state = values.get(_STATE)
    if state is None:
        return
    sizer.add(ORM_OBJECTS, state, weight)
    own = getattr(state, "__dict__", None)
    if own is not None:
        sizer.add(ORM_OBJECTS, own, weight)
        key = own.get("key")
        if type(key) is tuple and len(key) > 1:
            sizer.add(IDENTITY_MAP, key, weight)
            sizer.add(IDENTITY_MAP, key[1], weight)
            sizer.add_values(key[1], weight)  # its share of the primary key's values
    for part in ("committed_state", "expired_attributes", "obj"):
        value = getattr(state, part, None)
        if value is not None:
            sizer.add(ORM_OBJECTS, value, weight)


class RowOwners:
    """Which statement made a Core Row. A Row knows only its result's metadata
    (`Row._parent`): a live result object maps its metadata to its statement (a Core
    result through its DB-API cursor, an ORM result through its run id), and the ledger
    knows the metadata of every Core result it saw made. Rows of neither, or whose
    metadata results of several statements share (one compiled statement run from two
    lines), go to the statement in flight when only one is."""

    def __init__(self, results: list, ledger: QueryLedger | None,
                 in_flight: Key | None) -> None:
        self.in_flight, self.ledger = in_flight, ledger
        self.by_parent: dict[int, Key | None] = {}
        if ledger is None:
            return
        for result in results:
            metadata = getattr(result, "_metadata", None)
            context = getattr(result, "context", None)
            runid = getattr(context, "runid", None)
            key = (ledger.key_of_run(runid) if runid is not None
                   else ledger.key_of_cursor(getattr(context, "cursor", None)))
            if metadata is None or key is None:
                continue
            known = self.by_parent.setdefault(id(metadata), key)
            if known != key:
                self.by_parent[id(metadata)] = None  # shared: not known from it

    def key_of(self, row: object) -> Key | None:
        parent = getattr(row, "_parent", None)
        key = self.by_parent.get(id(parent))
        if key is None and self.ledger is not None and id(parent) not in self.by_parent:
            key = self.by_parent[id(parent)] = self.ledger.key_of_rows(parent)
        return key or self.in_flight

    def shares(self, rows: list) -> dict[Key | None, float]:
        """The share of `rows` each statement made."""
        counts = Counter(map(self.key_of, rows))
        return {key: n / len(rows) for key, n in counts.items()} if rows else {}


def _size_rows(sizer: _Sizer, rows: list, weight: float, owners: RowOwners) -> None:
    """Core Rows, each charged to the statement that made it (see RowOwners)."""
    for row in rows:
        with sizer.charged_to(owners.key_of(row)):
            sizer.add(SQLALCHEMY_ROWS, row, weight)
            for part in gc.get_referents(row):
                if type(part) is tuple:
                    sizer.add(SQLALCHEMY_ROWS, part, weight)
                    sizer.add_values(part, weight)


def _list_kind(items: list, kinds: _SqlAlchemyKinds) -> str | None:
    """What a list holds, from a few of its items."""
    step = max(1, len(items) // ITEMS_LOOKED_AT)
    looked = items[::step][:ITEMS_LOOKED_AT]
    if all(kinds.is_mapped(type(i)) or kinds.is_row(type(i)) for i in looked):
        return RESULT_LISTS
    if all(type(i) is list and len(i) >= MIN_LIST for i in looked):
        return RESULT_LISTS  # a list of results (a pool's map)
    if all(type(i) is tuple and not any(map(gc.is_tracked, i)) for i in looked):
        return DRIVER_ROWS  # raw rows as the driver built them: tuples of values
    if all(type(i) is not tuple and not gc.is_tracked(i) for i in looked):
        return OTHER_PYTHON  # a list of plain values (strings, numbers) of the program's
    return None


def _size_lists(sizer: _Sizer, lists: list, kinds: _SqlAlchemyKinds, owners: RowOwners,
                ledger: QueryLedger | None = None) -> list:
    """Long lists by what they hold; a list of raw rows is charged to the statement in
    flight, a list of instances to the statements that loaded them, a list of Rows to
    those that made them. Returns the lists of whole results (of instances or Rows, not
    of other lists)."""
    in_flight = owners.in_flight
    results = []
    for items in lists:
        if len(items) < MIN_LIST:
            continue
        kind = _list_kind(items, kinds)
        if kind is None:
            continue
        shares: dict[Key | None, float] = {in_flight: 1.0} if kind == DRIVER_ROWS else {}
        if kind == RESULT_LISTS and ledger is not None:  # a list of instances: who loaded them
            sample, _ = _sample(items, ITEMS_LOOKED_AT * 4)
            states = [state for state in map(_state_of, sample) if state is not None]
            shares = _loaded_by(states, ledger)
            if not shares and kinds.is_row(type(sample[0])):
                shares = owners.shares(sample)
        sizer.add_shared(kind, items, shares)
        if kind == RESULT_LISTS and type(items[0]) is not list:
            results.append(items)
        if kind == DRIVER_ROWS:
            with sizer.charged_to(in_flight):
                _size_raw_rows(sizer, items)
        elif kind == OTHER_PYTHON:
            sample, weight = _sample(items, RAW_ROWS_SAMPLED)
            sizer.bytes[OTHER_PYTHON] += _value_bytes(sample) * weight
    return results


def _result_holders(results: list, per_item: dict[type, float],
                    suspended: list) -> tuple[Holder, ...]:
    """Who keeps the biggest lists of whole results alive: by the root a user knows
    (a module global, a running or `suspended` function's local), each list's bytes its
    own and its items' (a census's average per instance or Row of its class)."""
    def size(items: list) -> float:
        return sys.getsizeof(items) + len(items) * per_item.get(type(items[0]), 0.0)

    biggest = sorted(results, key=size, reverse=True)[:MAX_HOLDER_TARGETS]
    if not biggest:
        return ()
    chains = find_roots(biggest, suspended)
    groups: dict[str, list] = defaultdict(list)
    for items in biggest:
        chain = chains.get(id(items))
        groups[chain[0] if chain else UNNAMED].append((size(items), chain or ()))
    holders = [Holder(holder=f"{RESULTS_HELD_BY} {root}" if root != UNNAMED else root,
                      objects=len(found), bytes=int(sum(s for s, _ in found)),
                      chain=max(found, key=lambda f: f[0])[1])
               for root, found in groups.items()]
    return tuple(sorted(holders, key=lambda h: -h.bytes))


def _held_by_sessions(maps: list, per_item: dict[type, float]) -> tuple[Holder, ...]:
    """The instances live Sessions' identity maps hold themselves: clean objects weakly,
    but those modified and not flushed yet strongly, until the Session flushes or is
    closed. Each at a census's average per instance of its class."""
    held, sessions = 0.0, 0
    for identity_map in maps:
        modified = getattr(identity_map, "_modified", None)
        if not isinstance(modified, set) or not modified:
            continue
        sessions += 1
        held += sum(per_item.get(getattr(state, "class_", None), 0.0)
                    for state in list(modified))
    return (Holder(holder=HOLDER_IDENTITY, objects=sessions, bytes=int(held)),) \
        if held else ()


def _held_by_globals(plain: list[Held]) -> tuple[Holder, ...]:
    """The module globals whose plain values grew the most, each with its container."""
    return tuple(Holder(holder=f"{PLAIN_VALUES_HELD_BY} {held.name}",
                        objects=len(held.container),  # type: ignore[arg-type]
                        bytes=held.untracked + (sys.getsizeof(held.container)
                                                if gc.is_tracked(held.container) else 0))
                 for held in plain[:MAX_GLOBAL_HOLDERS] if held.untracked >= MIN_HELD_BYTES)


def _size_driver_results(sizer: _Sizer, holders: list, ledger: QueryLedger | None = None) -> None:
    """Rows a DB-API driver buffers (PyMySQL's and mysqlclient's results and cursors keep
    them as a tuple of tuples, which the garbage collector stops tracking: they are
    reached from their holder). A cursor's rows are the statement's it ran last, a
    result's the statement's that made it; a result shares its rows with its cursor, so
    the keyed come first."""
    keyed = [(_driver_key(ledger, h), h) for h in holders]
    keyed.sort(key=lambda pair: pair[0] is None)
    seen: set[int] = set()
    for key, holder in keyed:
        own = getattr(holder, "__dict__", None) or {}
        for name in ("rows", "_rows"):
            rows = own.get(name)
            if not isinstance(rows, (tuple, list)) or not rows or id(rows) in seen:
                continue
            seen.add(id(rows))
            with sizer.charged_to(key):
                sizer.add(DRIVER_ROWS, rows)
                _size_raw_rows(sizer, rows)


def _driver_key(ledger: QueryLedger | None, holder: object) -> Key | None:
    """The statement whose rows a driver's cursor or result object holds."""
    if ledger is None:
        return None
    return ledger.key_of_cursor(holder) or ledger.key_of_result(holder)


def _size_raw_rows(sizer: _Sizer, rows: list | tuple) -> None:
    """Row tuples as a driver returns them, and their values, from an even sample."""
    sample, weight = _sample(rows, RAW_ROWS_SAMPLED)
    for row in sample:
        if type(row) is tuple:
            sizer.add(DRIVER_ROWS, row, weight)
            sizer.add_values(row, weight)


def _size_identity_maps(sizer: _Sizer, maps: list, ledger: QueryLedger | None) -> None:
    """Each live Session's identity map dict; with a ledger, shared among the statements
    that loaded its states, as an even sample of them says."""
    for identity_map in maps:
        store = getattr(identity_map, "_dict", None)
        if not isinstance(store, dict):
            continue
        shares = _loaded_by(list(store.values()), ledger) if ledger is not None else {}
        sizer.add_shared(IDENTITY_MAP, store, shares)


def _loaded_by(states: list, ledger: QueryLedger) -> dict[Key | None, float]:
    """The share of `states` each statement loaded (None: a statement not seen)."""
    sample, _ = _sample(states, SAMPLE_PER_KIND)
    if not sample:
        return {}
    counts = Counter(ledger.key_of_run(getattr(state, "runid", None)) for state in sample)
    return {key: n / len(sample) for key, n in counts.items()}


def _size_statement_caches(sizer: _Sizer, engines: list) -> None:
    """The compiled-SQL caches of live engines: each cache's dict, keys and entries."""
    seen: set[int] = set()
    for engine in engines:
        cache = getattr(engine, "_compiled_cache", None)
        if cache is None or id(cache) in seen:
            continue
        seen.add(id(cache))
        sizer.add(STATEMENT_CACHE, cache)
        for key, entry in list(getattr(cache, "items", {}.items)()):
            sizer.add(STATEMENT_CACHE, key)
            sizer.add(STATEMENT_CACHE, entry)
            own = getattr(entry, "__dict__", None)
            if own is not None:
                sizer.add(STATEMENT_CACHE, own)
                text = own.get("string")
                if isinstance(text, str):
                    sizer.add(STATEMENT_CACHE, text)


def in_chunks(objects: list, size: int | None) -> Iterator[list]:
    """`objects` in slices of `size` (whole when None): each is one call into C, and the
    program's threads may take their turn between them. A live snapshot takes turns, so
    that it pauses the service in the listing only; a census of `sqldiag run` does not:
    with ten busy threads each of its turns would wait for theirs, and a census that
    spans the whole load sees none of its moments."""
    if size is None:
        yield objects
        return
    for start in range(0, len(objects), size):
        yield objects[start:start + size]


def tracked_bytes(objects: list, chunk: int | None = None) -> int:
    """Shallow bytes of `objects` (live_objects(): no tuples, the caller has them
    exactly), every one summed: 120 ns an object (in chunks, see in_chunks). A sample
    would be cheaper but wrong: sizes vary too much (one identity map's dict can be a
    hundred MB) and the collector lists an ORM object's parts in a repeating order that
    an even stride aliases with."""
    total = 0
    for part in in_chunks(objects, chunk):
        try:
            total += sum(map(sys.getsizeof, part))
        except Exception:  # noqa: BLE001 - a class's own __sizeof__ failed: see size_of
            total += sum(map(size_of, part))
    return total


def _picked(wanted: dict[type, object], chunk: int | None) -> tuple[int, int, list]:
    """(objects the collector lists, their bytes, those of the `wanted` types): at once
    (picked_at_once), or with `chunk`, in steps the program's threads take turns between
    (see in_chunks)."""
    if chunk is None:
        at_once = picked_at_once(wanted)
        if at_once is not None:
            return at_once
    objects, tuple_bytes = live_objects(chunk)
    picked = list(chain.from_iterable(
        compress(part, map(wanted.__contains__, map(type, part)))
        for part in in_chunks(objects, chunk)))
    listed, tracked = len(objects), tracked_bytes(objects, chunk) + tuple_bytes
    release(objects)
    return listed, tracked, picked


def subclasses_of(bases: Iterable[type | None]) -> set[type]:
    """The classes `bases` (None: left out) and every subclass of them."""
    found: set[type] = set()
    stack = [base for base in bases if base is not None]
    while stack:
        kind = stack.pop()
        if kind not in found:
            found.add(kind)
            stack.extend(type.__subclasses__(kind))
    return found


def objects_of_types(kinds: Iterable[type]) -> list:
    """The live objects whose class is one of `kinds`, picked from the collector's
    listing without the listing ever reaching Python code (see live_objects): a
    listing held while Python code runs lets the program's threads run meanwhile, and
    whatever they drop stays alive in it (a census would find their raw rows with no
    thread loading them) or, a tuple being built, fails them."""
    with few_thread_switches(CENSUS_SWITCH_INTERVAL[0]):
        return _picked(dict.fromkeys(kinds, "picked"), None)[2]


def _subclasses_of_interest(kinds: _SqlAlchemyKinds) -> set[type]:
    """Row, IdentityMap, Engine and Result classes: few, found from the base classes."""
    return subclasses_of((kinds.row, kinds.identity_map, kinds.engine, kinds.result))


def _sampled_by_type(picked: list, counts: Counter,
                     kinds: set[type]) -> dict[type, tuple[list, float]]:
    """Per type of `kinds`: an even sample of its objects in `picked` (SAMPLE_PER_KIND at
    most) and the weight of each, from one strided pass."""
    total = sum(counts[kind] for kind in kinds)
    if not total:
        return {}
    step = max(1, total // (SAMPLE_PER_KIND * 4))
    sample = picked[::step] if step > 1 else picked
    by_type: dict[type, list] = defaultdict(list)
    for obj in sample:
        kind = type(obj)
        if kind in kinds:
            by_type[kind].append(obj)
    missing = {kind for kind in kinds if counts[kind] and kind not in by_type}
    if missing:  # kinds too rare for the stride: all their objects
        for obj in compress(picked, map(missing.__contains__, map(type, picked))):
            by_type[type(obj)].append(obj)
    out = {}
    for kind, members in by_type.items():
        chosen, _ = _sample(members, SAMPLE_PER_KIND)
        out[kind] = (chosen, counts[kind] / len(chosen))
    return out


def _sqldiags(thread: threading.Thread) -> bool:
    """Whether `thread` is one of sqldiag's own (their names say so), not the program's."""
    return thread.name.startswith("sqldiag")


def _other_program_threads() -> bool:
    """Whether the program runs threads besides the current one (sqldiag's are not)."""
    current = threading.current_thread()
    return any(thread is not current and not _sqldiags(thread)
               for thread in threading.enumerate())


def _settle() -> None:
    """Let the program's other threads run QUIET_SETTLE_S, and on while one of them runs
    SQLAlchemy's code (closing its session or result), up to QUIET_SETTLE_MAX_S."""
    until = time.monotonic() + QUIET_SETTLE_MAX_S
    time.sleep(QUIET_SETTLE_S)
    while _others_in_sqlalchemy() and time.monotonic() < until:
        time.sleep(QUIET_SETTLE_S)


def _others_running(wanted: Callable[[CodeType], bool]) -> bool:
    """Whether a program thread other than the current one has a frame in its stack now
    whose code is `wanted`."""
    current = threading.get_ident()
    theirs = {thread.ident for thread in threading.enumerate() if not _sqldiags(thread)}
    for ident, frame in sys._current_frames().items():
        if ident == current or ident not in theirs:
            continue
        while frame is not None:
            if wanted(frame.f_code):
                return True
            frame = frame.f_back
    return False


def _others_in_sqlalchemy() -> bool:
    """Whether another program thread is running SQLAlchemy's code now."""
    return _others_running(lambda code: _SQLALCHEMY_CODE in _path(code))


def _others_executing() -> bool:
    """Whether another program thread is executing a statement (inside SQLAlchemy's
    Connection: its rows are not handed over yet)."""
    return _others_running(lambda code: code.co_name in _EXECUTING
                           and _path(code).endswith(_ENGINE_CODE))


def _path(code: CodeType) -> str:
    return code.co_filename.replace("\\", "/")


_SQLALCHEMY_CODE = "/sqlalchemy/"
# Connection's methods that run a statement, its driver's execute and (for a buffered
# cursor) fetch of every row within them
_EXECUTING = frozenset({"_execute_context", "_exec_single_context",
                        "_exec_insertmany_context"})
_ENGINE_CODE = "/sqlalchemy/engine/base.py"


def _drop_inherited_callbacks() -> None:
    """A forked child is only sampled (see CensusProbe): no census from its collections."""
    gc.callbacks[:] = [callback for callback in gc.callbacks
                       if not isinstance(getattr(callback, "__self__", None), CensusProbe)]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_callbacks)


def take_census(baseline: Baseline | None = None, longest: float = 0.0,
                ledger: QueryLedger | None = None, take_turns: bool = False,
                when_held: Callable[[], object] | None = None) -> LiveCensus:
    """The categories of what is alive now; `baseline` (take_baseline() before the work)
    is what other_python's growth is measured from, and its lists are left out. `longest`
    is how long it may take (see few_thread_switches); with a `ledger`, mapped instances
    are charged to the statement that loaded them as well. `take_turns`: let the
    program's threads run between chunks of its work (see in_chunks); `when_held` is
    called once they wait, just before the census lists what is alive (waiting for them
    may take seconds: the moment of the census is then). The collector waits meanwhile:
    the census allocates, and a collection of the whole heap would follow."""
    low, high = CENSUS_SWITCH_INTERVAL
    collecting = gc.isenabled()
    gc.disable()
    try:
        holding = few_thread_switches if take_turns else threads_parked
        with holding(min(high, max(low, longest))):
            if when_held is not None:
                when_held()
            return _census(baseline or Baseline(), ledger, CHUNK if take_turns else None)
    finally:
        if collecting:
            gc.enable()


def _census(baseline: Baseline, ledger: QueryLedger | None,
            chunk: int | None) -> LiveCensus:
    started = time.thread_time()
    kinds = _SqlAlchemyKinds()
    wanted = kinds.kinds_wanted(_subclasses_of_interest(kinds))
    # The objects of the wanted types, picked at C speed (no Python code per object):
    # the many (instances, Rows) are counted and sampled, the few (lists, identity maps,
    # engines) are looked at one by one.
    listed, tracked_now, picked = _picked(wanted, chunk)
    counts = Counter(map(type, picked))
    few_kinds = {kind for kind, what in wanted.items()
                 if what in ("list", "map", "engine", "driver", "result", "suspended")}
    few = list(compress(picked, map(few_kinds.__contains__, map(type, picked))))
    many = _sampled_by_type(picked, counts, set(wanted) - few_kinds)
    release(picked)  # a frame it holds may hold it (a cycle the collector would find late)
    del picked
    sizer = _Sizer()
    # the statement whose rows are in flight, when only one is (see QueryLedger.loading)
    in_flight = ledger.loading() if ledger is not None else None
    owners = RowOwners([o for o in few if wanted[type(o)] == "result"], ledger, in_flight)
    per_item: dict[type, float] = {}  # bytes per instance (or Row) of each kind
    for kind, (members, weight) in many.items():
        before = sum(sizer.bytes.values())
        if wanted[kind] == "mapped":
            _size_mapped(sizer, members, weight, ledger)
        else:
            _size_rows(sizer, members, weight, owners)
        per_item[kind] = (sum(sizer.bytes.values()) - before) / max(1, counts[kind])
    results = _size_lists(sizer, [o for o in _long_lists(o for o in few if type(o) is list)
                                  if (id(o), id(o[0])) not in baseline.lists], kinds,
                          owners, ledger)
    _size_identity_maps(sizer, [o for o in few if wanted[type(o)] == "map"], ledger)
    _size_driver_results(sizer, [o for o in few if wanted[type(o)] == "driver"], ledger)
    _size_statement_caches(sizer, [o for o in few if wanted[type(o)] == "engine"])
    classified = sum(sizer.tracked.values())
    # the code of modules imported since the baseline: objects the collector does not list
    imported = baseline.code.bytes_now() if baseline.code is not None \
        else NOTHING_IMPORTED
    # plain values that module globals gained, which the collector does not list
    plain = baseline.values.grown() if baseline.values is not None else []
    sizer.bytes[OTHER_PYTHON] += max(0.0, tracked_now - baseline.tracked - classified) \
        + imported.total + sum(held.untracked for held in plain)
    categories = {c: int(b) for c, b in sizer.bytes.items()}
    queries = {key: ({c: int(b) for c, b in by.items()},
                     int(sizer.objects_by_query.get(key, 0)))
               for key, by in sizer.by_query.items()}
    holders = _result_holders(results, per_item,
                              [o for o in few if wanted[type(o)] == "suspended"])
    holders += _held_by_sessions([o for o in few if wanted[type(o)] == "map"], per_item)
    holders += _held_by_globals(plain)
    del results, few, owners
    return LiveCensus(categories=categories, objects=listed, queries=queries,
                      seconds=round(time.thread_time() - started, 3), holders=holders,
                      imported=imported, outside_pymalloc=int(
                          sizer.large + imported.large + sum(held.large for held in plain)))


@dataclass(frozen=True)
class CensusAt:
    label: str
    t: float
    rss: int
    census: LiveCensus


def _found_alive(at: CensusAt) -> int:
    """What a census found alive, less the code of the modules imported since the baseline."""
    return sum(at.census.categories.values()) - at.census.imported.total


# A census that paused the program this long (hundreds of thousands of objects) spaces
# the next high further: the pauses at the top of a large load are what sqldiag costs
# it, and the analysis scales a census up to 1.5 times its growth to reach the peak.
COSTLY_CENSUS_S, COSTLY_STEP = 0.25, 1.3
# A whole result just handed over is the best moment for a census (see _whole_result):
# while censuses are cheap, it may use up to this many times the budget the polling
# censuses keep to.
WHOLE_RESULT_BUDGET = 1.5
# ... and it is taken below the next high of RSS when the result has at least one row for
# every this many objects the last census listed (4,000 instances beside 58,000 objects
# are most of a small program's growth; 100,000 beside 5 million at full size are not)
WHOLE_RESULT_SHARE = 20
# ... or, while censuses are cheap, when the results handed over since the last census
# hold as many rows as all before it (at least this many): a program that accumulates
# small results (a loop over slices of a table) is seen at each doubling of its load,
# not only at steps of RSS, which the allocator may fill from memory freed earlier
WHOLE_RESULTS_DOUBLED_MIN_ROWS = 1000
# A whole result whose end leaves no other being built, at a new high of RSS (this
# share of the program's growth above a census taken between loads), is the top of a
# workload of parallel loads: its census may use up to this many times the budget (see
# _quiet_top)
QUIET_TOP_GROWTH, QUIET_TOP_BUDGET = 0.1, 2.0
# ... taken this long after it, so that the threads whose loads ended just before have
# closed their results and sessions (their driver rows and identity maps are freed), and
# longer while other threads still run SQLAlchemy's code, up to the most (closing a
# Session of 100,000 instances takes tens of ms, and a top's census saw three workers'
# sessions still open: driver_rows +17%, identity_map +31%; on a machine half as fast,
# with ten threads and the server on two cores, three were still open after 0.3 s:
# driver_rows +38%, identity_map +37%). The census's thread sleeps meanwhile, and the
# result just handed over stays alive: its thread waits here.
QUIET_SETTLE_S, QUIET_SETTLE_MAX_S = 0.02, 1.0
# A costly census due while loads are being built waits for their end (the top) this
# long at most after the last census (see _waits_for_the_top)
PARTWAY_WAIT_S = 30.0
# A census at a higher RSS that found at least this share of what the one that found
# the most found is the better candidate for the peak (see CensusProbe._higher)
LIVE_ALIKE = 0.9
UNCHANGED_SHARE = 0.01  # objects freed, RSS fallen: below this a census is not retaken
# From 3.12 the collector runs at a bytecode boundary of the allocating thread (before,
# inside an allocation, where objects C code is still filling are listed): a census can
# then be taken there, in the program's own thread (see _on_collection).
COLLECTIONS_RUN_BETWEEN_BYTECODES = sys.version_info >= (3, 12)
RSS_READ_EVERY_S = 0.005  # how often a collection looks at RSS: a read costs microseconds
# The census thread leaves censuses to the collections while the program has collected
# this recently (it runs Python code and allocates); else (the program waits on I/O, or
# C code fills memory) the census thread takes them.
COLLECTED_RECENTLY_S = 0.05
# Censuses at highs wait while the program imports modules (one was imported this
# recently): what grows then is code, not data, and on Python 3.13 ten censuses during
# SQLAlchemy's import and the seeding after it (1.07 s on a loaded machine) spent a small
# program's budget before its loop loaded anything (the peak census saw no ORM object).
# A workload run by a module's import is seen once that import stops adding modules;
# a program that imports without pause waits at most IMPORT_WAIT_MAX_S for each census.
IMPORTED_RECENTLY_S, IMPORT_WAIT_MAX_S = 0.05, 2.0


class CensusProbe:
    """Takes a census at each new high of RSS while `watching` (the program runs), between
    highs as often as a census costs a tenth of the time, and at the marks it is asked
    to, and as SQLAlchemy hands over whole results; keeps the census that found the most
    alive (see _higher).

    A census holds the GIL (the program waits) for about a second at a million ORM
    objects, so highs are spaced: a new census only when the program's growth of RSS
    is `step` times the last one's (at least `min_bytes` more) and the time spent in
    censuses stays within `free_seconds` plus `budget` of the time run so far. That
    census may be a step below the peak of RSS: the analysis extends it to the peak and
    says so (analysis.summary.census_fill)."""

    def __init__(self, step: float = 1.15, budget: float = 0.12, period: float = 0.02,
                 free_seconds: float = 0.5, min_bytes: int = 2 << 20,
                 spacing: float = 10.0, ledger: QueryLedger | None = None) -> None:
        self.step, self.budget, self.period = step, budget, period
        self.free_seconds, self.min_bytes, self.spacing = free_seconds, min_bytes, spacing
        self.watching = False
        self.baseline = Baseline()
        # listens once the program has imported SQLAlchemy
        self.ledger = ledger if ledger is not None else QueryLedger()
        self.highest: CensusAt | None = None
        self.marks: dict[str, CensusAt] = {}
        self.taken: list[CensusMark] = []
        self.spent = 0.0
        self.failed = 0  # censuses at highs that raised (and were skipped)
        self._rows_before = 0  # rows of the whole results handed over before the last census
        self._rows_since = 0  # ... and since it
        # a census was due while an ORM load was being built (see _deferred_to_the_load)
        self._deferred = False
        self._settling = False  # a top's census is about to be taken (see _whole_result)
        self._partway = False  # the last census was taken while ORM loads were being built
        # the census due while loads were being built would have been costly, told by
        # counting what it would list (see _costly_ahead); cleared by the next census
        self._costly_listing = False
        self._last_census_at = 0.0
        self.after_census: Callable[[], object] | None = None  # called after each one
        self._rss = rss_reader()
        self._clock: Callable[[], float] = time.monotonic
        self._started = time.monotonic()
        self._next_at = 0
        self._start_rss = 0
        self._next_time = 0.0
        self._rss_read_at = 0.0
        self._collected_at = 0.0  # when a program's thread last started a collection
        self._modules = len(sys.modules)  # how many were imported when last looked at...
        self._imported_at = 0.0  # ... and when that count last changed
        self._import_wait_since: float | None = None  # a census due has waited for imports
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqldiag-census", daemon=True)

    def start(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started = time.monotonic()
        self.baseline = take_baseline()
        self.ledger.start()
        whole_results.listen(self._whole_result)
        self._start_rss = self._rss()
        self._next_at = self._start_rss + self.min_bytes
        if COLLECTIONS_RUN_BETWEEN_BYTECODES:
            gc.callbacks.append(self._on_collection)
        self._thread.start()

    def stop(self) -> None:
        self.watching = False
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        whole_results.unlisten(self._whole_result)
        self.ledger.stop()

    def census(self, label: str,
               still_wanted: Callable[[], bool] | None = None) -> CensusAt | None:
        """A census now (from a mark or the watching thread); the other threads wait for
        it (see few_thread_switches). None when it failed (see _attempt), or when
        `still_wanted`, asked with the lock held (after a census under way), says no."""
        with self._lock:
            if still_wanted is not None and not still_wanted():
                return None
            at = self._attempt(label)
        if at is not None and self.after_census is not None:
            self.after_census()
        return at

    def _take(self, label: str) -> CensusAt:
        """census() with the lock held."""
        # As long as it may take: a census that is made to give the GIL back part-way
        # waits for every busy thread's turn of that length (ten pool threads building
        # ORM objects starved one for 5 s, which then saw none of the load). Spacing
        # censuses bounds what they cost the program.
        # Its moment and RSS are those of its start, when it picks what is alive: a
        # census of millions of objects takes seconds, and the program's teardown may
        # free most of its memory right after (the peak census read RSS at its end
        # and was filed at 209 MB, a fifth of what it had seen). Not before the program's
        # threads wait for it, which may take seconds too (a census read 54 MB there and
        # found 141 MB of objects).
        began = time.monotonic()
        moment: list[tuple[float, int]] = []
        taken = take_census(self.baseline, CENSUS_SWITCH_INTERVAL[1], self.ledger,
                            when_held=lambda: moment.append((self._clock(), self._rss())))
        t, rss = moment[0]
        at = CensusAt(label, t, rss, taken)
        # spent on the clock, not on the census's CPU: with the program's threads busy,
        # a census keeps them waiting up to three times its CPU time (see few_thread_switches)
        self.spent += time.monotonic() - began
        self._deferred = False
        self._costly_listing = False
        self._import_wait_since = None
        self._partway = not whole_results.building_none()
        self._last_census_at = time.monotonic()
        self._rows_before += self._rows_since
        self._rows_since = 0
        self.taken.append(CensusMark(label, round(at.t, 4), at.rss, taken.seconds,
                                     taken.objects, round(time.monotonic() - began, 3),
                                     dict(taken.categories)))
        if self._higher(at):
            self.highest = at
        # the next high: `step` above in the program's own growth (not the
        # interpreter's, which would space a small program's censuses too far)
        grown = max(0, at.rss - self._start_rss)
        step = self.step if taken.seconds < COSTLY_CENSUS_S else COSTLY_STEP
        self._next_at = int(max(self._next_at,
                                at.rss + max(self.min_bytes, (step - 1) * grown)))
        # while censuses are within their free seconds (a small heap), one as often as
        # every period: a short program's load, or a test's, is not missed
        small = self.spent <= self.free_seconds
        spacing, least = (2.0, self.period) if small else (self.spacing, 0.1)
        self._next_time = time.monotonic() + max(spacing * taken.seconds, least)
        return at

    def _attempt(self, label: str) -> CensusAt | None:
        """_take with the lock held; None when the census failed. The program and the
        later censuses go on (a census thread that died of one saw nothing of the load
        after it, and a failed census at the end would have lost the run's record); the
        first failure is told on stderr."""
        try:
            return self._take(label)
        except Exception as exc:  # noqa: BLE001 - never stop the program or the probe
            if not self.failed:
                sys.stderr.write(f"sqldiag: a census failed and was skipped: "
                                 f"{type(exc).__name__}: {exc}\n")
            self.failed += 1
            return None

    def _higher(self, at: CensusAt) -> bool:
        """The peak candidate: the census that found the most alive (as tracemalloc's peak
        is the most traced), or nearly as much (LIVE_ALIKE) at a higher RSS. The highest
        RSS alone misleads: freed memory stays in RSS, so a census after an early burst
        would be chosen over the one at the program's real load. The most alive alone
        misleads too: a census amid a burst (4,000 rows as dicts and tuples to insert)
        was chosen over one at a higher RSS that saw the load, nearly as large, that the
        program kept, and the peak held no ORM object. The code of modules imported
        during the work is left out of what each found: it only grows, and 10 MB of
        SQLAlchemy's beside a load of 3 MB made the census after the load, at a higher
        RSS, nearly as large as the one that saw it."""
        best = self.highest
        if best is None:
            return True
        live, best_live = _found_alive(at), _found_alive(best)
        return live > best_live or (live >= LIVE_ALIKE * best_live and at.rss > best.rss)

    def mark(self, label: str) -> CensusAt | None:
        at = self.census(label)
        if at is not None:
            self.marks[label] = at
        return at

    def mark_unchanged(self, label: str, since: str, freed: int) -> CensusAt | None:
        """The census of mark `since` again as `label` (now, at today's RSS) when the
        collector has just `freed` at most UNCHANGED_SHARE of the objects it listed and
        RSS has not fallen: no second listing of millions of objects (a capture() whose
        caller still holds the results); None when a census is needed."""
        before = self.marks.get(since)
        if before is None or freed > UNCHANGED_SHARE * before.census.objects:
            return None
        rss = self._rss()
        if rss < before.rss * (1 - UNCHANGED_SHARE):
            return None
        at = CensusAt(label, self._clock(), rss, before.census)
        self.marks[label] = at
        return at

    def _whole_result(self, rows: int) -> None:
        """SQLAlchemy has just handed the program a whole result: all its objects and the
        list are alive, and the caller has dropped none of them yet. A census now, when
        censuses are affordable and RSS is at a new high or the result is large beside
        what the last census listed (4,000 instances that RSS grew 1 MB for, the
        allocator reusing what the program had freed, went unseen), or the results since
        the last census doubled the rows handed over (_doubled). A load built and
        dropped between two polls of RSS (a test's 60,000 instances turned into names
        within 0.3 s) was missed, and the test passed a budget it exceeded. The end of
        parallel loads (_quiet_top) takes one with a larger budget."""
        if not self.watching:
            return
        # counted without the lock, so that a small result never waits for a census
        # under way: a count a race between threads loses only delays a census
        self._rows_since += rows
        if rows < WHOLE_RESULT_ROWS and not self._deferred and \
                not (self._cheap() and self._doubled()):
            return
        quiet, taken = self._quiet_top(rows), len(self.taken)
        if quiet and _other_program_threads():
            # the threads whose loads ended just before close their results and sessions;
            # the polls and collections wait for this census meanwhile
            self._settling = True
            try:
                _settle()
            finally:
                self._settling = False
            # another thread still executing a statement will hand over its rows later:
            # that is the top (a census of 7 million objects taken while the last worker
            # was fetching saw 9 of 10 loads, and spent the budget the top's needed)
            quiet = self._quiet_top(rows) and not _others_executing()
        with self._lock:  # after the census under way, if one is: then it is judged anew
            # More budget while censuses are cheap: a load that lives less than a
            # census is a small one. A large load lasts seconds and the polls see it;
            # there the whole results of ten workers near the top cost 3 s each.
            cheap = self._cheap()
            share = WHOLE_RESULT_BUDGET if cheap else 1.0
            # or the result is large beside what the last census listed: a load whose
            # memory the allocator found among blocks freed before it adds little RSS
            large = rows >= WHOLE_RESULT_ROWS and bool(self.taken) and \
                rows * WHOLE_RESULT_SHARE >= self.taken[-1].objects
            high = rows >= WHOLE_RESULT_ROWS and self._rss() >= self._next_at
            wanted = large or high or self._deferred or (cheap and self._doubled())
            if quiet and len(self.taken) != taken:  # another thread's census meanwhile
                quiet = self._quiet_top(rows)
            if quiet:
                wanted, share = True, max(share, QUIET_TOP_BUDGET)
            elif self._waits_for_the_top():
                return
            if not (self._affordable(share) and wanted):
                return
            if self._attempt(HIGH) is None:
                return
            if quiet:
                # a top's, though a load may have started to be built while it settled
                # or was taken: the end of that load is a top only at QUIET_TOP_GROWTH
                # above it (a second census of 7 million objects came 3 s after the first)
                self._partway = False
        if self.after_census is not None:
            self.after_census()

    def _quiet_top(self, rows: int) -> bool:
        """Whether this whole result ends the loads under way (no other is being built)
        at a new high of RSS: the moment a workload of parallel loads has all of them
        built and none of the others' driver rows or sessions in flight, which a census
        part-way (at a step of RSS, ten workers building) does not show. Above a census
        taken part-way, any new high (`min_bytes`) is; above one taken between loads,
        QUIET_TOP_GROWTH of the program's growth."""
        if rows < WHOLE_RESULT_ROWS or not whole_results.building_none():
            return False
        last = self.taken[-1].rss if self.taken else self._start_rss
        grown = 0.0 if self._partway else QUIET_TOP_GROWTH * max(0, last - self._start_rss)
        return self._rss() >= last + max(self.min_bytes, grown)

    def _waits_for_the_top(self) -> bool:
        """Whether a costly census now, while other loads are still being built, waits
        for their end (_quiet_top), which is the top: one part-way costs as much, shows
        their driver rows and sessions in flight, and spends the budget the top's needs.
        It waits PARTWAY_WAIT_S at most after the last census (loads that overlap
        without end)."""
        return self._costly_part_way() and \
            time.monotonic() - self._last_census_at < PARTWAY_WAIT_S

    def _costly_part_way(self) -> bool:
        """Whether censuses are costly and ORM loads are being built now."""
        return not self._cheap() and not whole_results.building_none()

    def _cheap(self) -> bool:
        """Whether the last census cost less than COSTLY_CENSUS_S (or none was taken), and
        the one due after it was not found to be costly (_costly_ahead)."""
        return not self._costly_listing and (
            not self.taken or self.taken[-1].seconds < COSTLY_CENSUS_S)

    def _costly_ahead(self) -> bool:
        """Whether a census now would cost COSTLY_CENSUS_S or more, at what the last one
        cost an object, counting what it would list. Asked only while the last census was
        cheap and several ORM loads are being built: in the original report's ten
        workers the first costly census came part-way (870,000 objects, 0.35 s of CPU,
        0.9-1.5 s on the clock), and the top's, a few seconds later, saw it all again."""
        if not self.taken:
            return False
        last = self.taken[-1]
        per_object = last.seconds / max(1, last.objects)
        self._costly_listing = listed_count() * per_object >= COSTLY_CENSUS_S
        return self._costly_listing

    def _doubled(self) -> bool:
        """Whether the whole results handed over since the last census hold as many rows
        as all before it (WHOLE_RESULTS_DOUBLED_MIN_ROWS at least)."""
        return self._rows_since >= max(self._rows_before, WHOLE_RESULTS_DOUBLED_MIN_ROWS)

    def _on_collection(self, phase: str, info: dict) -> None:
        """A collection of the youngest generation starts (every 700 new containers, in
        the thread that made them): at a new high of RSS, a census in that thread, now.
        The census thread cannot do it there: a thread already waiting for the GIL when
        a census raises the switch interval still asks for it after the old 5 ms, then
        keeps it under the raised interval until it blocks, and a short load in pure
        Python (a test's 60,000 ORM instances read by iterating, 0.3 s) ran to its end
        while the census waited. Here the program's thread is the census's own."""
        if phase != "start" or not self.watching:
            return
        now = time.monotonic()
        if now < self._rss_read_at:
            return
        self._rss_read_at = now + RSS_READ_EVERY_S
        if _sqldiags(threading.current_thread()):
            return  # sqldiag's own threads: their allocations are not the program's
        self._collected_at = now
        if not self._affordable() or not self._due() or self._deferred_to_the_load():
            return
        if not self._lock.acquire(blocking=False):
            return  # a census under way (this collection may be its own allocating)
        try:
            if self._attempt(HIGH) is None:
                return
        finally:
            self._lock.release()
        if self.after_census is not None:
            self.after_census()

    def _deferred_to_the_load(self) -> bool:
        """Whether a census that is due waits for the ORM load under way to be built:
        when one thread builds the objects of a whole result, the census as it is
        handed over sees all of them (see _whole_result). Censuses part-way through a
        short load cost more than the load (0.44 s in a 0.3 s load of 60,000 instances)
        and left too little budget for that one. With several threads building, cheap
        censuses between their ends go on; costly ones wait for a load's end too (and
        there, see _waits_for_the_top), and so does one that would be costly after a
        cheap one (_costly_ahead). A wait is noted (_deferred): the load's end
        then takes the census whatever its size or RSS. While the census at the top of
        parallel loads waits for their threads to settle (_quiet_top), others wait too."""
        if self._settling:
            return True
        if whole_results.building_alone() or self._costly_part_way() or (
                not whole_results.building_none() and self._costly_ahead()):
            self._deferred = True
            return True
        return False

    def _affordable(self, share: float = 1.0) -> bool:
        """Whether censuses have cost within their free seconds plus `share` times their
        budget of the time run so far."""
        elapsed = time.monotonic() - self._started
        return self.spent <= self.free_seconds + share * self.budget * elapsed

    def _due(self) -> bool:
        """At each step up of RSS, and between steps as often as a census is cheap; not
        while the program imports modules (see IMPORTED_RECENTLY_S)."""
        now = time.monotonic()
        due = self._rss() >= self._next_at or now >= self._next_time
        return due and not self._importing(now)

    def _importing(self, now: float) -> bool:
        """Whether the program has imported a module within IMPORTED_RECENTLY_S, told by
        the count of sys.modules when a census is otherwise due, and the census due has
        waited less than IMPORT_WAIT_MAX_S for it."""
        modules = len(sys.modules)
        if modules != self._modules:
            self._modules, self._imported_at = modules, now
        if now - self._imported_at >= IMPORTED_RECENTLY_S:
            self._import_wait_since = None
            return False
        if self._import_wait_since is None:
            self._import_wait_since = now
        return now - self._import_wait_since < IMPORT_WAIT_MAX_S

    def _loop(self) -> None:
        leave_signals_to_the_main_thread()
        while not self._stop.wait(self.period):
            if not self.watching or not self._affordable():
                continue
            if time.monotonic() - self._collected_at < COLLECTED_RECENTLY_S:
                continue  # the program's own collections take them (see _on_collection)
            if self._due() and not self._deferred_to_the_load():
                self.census(HIGH, still_wanted=self._still_due)

    def _still_due(self) -> bool:
        """A poll's census, judged again once a census under way (a top's, taken by the
        program's thread) is done: that one may have made it needless (the polls took a
        second census of 7 million objects right after the top's)."""
        return self.watching and self._due() and self._affordable() and \
            not self._deferred_to_the_load()
