"""Reduce a tracemalloc snapshot to bytes per category and the top sites of each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from sqldiag.capture.attribution.functions import function_at
from sqldiag.capture.attribution.overhead import allocation_costs
from sqldiag.capture.attribution.paths import short_path
from sqldiag.capture.attribution.rules import LIST_BLOCK_BYTES, classify, is_import
from sqldiag.record.categories import OTHER_PYTHON, TRACED

SITES_PER_CATEGORY = 8
IMPORT_SITE = "(module import)"
TRACEBACK_FRAMES_KEPT = 12

# Allocations with a frame in these files are the measuring's own (the sampler's threads
# call psutil, whose frames come first).
_SELF_MARKERS = ("/tracemalloc.py", "/sqldiag/capture/attribution/", "/sqldiag/capture/probes/",
                 "/pympler/", "/objgraph.py")


@lru_cache(maxsize=4096)
def _is_measuring(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return any(marker in path for marker in _SELF_MARKERS)


@dataclass
class Site:
    """Where a category's bytes were allocated: the frame that decided the category."""

    category: str
    file: str
    function: str
    line: int
    size: int = 0
    count: int = 0
    traceback: list[str] = field(default_factory=list)  # most recent frame first
    frames: tuple = ()  # the heaviest path's raw frames, formatted into traceback at the end

    def to_dict(self) -> dict:
        return {"category": self.category, "file": self.file, "function": self.function,
                "line": self.line, "size": self.size, "count": self.count,
                "traceback": self.traceback}


@dataclass
class Breakdown:
    """Traced bytes per category at one moment; with the program's statement lines, the
    bytes allocated below each of them (by their key) per category too."""

    total: int
    categories: dict[str, int]
    counts: dict[str, int]
    sites: list[Site]
    queries: dict[object, dict[str, int]] = field(default_factory=dict)
    overhead: int | None = None  # what the allocators add to the traced bytes, when asked
    in_glibc: int | None = None  # ... and the bytes of glibc's chunks that hold traced objects
    traces: int = 0

    def to_dict(self) -> dict:
        return {"total": self.total, "categories": self.categories, "counts": self.counts,
                "sites": [s.to_dict() for s in self.sites]}


def _format_frame(filename: str, lineno: int) -> str:
    return f"{short_path(filename)}:{lineno} in {function_at(filename, lineno)}"


def breakdown_traces(traces: list, lines: dict[tuple[str, int], object] | None = None,
                     overhead: bool = False) -> Breakdown:
    """Classify raw traces: (domain, size, frames most recent first, ...) tuples.

    Memory use is per distinct traceback: tracebacks are shared tuples, so the grouping
    dict stays as small as the number of distinct allocation paths. `lines` maps the
    (file, line) of the program's lines that ran statements to the statements' keys: a
    traceback through one of them charges its bytes to that statement (the most recent
    such frame decides). With `overhead`, what the allocators add to those bytes too
    (see attribution.overhead).
    """
    grouped: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for trace in traces:
        size = trace[1]
        entry = grouped[(trace[2], size >= LIST_BLOCK_BYTES)]
        entry[0] += size
        entry[1] += 1
    categories = dict.fromkeys(TRACED, 0)
    counts = dict.fromkeys(TRACED, 0)
    sites: dict[tuple[str, str, str], Site] = {}
    queries: dict[object, dict[str, int]] = defaultdict(dict)
    heaviest_path: dict[tuple[str, str, str], int] = {}  # a site shows its largest path
    for (frames, large), (size, count) in grouped.items():
        if any(_is_measuring(filename) for filename, _ in frames):
            continue
        category, depth = classify(frames, LIST_BLOCK_BYTES if large else 0)
        categories[category] += size
        counts[category] += count
        if lines:
            query = next((lines[frame] for frame in frames if frame in lines), None)
            if query is not None:
                by_query = queries[query]
                by_query[category] = by_query.get(category, 0) + size
        filename, lineno = frames[max(depth, 0)] if frames else ("<unknown>", 0)
        # Naming the function means parsing its file. An import's module code (every
        # module imported while tracing) is named by what it is; other_python, which
        # reaches into every library, is grouped by file and named after its heaviest
        # path once the sites shown are chosen.
        if is_import(frames):
            function = IMPORT_SITE
        elif category == OTHER_PYTHON:
            function = ""
        else:
            function = function_at(filename, lineno)
        key = (category, short_path(filename), function)
        site = sites.get(key)
        if site is None:
            site = sites[key] = Site(category, key[1], key[2], lineno)
        if size > heaviest_path.get(key, -1):
            heaviest_path[key] = size
            site.line = lineno
            site.frames = frames
        site.size += size
        site.count += count
    top: list[Site] = []
    for category in TRACED:
        ranked = sorted((s for s in sites.values() if s.category == category),
                        key=lambda s: s.size, reverse=True)
        top.extend(ranked[:SITES_PER_CATEGORY])
    for site in top:  # only the sites shown get their traceback formatted
        site.traceback = [_format_frame(f, n) for f, n in site.frames[:TRACEBACK_FRAMES_KEPT]]
        if not site.function and site.frames:
            site.function = function_at(site.frames[0][0], site.frames[0][1])
    added, in_glibc = allocation_costs(traces) if overhead else (None, None)
    return Breakdown(total=sum(categories.values()), categories=categories, counts=counts,
                     sites=top, queries=dict(queries), overhead=added, in_glibc=in_glibc,
                     traces=len(traces))

