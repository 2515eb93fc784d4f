"""The category rules: the one place that maps traceback frames to categories.

A traceback is read from the most recent frame outwards. For each frame the rules are
tried in order; the first rule that matches the frame decides the category. A frame that
no rule matches (user code, the standard library, SQLAlchemy helpers) passes the decision
to its caller. A traceback where no frame matches is `other_python`.

Rules key on the Python frames that call into compiled code (sqlite3, psycopg's C layer,
SQLAlchemy's Cython modules), because compiled frames never appear in tracebacks.
Rules name functions, not line numbers, so that they hold across SQLAlchemy 2.0 and 2.1;
where one function allocates for two categories, a `line` pattern on the source text or
the block size (`min_block`: one large block is a list, not a row) separates them.
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from sqldiag.capture.attribution.functions import function_at
from sqldiag.record.categories import (
    DRIVER_ROWS,
    IDENTITY_MAP,
    ORM_OBJECTS,
    OTHER_PYTHON,
    RESULT_LISTS,
    SQLALCHEMY_ROWS,
    STATEMENT_CACHE,
)

# A block this large, allocated where rows are built, is the list that holds them.
LIST_BLOCK_BYTES = 4096


@dataclass(frozen=True)
class Rule:
    category: str
    path: str  # regex searched in the frame's file name, with / separators
    function: str | None = None  # regex matched against the whole function name
    line: str | None = None  # regex searched in the source line
    min_block: int | None = None  # only blocks of at least this many bytes
    why: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_re", re.compile(self.path))
        object.__setattr__(self, "_func_re", re.compile(self.function) if self.function else None)
        object.__setattr__(self, "_line_re", re.compile(self.line) if self.line else None)

    def matches(self, filename: str, lineno: int, block: int) -> bool:
        if self.min_block is not None and block < self.min_block:
            return False
        if not self._path_re.search(filename):  # type: ignore[attr-defined]
            return False
        if self._func_re is not None and not self._func_re.fullmatch(  # type: ignore[attr-defined]
                function_at(filename, lineno)):
            return False
        return self._line_re is None or bool(self._line_re.search(  # type: ignore[attr-defined]
            linecache.getline(filename, lineno)))


_DRIVERS = r"/(pymysql|MySQLdb|psycopg|psycopg2|psycopg_c|psycopg_binary|asyncpg|aiomysql|asyncmy|pg8000|mysql/connector|sqlite3)/"
_SA = r"/sqlalchemy/"

RULES: tuple[Rule, ...] = (
    # --- the driver's own code, and SQLAlchemy's calls into compiled drivers
    Rule(DRIVER_ROWS, _DRIVERS, why="pure-Python driver code building rows and values"),
    Rule(DRIVER_ROWS, _SA + r"connectors/|" + _SA + r"dialects/",
         function=r"fetch\w*|_buffer_rows|_fetch\w*|__next__|__anext__|_rows\w*|"
                  r"_execute_async|_prepare_and_execute",
         why="dialect and asyncio adapters buffering the driver's rows; a compiled asyncio "
             "driver (asyncmy) reads the whole result inside the awaited execute"),
    Rule(DRIVER_ROWS, r"/asyncio/(selector_events|proactor_events|sslproto)\.py",
         line=r"\.(data_received|buffer_updated|recv|recv_into)\(",
         why="bytes received for an asyncio protocol, and what a compiled protocol "
             "(asyncpg) decodes from them in the event loop's data_received callback, which "
             "has no Python frame of its own; any other protocol's received data lands "
             "here too"),
    Rule(DRIVER_ROWS, _SA + r"engine/cursor\.py",
         function=r"fetch\w*|_buffer_rows|_fetch\w*_impl|_raw_all_tuples|_raw_row_iterator",
         why="cursor fetch strategies: the C drivers (sqlite3, psycopg) allocate here"),
    # --- the Session's identity map
    Rule(IDENTITY_MAP, _SA + r"orm/identity\.py", why="the identity map's dict and keys"),
    Rule(IDENTITY_MAP, _SA + r"orm/loading\.py",
         line=r"identitykey = \(|primary_key_getter\(row\)|^\s*identity_(class|token),\s*$|"
              r"= ensure_no_pk\(",
         why="identity-key tuples built while loading (not `state.key = identitykey`: on "
             "3.10 and 3.13 that line grows the InstanceState's own __dict__)"),
    # --- lists that hold a whole result
    Rule(RESULT_LISTS, _SA + r"orm/loading\.py", line=r"\[proc\(row\) for row in|rows = \[",
         why="the ORM's list of loaded instances"),
    Rule(RESULT_LISTS, _SA + r"(engine|orm)/\w+\.py", min_block=LIST_BLOCK_BYTES,
         function=r"all|_allrows|_raw_all_rows|fetchall|_fetchall_impl|instances|chunks|scalars|_iter",
         why="one large block where rows are collected is the list that holds them"),
    Rule(RESULT_LISTS, r"/multiprocessing/pool\.py",
         function=r"_set|map|_map_async|get|_handle_results",
         why="a pool's result list keeps every task's return value until fetched; its "
             "result thread unpickles what the workers send"),
    Rule(RESULT_LISTS, r"/multiprocessing/pool\.py", function=r"__init__",
         line=r"\[None\]\s*\*",
         why="MapResult.__init__'s list of return values (not Pool.__init__'s threads, "
             "queues and locks, nor any other __init__ there)"),
    Rule(RESULT_LISTS, r"/concurrent/futures/process\.py",
         function=r"wait_result_broken_or_wakeup|run|process_result_item",
         why="a ProcessPoolExecutor's manager thread unpickles each worker's return value, "
             "held by its Future until fetched"),
    # --- mapped instances
    Rule(ORM_OBJECTS, _SA + r"orm/(loading|instrumentation|state|attributes|strategies|"
                      r"collections|base|dynamic|writeonly)\.py",
         why="instances, their __dict__ and InstanceState"),
    # --- SQLAlchemy Core rows
    Rule(SQLALCHEMY_ROWS, _SA + r"engine/(result|row|cursor|_row_cy|_result_cy)\.py",
         why="Row objects (built by compiled code, charged to the Python caller)"),
    # --- a C driver (sqlite3, psycopg's C layer) called straight from the user's code
    Rule(DRIVER_ROWS, r".", line=r"\.fetch(all|many|one)\(",
         why="a DB-API fetch called directly: the compiled driver allocates the rows here"),
    # --- caches of compiled SQL
    Rule(STATEMENT_CACHE, _SA + r"(sql/|engine/base\.py|engine/default\.py|orm/context\.py|"
                          r"util/_collections|util/_cy_collections|util/_collections_cy)",
         why="statement compilation, cache keys and the LRU compiled cache"),
)


def _normalise(filename: str) -> str:
    return filename.replace("\\", "/")


@lru_cache(maxsize=65536)
def _frame_category(filename: str, lineno: int, large: bool) -> tuple[str, int] | None:
    """(category, rule index) for one frame, or None when no rule matches it."""
    block = LIST_BLOCK_BYTES if large else 0
    path = _normalise(filename)
    for index, rule in enumerate(RULES):
        if rule.matches(path, lineno, block):
            return rule.category, index
    return None


# Frames of the import system: what a module allocates while it is imported (type
# registries, compiled regexes, class bodies) is import-time state, not rows, even when
# the module belongs to a driver or to SQLAlchemy. `sqldiag run` traces the program's
# imports, so this matters there.
IMPORT_FRAME = "<frozen importlib._bootstrap"


def is_import(frames: Sequence[tuple[str, int]]) -> bool:
    """True when the allocation was made while a module was being imported."""
    return any(filename.startswith(IMPORT_FRAME) for filename, _ in frames)


def classify(frames: Sequence[tuple[str, int]], block: int = 0) -> tuple[str, int]:
    """Category of an allocation and the index of the frame that decided it.

    `frames` are (filename, lineno) pairs, most recent first (tracemalloc's raw order).
    An allocation made while a module is imported is other_python, decided by its
    innermost frame (index 0). The index is -1 when no frame matched and the category
    is other_python.
    """
    if is_import(frames):
        return OTHER_PYTHON, 0
    large = block >= LIST_BLOCK_BYTES
    for depth, (filename, lineno) in enumerate(frames):
        found = _frame_category(filename, lineno, large)
        if found is not None:
            return found[0], depth
    return OTHER_PYTHON, -1
