"""RSS growth as a sum of named, measured parts (pure functions).

At a moment (the peak, or after the work) RSS above the "ready" phase is split into:

  python_objects   the traced categories: live Python objects
  python_unattributed  pymalloc's blocks in use beyond all the categories count:
                   Python memory the trace or census did not see at that moment (a
                   transient peak between snapshots, a C extension's PyMem buffers; in a
                   census, objects the GC does not track: strings, numbers, and dicts
                   or tuples holding only those)
  native           C memory in use that is not a Python object: glibc's bytes in use
                   (its heap and mmapped chunks) grown by more than the live Python
                   bytes that sit outside pymalloc (objects over 512 bytes: lists,
                   dicts; a census measures them, else they are what the categories
                   count beyond pymalloc's bytes in use). A C driver's result buffers
                   (libpq's PGresult, libmysqlclient's MYSQL_RES), SQLite's page cache
                   and glibc's chunk headers are here.
  overhead         pymalloc's own: pool headers, blocks rounded up to their size class,
                   arena alignment
  pymalloc_free    free blocks and unused pools inside pymalloc's arenas (an arena goes
                   back to the OS only when every block in it is free)
  glibc_free       free chunks glibc keeps, as far as they are resident
  mapped_files     pages of mapped files and shared memory that came into RSS: the
                   shared libraries and extension modules a program imports during the
                   work (statm's shared pages)
  rest             what no measurement names (thread stacks, and the error of the
                   other parts)

Measured parts can add to more than the RSS growth: glibc counts free chunks that
malloc_trim or a shrinking heap has handed back to the OS (no longer resident), and
mmapped blocks that were allocated but never written. The excess is taken from glibc's
free chunks first, then from native memory, and shown as `not_resident`; no part is ever
negative.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqldiag.record.codec import JsonValue
from sqldiag.record.parts import Mallinfo, Method, PymallocStats, Record
from sqldiag.record.phases import AFTER_GC, AFTER_TRIM, END, PEAK, READY

# RSS moments whose allocator figures a record can hold
AT_PEAK = "peak"


@dataclass(frozen=True)
class RssParts(JsonValue):
    """RSS above "ready" at a moment; the parts (every one >= 0) add up to `growth`."""

    growth: int
    python_objects: int
    native: int
    overhead: int
    pymalloc_free: int
    glibc_free: int
    rest: int
    not_resident: int = 0  # measured but out of RSS (taken off glibc_free, then native)
    python_unattributed: int = 0  # pymalloc's blocks in use that no category counted
    mapped_files: int = 0  # file-backed and shared pages that came into RSS
    python_outside_pymalloc: int = 0  # live Python bytes in glibc's blocks
    pymalloc_arenas: int = 0  # pymalloc's arena bytes grown since "ready"
    glibc_arenas: int | None = None

    @property
    def free(self) -> int:
        return self.pymalloc_free + self.glibc_free

    @property
    def named_share(self) -> float | None:
        """The share of the growth that measured parts name (all but `rest`)."""
        return (self.growth - self.rest) / self.growth if self.growth > 0 else None


def split(growth: int, python_objects: int, start: tuple[Mallinfo, PymallocStats],
          now: tuple[Mallinfo, PymallocStats], tracemalloc_bytes: int = 0,
          mapped_files: int = 0, outside_pymalloc: int | None = None) -> RssParts | None:
    """The parts of `growth` given the live Python bytes and both allocators' figures at
    "ready" and at the moment (`tracemalloc_bytes`: tracemalloc's own tables then, in
    glibc's bytes in use and not the program's); None where glibc's figures are missing.
    `outside_pymalloc`: of the live Python bytes, those measured in glibc's blocks (a
    census sizes them); without it, those beyond pymalloc's bytes in use."""
    (glibc_start, py_start), (glibc_now, py_now) = start, now
    in_use_start, in_use_now = glibc_start.all_in_use, glibc_now.all_in_use
    if in_use_start is None or in_use_now is None:
        return None
    in_use_now -= tracemalloc_bytes
    used = py_now.used_bytes - py_start.used_bytes
    arenas = py_now.arena_bytes - py_start.arena_bytes
    overhead = max(0, py_now.overhead_bytes - py_start.overhead_bytes)
    pymalloc_free = max(0, arenas - used - overhead)
    outside = max(0, python_objects - max(used, 0))
    if outside_pymalloc is not None:
        outside = max(outside, min(outside_pymalloc, python_objects))
    unattributed = max(0, used - (python_objects - outside))
    native = max(0, in_use_now - in_use_start - outside)
    glibc_free = max(0, (glibc_now.free_bytes or 0) - (glibc_start.free_bytes or 0))
    measured = (python_objects + unattributed + native + overhead + pymalloc_free
                + glibc_free + mapped_files)
    not_resident = max(0, measured - max(growth, 0))
    from_free = min(glibc_free, not_resident)
    from_native = min(native, not_resident - from_free)
    glibc_free, native = glibc_free - from_free, native - from_native
    named = measured - from_free - from_native
    return RssParts(growth=growth, python_objects=python_objects,
                    python_unattributed=unattributed, mapped_files=mapped_files,
                    native=native,
                    overhead=overhead, pymalloc_free=pymalloc_free, glibc_free=glibc_free,
                    rest=max(0, growth - named), not_resident=from_free + from_native,
                    python_outside_pymalloc=outside, pymalloc_arenas=arenas,
                    glibc_arenas=glibc_now.arenas)


def _state(record: Record, key: str) -> tuple[Mallinfo, PymallocStats] | None:
    allocator = record.allocator
    if key == AT_PEAK:
        high = allocator.at_high
        return (high.mallinfo, high.pymalloc) if high and high.pymalloc else None
    glibc, pymalloc = allocator.mallinfo.get(key), allocator.pymalloc.get(key)
    return (glibc, pymalloc) if glibc is not None and pymalloc is not None else None


def rss_parts(record: Record, key: str, growth: int | None,
              python_objects: int) -> RssParts | None:
    """The parts at AT_PEAK (the allocators read at the highest RSS) or at a phase
    (AFTER_GC, AFTER_TRIM); None where the record lacks the figures."""
    if growth is None or key not in (AT_PEAK, AFTER_GC, AFTER_TRIM):
        return None
    start, now = _state(record, READY), _state(record, key)
    if start is None or now is None:
        return None
    high = record.allocator.at_high
    own = high.tracemalloc_bytes if key == AT_PEAK and high is not None else 0
    files = record.allocator.file_rss
    file_now = (high.file_rss if high is not None else None) if key == AT_PEAK \
        else files.get(key)
    file_start = files.get(READY)
    mapped = max(0, file_now - file_start) if file_now is not None and \
        file_start is not None else 0
    census = record.breakdowns.get(PEAK if key == AT_PEAK else END) \
        if record.measurement.method is Method.CENSUS else None
    return split(growth, python_objects, start, now, own, mapped,
                 census.outside_pymalloc if census is not None else None)
