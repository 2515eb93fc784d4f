"""Map (file, line) to the enclosing function: tracemalloc frames carry no function name."""

from __future__ import annotations

import ast
import bisect
from functools import lru_cache


@lru_cache(maxsize=2048)
def _function_spans(filename: str) -> tuple[list[int], list[tuple[int, int, str]]]:
    """(sorted start lines, spans) of every function in the file; empty if unreadable."""
    try:
        with open(filename, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return [], []
    spans: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.append((start, node.end_lineno or node.lineno, node.name))
    spans.sort()
    return [s[0] for s in spans], spans


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
