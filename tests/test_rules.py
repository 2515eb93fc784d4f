"""The category rules on tracebacks shaped like SQLAlchemy 2.0/2.1, PyMySQL, sqlite3, psycopg.

Library files are written into a fake site-packages so that each rule is exercised on
the function names and source lines the real releases have, whichever is installed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sqldiag.capture.attribution.functions import function_at
from sqldiag.capture.attribution.rules import LIST_BLOCK_BYTES, RULES, classify
from sqldiag.record.categories import (
    DRIVER_ROWS,
    IDENTITY_MAP,
    ORM_OBJECTS,
    OTHER_PYTHON,
    RESULT_LISTS,
    SQLALCHEMY_ROWS,
    STATEMENT_CACHE,
)

# Minimal copies of the shapes that matter, per release (function names, key lines).
SOURCES = {
    # SQLAlchemy 2.0: ORM loading builds Row objects via _raw_all_rows
    "sqlalchemy/engine/result.py": '''
        class Result:
            def all(self):
                return self._allrows()

            def _raw_all_rows(self):
                rows = self._fetchall_impl()
                return [make_row(row) for row in rows]
        ''',
    "sqlalchemy/engine/cursor.py": '''
        class CursorFetchStrategy:
            def fetchall(self, result, dbapi_cursor):
                rows = dbapi_cursor.fetchall()
                return rows

        class CursorResultMetaData:
            def _merge_cursor_description(self, description):
                return [d for d in description]
        ''',
    "sqlalchemy/orm/loading.py": '''
        def instances(cursor, context):
            def chunks(size):
                fetch = cursor._raw_all_tuples()
                rows = [proc(row) for row in fetch]
                return rows

        def _instance_processor():
            def _instance(row):
                identitykey = (
                    identity_class,
                    primary_key_getter(row),
                    identity_token,
                )
                instance = mapper.class_manager.new_instance()
                dict_ = instance_dict(instance)
                return instance
        ''',
    "sqlalchemy/orm/state.py": '''
        class InstanceState:
            def __init__(self, obj, manager):
                self.committed_state = {}
        ''',
    "sqlalchemy/orm/identity.py": '''
        class WeakInstanceDict:
            def _add_unpresent(self, state, key):
                self._dict[key] = state
        ''',
    "sqlalchemy/sql/compiler.py": '''
        class SQLCompiler:
            def __init__(self, dialect, statement):
                self.string = self.process(statement)
        ''',
    "sqlalchemy/util/langhelpers.py": '''
        class memoized_property:
            def __get__(self, obj, cls):
                obj.__dict__[self.__name__] = result = self.fget(obj)
                return result
        ''',
    "pymysql/connections.py": '''
        class MySQLResult:
            def _read_row_from_packet(self, packet):
                row = []
                return tuple(row)
        ''',
    "psycopg/cursor.py": '''
        class Cursor:
            def fetchall(self):
                records = self._tx.load_rows(self._pos, self.pgresult.ntuples, self._make_row)
                return records
        ''',
    "app/service.py": '''
        def handler():
            cache = {}
            return cache

        def export(cursor):
            rows = cursor.fetchall()
            return rows
        ''',
    # SQLAlchemy 2.1's asyncio adapter (2.0 has the same method in each dialect module)
    "sqlalchemy/connectors/asyncio.py": '''
        class AsyncAdapt_dbapi_cursor:
            async def _execute_async(self, operation, parameters):
                async with self._adapt_connection._execute_mutex:
                    result = await self._cursor.execute(operation, parameters)
                    return result
        ''',
    "asyncio/selector_events.py": '''
        class _SelectorSocketTransport:
            def _read_ready__data_received(self):
                data = self._sock.recv(self.max_size)
                self._protocol.data_received(data)
        ''',
    "psycopg/errors.py": '''
        _by_sqlstate = {}
        ''',
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lib") / "site-packages"
    for rel, source in SOURCES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return root


def frame(site: Path, rel: str, needle: str) -> tuple[str, int]:
    """(filename, line) of the first line containing `needle`."""
    path = site / rel
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return str(path), number
    raise AssertionError(f"{needle!r} not in {rel}")


def test_function_names_come_from_line_ranges(site):
    filename, line = frame(site, "sqlalchemy/orm/loading.py", "primary_key_getter(row)")
    assert function_at(filename, line) == "_instance"
    filename, line = frame(site, "sqlalchemy/orm/loading.py", "[proc(row)")
    assert function_at(filename, line) == "chunks"
    assert function_at(filename, 10_000) == "<module>"
    assert function_at("/no/such/file.py", 3) == "<module>"


@pytest.mark.parametrize(("stack", "block", "expected"), [
    # sqlite3 / psycopg C layer: rows are allocated under SQLAlchemy's fetch strategy
    ([("sqlalchemy/engine/cursor.py", "dbapi_cursor.fetchall()")], 64, DRIVER_ROWS),
    ([("pymysql/connections.py", "return tuple(row)")], 64, DRIVER_ROWS),
    ([("psycopg/cursor.py", "load_rows")], 64, DRIVER_ROWS),
    # identity keys are built inside _instance on their own lines
    ([("sqlalchemy/orm/loading.py", "primary_key_getter(row)")], 64, IDENTITY_MAP),
    ([("sqlalchemy/orm/identity.py", "self._dict[key] = state")], 4096, IDENTITY_MAP),
    # the mapped instance and its state
    ([("sqlalchemy/orm/loading.py", "new_instance()")], 64, ORM_OBJECTS),
    ([("sqlalchemy/orm/state.py", "committed_state")], 64, ORM_OBJECTS),
    # the ORM's list of instances; Core Rows (small) against the list holding them (large)
    ([("sqlalchemy/orm/loading.py", "[proc(row)")], 48_000, RESULT_LISTS),
    ([("sqlalchemy/engine/result.py", "return self._allrows()")], 80, SQLALCHEMY_ROWS),
    ([("sqlalchemy/engine/result.py", "return self._allrows()")], 80_000, RESULT_LISTS),
    ([("sqlalchemy/engine/result.py", "[make_row(row)")], 72, SQLALCHEMY_ROWS),  # 2.0 ORM path
    ([("sqlalchemy/engine/cursor.py", "[d for d in description]")], 64, SQLALCHEMY_ROWS),
    ([("sqlalchemy/sql/compiler.py", "self.process")], 64, STATEMENT_CACHE),
    # helpers decide nothing: the caller does
    ([("sqlalchemy/util/langhelpers.py", "self.fget(obj)"),
      ("sqlalchemy/orm/state.py", "committed_state")], 64, ORM_OBJECTS),
    ([("app/service.py", "cache = {}")], 64, OTHER_PYTHON),
    # a compiled driver's fetch called straight from the user's code
    ([("app/service.py", "cursor.fetchall()")], 64, DRIVER_ROWS),
    # compiled asyncio drivers: asyncmy reads the result inside the awaited execute,
    # asyncpg decodes rows in the event loop's callback (no Python frame of its own)
    ([("sqlalchemy/connectors/asyncio.py", "await self._cursor.execute")], 64, DRIVER_ROWS),
    ([("asyncio/selector_events.py", "self._protocol.data_received(data)")], 64,
     DRIVER_ROWS),
    ([("asyncio/selector_events.py", "self._sock.recv")], 200_000, DRIVER_ROWS),
])
def test_classify(site, stack, block, expected):
    frames = [frame(site, rel, needle) for rel, needle in stack]
    category, depth = classify(frames, block)
    assert category == expected
    assert depth == (-1 if expected == OTHER_PYTHON else depth)


def test_most_recent_frame_decides(site):
    """The ORM calls into the driver: the driver's frame is the more specific."""
    frames = [frame(site, "pymysql/connections.py", "return tuple(row)"),
              frame(site, "sqlalchemy/orm/loading.py", "[proc(row)")]
    assert classify(frames, 64) == (DRIVER_ROWS, 0)


