"""Map (file, line) to the enclosing function: tracemalloc frames carry no function name.

Function spans come from parsing the file with `ast` (20-30 ms for a large SQLAlchemy
module, paid for every file a reduction meets, in every traced process). They are kept
in the user cache folder, keyed by path, size and modification time, so that a run's
later processes, and later runs, read them instead.
"""

from __future__ import annotations

import ast
import bisect
import json
import os
import sys
from functools import lru_cache

Spans = tuple[list[int], list[tuple[int, int, str]]]

_CACHE_NAME = f"function-spans-py{sys.version_info[0]}{sys.version_info[1]}.json"
_disk: dict[str, list] | None = None  # path -> [mtime_ns, size, spans], loaded once
_dirty = False
_touched: set[str] = set()  # files this process looked up
MAX_CACHED_FILES = 4000  # past this, the file keeps only what the last process used


def _cache() -> dict[str, list]:
    global _disk
    if _disk is None:
        _disk = {}
        try:
            from sqldiag.cache import cache_dir

            loaded = json.loads((cache_dir() / _CACHE_NAME).read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                _disk = loaded
        except (OSError, ValueError):
            pass
    return _disk


def save_cache() -> None:
    """Write the spans parsed by this process (atomically; a lost race only costs a parse)."""
    global _dirty
    if not _dirty or _disk is None:
        return
    try:
        from sqldiag.cache import cache_dir
        from sqldiag.record.store import write_atomic

        kept = _disk if len(_disk) <= MAX_CACHED_FILES else {
            path: entry for path, entry in _disk.items() if path in _touched}
        write_atomic(cache_dir() / _CACHE_NAME, json.dumps(kept).encode("utf-8"))
        _dirty = False
    except OSError:
        pass


def _parse_spans(filename: str) -> list[tuple[int, int, str]]:
    try:
        with open(filename, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    spans: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.append((start, node.end_lineno or node.lineno, node.name))
    spans.sort()
    return spans


@lru_cache(maxsize=2048)
def _function_spans(filename: str) -> Spans:
    """(sorted start lines, spans) of every function in the file; empty if unreadable."""
    global _dirty
    try:
        stat = os.stat(filename)
    except (OSError, ValueError):
        return [], []
    cache = _cache()
    entry = cache.get(filename)
    spans = None
    if (isinstance(entry, list) and len(entry) == 3 and entry[0] == stat.st_mtime_ns
            and entry[1] == stat.st_size):
        spans = _valid(entry[2])
    if spans is None:
        spans = _parse_spans(filename)
        cache[filename] = [stat.st_mtime_ns, stat.st_size, spans]
        _dirty = True
    _touched.add(filename)
    return [s[0] for s in spans], spans


def _valid(stored: object) -> list[tuple[int, int, str]] | None:
    """Spans read back from the cache file, or None when they are not well formed."""
    if not isinstance(stored, list):
        return None
    spans = []
    for span in stored:
        if (not isinstance(span, list) or len(span) != 3 or not isinstance(span[0], int)
                or not isinstance(span[1], int) or not isinstance(span[2], str)):
            return None
        spans.append((span[0], span[1], span[2]))
    return spans


def function_at(filename: str, lineno: int) -> str:
    """The innermost function whose body holds the line, or '<module>'."""
    starts, spans = _function_spans(filename)
    best = "<module>"
    best_len = None
    # spans that start at or before the line; the innermost is the shortest that covers it
    for start, end, name in spans[: bisect.bisect_right(starts, lineno)]:
        if start <= lineno <= end and (best_len is None or end - start < best_len):
            best, best_len = name, end - start
    return best
