"""What the allocators add to the bytes tracemalloc traces, from the traced sizes alone.

tracemalloc counts the bytes each allocation asked for; RSS holds what the allocators
gave: pymalloc (requests up to 512 bytes) rounds each to its 16-byte size class and
keeps pools of 16 KiB with a header and a tail too small for another block, in arenas of
1 MiB that lose a pool to alignment unless mmap happened to align them; glibc (larger
requests) adds a chunk header and rounds to 16 bytes, and serves the largest by mmap in
whole pages. The calibration model predicts this beside the categories, so that its
predicted peak is one of RSS, not of live Python bytes only (CPython 3.10+, 64-bit).

The same sizes tell which traced bytes sit in glibc's chunks (requests over 512 bytes),
and so, with glibc's bytes in use and tracemalloc's own, how much C memory that is not a
Python object (a driver's result buffers) the program holds at a snapshot.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter

SMALL_REQUEST = 512  # pymalloc serves requests up to this size
ALIGNMENT = 16
POOL_SIZE = 16 * 1024
POOL_HEADER = 48
ARENA_SIZE = 1024 * 1024
CHUNK_HEADER = 8
MIN_CHUNK = 32
MMAP_THRESHOLD = 128 * 1024  # glibc's default; above it a request gets its own pages
PAGE = 4096
# tracemalloc's memory per trace beyond what get_tracemalloc_memory() reports: a trace's
# 16 bytes (a 32-byte chunk) and its hashtable entry's chunk header (measured the same,
# 48 bytes, on 3.10, 3.11, 3.12 and 3.13)
UNCOUNTED_PER_TRACE = 48
# What it reports per trace: the 32-byte entry and 16-48 bytes of buckets (the table
# keeps 2 to 6.7 buckets an entry); 56 is the middle, measured 49-58 on workloads here.
REPORTED_PER_TRACE = 56
# mmap aligns an arena to a page and a pool needs its own size: unless the page happens
# to start a pool (1 time in 4), the arena loses a pool
ARENA_ALIGNMENT_SHARE = (1 - PAGE / POOL_SIZE) * POOL_SIZE / ARENA_SIZE


def _rounded(size: int, to: int) -> int:
    return (size + to - 1) // to * to


def block_overhead(size: int) -> float:
    """Bytes the allocator adds to one request of `size` bytes, pool tails included."""
    if size <= SMALL_REQUEST:
        block = max(ALIGNMENT, _rounded(size, ALIGNMENT))
        per_pool = (POOL_SIZE - POOL_HEADER) // block
        pool_share = (POOL_SIZE - per_pool * block) / per_pool
        return block - size + pool_share + block * ARENA_ALIGNMENT_SHARE
    if size >= MMAP_THRESHOLD:
        return _rounded(size + 2 * CHUNK_HEADER, PAGE) - size
    return max(MIN_CHUNK, _rounded(size + CHUNK_HEADER, ALIGNMENT)) - size


def allocation_costs(traces: list) -> tuple[int, int]:
    """(what the allocators add to the bytes raw tracemalloc traces (domain, size, ...)
    asked for, the bytes of glibc's chunks that hold traced objects: requests over 512
    bytes with their headers); counted by size at C speed, then priced per distinct
    size."""
    sizes = Counter(map(itemgetter(1), traces))
    added = sum(count * block_overhead(size) for size, count in sizes.items() if size)
    return int(added), _in_glibc(sizes)


def _in_glibc(sizes: Counter) -> int:
    """The bytes of glibc's chunks that hold requests of these sizes (by count)."""
    return int(sum(count * (size + block_overhead(size)) for size, count in sizes.items()
                   if size > SMALL_REQUEST))


def traced_in_glibc(traces: list) -> int:
    """allocation_costs' second figure alone, cheap while tracemalloc still traces: only
    the few requests over 512 bytes are counted, where counting every size makes an int
    object for each, each traced (0.56 s against 0.02 s for 150,000 traces)."""
    return _in_glibc(Counter([trace[1] for trace in traces if trace[1] > SMALL_REQUEST]))


def tracemalloc_own_bytes(reported: int) -> int:
    """tracemalloc's own memory from what get_tracemalloc_memory() reports, with what it
    leaves out (UNCOUNTED_PER_TRACE a trace, the traces estimated from the report, within
    about 15%): about 1.9 times the report. Where the number of traces is known (a
    snapshot), native_bytes counts them exactly."""
    return reported + UNCOUNTED_PER_TRACE * reported // REPORTED_PER_TRACE


def native_bytes(in_use_growth: int, tracemalloc_bytes: int, traces: int,
                 traced_in_glibc: int) -> int:
    """C memory in use that is not a Python object, from glibc's bytes in use grown since
    before tracing: less tracemalloc's own tables (what it reports and what it does not)
    and the traced objects glibc holds. Never negative."""
    own = tracemalloc_bytes + UNCOUNTED_PER_TRACE * traces
    return max(0, in_use_growth - own - traced_in_glibc)