def test_list_threshold_is_a_boundary(site):
    frames = [frame(site, "sqlalchemy/engine/result.py", "return self._allrows()")]
    assert classify(frames, LIST_BLOCK_BYTES - 1)[0] == SQLALCHEMY_ROWS
    assert classify(frames, LIST_BLOCK_BYTES)[0] == RESULT_LISTS


def test_allocations_made_while_importing_are_other_python(site):
    """A driver module's import-time tables are not rows, whatever the module."""
    frames = [frame(site, "psycopg/errors.py", "_by_sqlstate"),
              ("<frozen importlib._bootstrap>", 241)]
    assert classify(frames, 64) == (OTHER_PYTHON, 0)
    assert classify(frames[:1], 64)[0] == DRIVER_ROWS  # the same line outside an import


def test_every_rule_says_why():
    assert all(rule.why for rule in RULES)


def test_stdlib_pool_results_are_result_lists():
    import multiprocessing.pool as pool_module

    filename = pool_module.__file__
    lines = Path(filename).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "self._value = [None] * length" in text)
    assert classify([(filename, line)], 800)[0] == RESULT_LISTS


def test_a_pools_own_threads_and_queues_are_not_result_lists():
    """Pool.__init__ builds the pool's threads, queues and locks (53 KB for ten threads),
    which are no task's return value."""
    import multiprocessing.pool as pool_module

    filename = pool_module.__file__
    lines = Path(filename).read_text().splitlines()
    start = next(n for n, text in enumerate(lines, 1) if text.startswith("class Pool("))
    setup = [n for n, text in enumerate(lines, 1) if n > start and
             ("self._cache = _PoolCache(" in text or "self._taskqueue = queue" in text)]
    assert len(setup) == 2 and function_at(filename, setup[0]) == "__init__"
    for line in setup:
        assert classify([(filename, line)], 800)[0] != RESULT_LISTS, lines[line - 1]


def test_the_measuring_own_allocations_are_recognised_by_their_files():
    """The probes' and the reducer's own frames are left out of every category: the
    markers must match where those modules really are."""
    import tracemalloc as tracemalloc_module

    import pympler.asizeof
    import sqlalchemy.orm.loading

    from sqldiag.capture.attribution import breakdown
    from sqldiag.capture.probes import retention, sampler

    for own in (sampler.__file__, retention.__file__, breakdown.__file__,
                tracemalloc_module.__file__, pympler.asizeof.__file__):
        assert breakdown._is_measuring(own), own
    assert not breakdown._is_measuring(sqlalchemy.orm.loading.__file__)
