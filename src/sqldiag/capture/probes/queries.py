"""Which query, from which line: a ledger of the SQL statements a program runs.

Once the program has imported SQLAlchemy's ORM (nothing of it is imported here before),
`QueryLedger.install()` listens to every Engine's `before_cursor_execute` and
`after_execute` events and wraps the ORM's run counter
(`sqlalchemy.orm.loading._new_runid`, called once when a query's rows start to load):

  before_cursor_execute  the statement, its literal values taken out, and the program's
                         own frame that ran it (the first frame outside SQLAlchemy, the
                         drivers, the standard library and sqldiag): its key; executions
  after_execute          rows the driver reports for it (cursor.rowcount), and its
                         result's metadata, which every Core Row it makes refers to
  _new_runid             the run id each loaded instance keeps in `InstanceState.runid`,
                         filed under the key of the statement this thread ran last

A census then charges each sampled mapped instance (and the row values and identity key
it holds) to the statement whose run loaded it. Bound parameter values are never seen
by the ledger: it reads the statement's text, which holds placeholders, and replaces
any literal in it (quoted strings, numbers) with `?`.
"""

from __future__ import annotations

import functools
import linecache
import os
import re
import sys
import threading
import weakref
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from sqldiag.capture.attribution.paths import install_prefixes
from sqldiag.capture.program_imports import AfterImport, imported, imported_attribute

MAX_STATEMENT = 300  # characters kept of a normalized statement
# A long-running service runs without end: the ledger keeps at most this many ORM runs
# (the oldest are forgotten: instances they loaded are no longer charged to a statement)
# and prunes its cursors of dead ones past this many.
MAX_RUNS = 100_000
MAX_CURSORS = 10_000
# Packages whose frames are never the line to blame: the database stack, our own and the
# test runner's, and libraries that run a query on the program's behalf (pandas.read_sql,
# SQLModel's Session.exec, Flask-SQLAlchemy's paginate): the program's call is the line
# it can change.
_LIBRARIES = frozenset({"sqlalchemy", "pymysql", "MySQLdb", "psycopg2", "psycopg", "asyncpg",
                        "aiomysql", "asyncmy", "aiosqlite", "greenlet", "sqldiag", "pytest",
                        "_pytest", "pluggy", "runpy", "importlib", "pandas", "polars",
                        "sqlmodel", "flask_sqlalchemy", "databases", "alembic",
                        "sqlalchemy_utils", "geoalchemy2", "dask", "modin"})
_STDLIB = install_prefixes("stdlib", "platstdlib")
# In a virtual environment "platstdlib" is the environment's lib folder, which holds its
# site-packages: a program installed there (and the built-in scenarios) is its own code.
_SITE_PACKAGES = install_prefixes("purelib", "platlib")
_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
_SPACE = re.compile(r"\s+")


# string literals of Python (any prefix, single or triple quoted) and numbers
_PY_LITERAL = re.compile(r"""(?:\b[rRbBuUfF]{1,2})?(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")|\b\d+(?:\.\d+)?\b""")


def mask_literals(line: str) -> str:
    """A line of Python with its string and number literals replaced by `?`, capped."""
    text = _PY_LITERAL.sub("?", line.strip())
    return text if len(text) <= MAX_STATEMENT else text[:MAX_STATEMENT - 3] + "..."


@functools.lru_cache(maxsize=2048)  # a service runs the same few statements again and again
def normalize(statement: str) -> str:
    """The statement with every literal replaced by `?`, spaces collapsed, capped."""
    text = _SPACE.sub(" ", _LITERAL.sub("?", statement)).strip()
    return text if len(text) <= MAX_STATEMENT else text[:MAX_STATEMENT - 3] + "..."


class CallSite(NamedTuple):
    """A line of the program's own code. A tuple, not a dataclass: it is hashed as part
    of a statement's key at every execution, and a tuple hashes in C."""

    file: str
    line: int
    function: str
    source: str = ""  # the line's code, its literals masked (a literal can be a secret)


def _own_code(frame) -> bool:
    """A frame of the program's own code (not a library's, the stdlib's or sqldiag's)."""
    module = str(frame.f_globals.get("__name__", ""))
    if module.partition(".")[0] in _LIBRARIES:
        return False
    filename = frame.f_code.co_filename
    if filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    return not path.startswith(_STDLIB) or path.startswith(_SITE_PACKAGES)


# Keyed by id(code), the code object kept beside (so that its id is not reused): a code
# object's own hash is computed from its whole content on every lookup.
_SITES: dict[int, tuple[object, bool]] = {}  # code -> own code (a frame's code decides)
# (code object, line) -> its call site: a service runs the same lines again and again
_CALL_SITES: dict[tuple[int, int], tuple[object, CallSite]] = {}
MAX_CALL_SITES = 10_000


def call_site(depth: int = 2) -> CallSite | None:
    """The program's frame that is running the current statement. Under asyncio,
    SQLAlchemy runs the statement in a greenlet whose frames stop at its start: the
    program's frame is then found where the greenlet's parent waits (in the coroutine
    that awaited the statement)."""
    frame = sys._getframe(depth)
    found = _own_frame(frame)
    greenlet = sys.modules.get("greenlet")
    current = greenlet.getcurrent() if found is None and greenlet is not None else None
    while found is None and current is not None and current.parent is not None:
        current = current.parent
        found = _own_frame(current.gr_frame)
    if found is None:
        return None
    code, number = found.f_code, found.f_lineno
    known = _CALL_SITES.get((id(code), number))
    site = known[1] if known is not None and known[0] is code else None
    if site is None:
        line = linecache.getline(code.co_filename, number)
        site = CallSite(_short(code.co_filename), number, code.co_name, mask_literals(line))
        if len(_CALL_SITES) < MAX_CALL_SITES:
            _CALL_SITES[(id(code), number)] = (code, site)
    return site


def _own_frame(frame):
    """The first frame of the program's own code from `frame` outwards, or None."""
    while frame is not None:
        code = frame.f_code
        known = _SITES.get(id(code))
        if known is not None and known[0] is code:
            own = known[1]
        else:
            own = _own_code(frame)
            _SITES[id(code)] = (code, own)
        if own:
            return frame
        frame = frame.f_back
    return None


def _short(filename: str) -> str:
    """The file as the user knows it: relative to the working folder when inside it, to
    site-packages when installed there (`myapp/jobs.py`)."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        relative = ".."
    if not relative.startswith(".."):
        return relative
    path = os.path.realpath(filename)
    prefix = next((p for p in _SITE_PACKAGES if path.startswith(p)), None)
    return path[len(prefix):] if prefix else filename


@dataclass
class StatementStats:
    statement: str
    site: CallSite | None
    executions: int = 0
    rows: int = 0


Key = tuple[str, CallSite | None]
CORE_MODULE = "sqlalchemy"
ORM_MODULE = "sqlalchemy.orm"
_ACTIVE: list[QueryLedger] = []  # the ledgers listening now (capture() can nest)
# the metadata classes of results without rows (DML): nothing to note
_NO_ROWS: set[type] = set()


def _listen_all() -> None:
    """SQLAlchemy has just been imported: every active ledger listens."""
    for ledger in tuple(_ACTIVE):
        ledger._listen(importing=True)


def _count_runs(importing: bool = False) -> bool:
    """Wrap the ORM's run counter once per process, for every active ledger; True when
    done (or the ORM has no such counter)."""
    if not imported(ORM_MODULE, importing):
        return False
    loading = sys.modules.get("sqlalchemy.orm.loading")
    counter = getattr(loading, "_new_runid", None)
    if not callable(counter) or getattr(counter, "_sqldiag", False):
        return True

    def new_runid() -> int:
        runid = counter()
        for ledger in tuple(_ACTIVE):
            ledger._ran(runid, sys._getframe(1))
        return runid

    new_runid._sqldiag = True  # type: ignore[attr-defined]
    loading._new_runid = new_runid  # type: ignore[union-attr]
    return True


def _count_runs_imported() -> None:
    _count_runs(importing=True)


class QueryLedger:
    """Statements by (normalized text, call site), and ORM runs by the statement that
    loaded them. Safe to use from many threads: each thread keeps its own last key.

    `every_statement=False` (a live service's ledger) listens to no Engine event, which
    costs every statement SQLAlchemy's event dispatch: only ORM runs are counted, each
    keyed when it starts from the statement its loader is reading (Core statements,
    row counts and driver buffers are then not known)."""

    def __init__(self, every_statement: bool = True,
                 renamed: dict[str, str] | None = None) -> None:
        self.every_statement = every_statement
        # names replaced in each statement's text before it is normalized (a scenario's
        # run on a copy of a table files its statements under the full table's name)
        self._renamed = tuple((renamed or {}).items())
        self.stats: dict[Key, StatementStats] = {}
        self.runs: dict[int, Key] = {}
        self.cursors: dict[int, tuple[weakref.ref, Key]] = {}  # DB-API cursor -> last key
        # a DB-API cursor's result object -> the statement that made it (PyMySQL's
        # `MySQLResult` holds the rows, and its connection keeps it after the cursor is gone)
        self.results: dict[int, tuple[weakref.ref, Key]] = {}
        # a Core result's metadata -> (its keymap's id, the key of the statement)
        self.parents: dict[int, tuple[int, Key]] = {}
        self.threads: dict[int, Key] = {}  # thread ident -> the statement it ran last
        # engine id -> its URL (no password), dialect and driver, from its first statement
        self.databases: dict[int, tuple[str, str, str]] = {}
        self.installed = False
        self._local = threading.local()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen now if the program has imported SQLAlchemy, else as soon as it has (an
        import hook: nothing of SQLAlchemy is imported here before); the same for the
        ORM's run counter."""
        _ACTIVE.append(self)
        if not self._listen():
            AfterImport.watch(CORE_MODULE, _listen_all)
        if not _count_runs():
            AfterImport.watch(ORM_MODULE, _count_runs_imported)

    def stop(self) -> None:
        """Stop listening; what was counted stays."""
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self.installed:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            event.remove(Engine, "before_cursor_execute", self._before)
            event.remove(Engine, "after_execute", self._after)
            self.installed = False

    def _listen(self, importing: bool = False) -> bool:
        """Listen to every Engine, if the program has imported SQLAlchemy (whole, or
        `importing`: it has just run); True once done."""
        if self.installed or not self.every_statement:
            return True
        if not imported(CORE_MODULE, importing) or self not in _ACTIVE:
            return False
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        no_rows = imported_attribute("sqlalchemy.engine.cursor", "_NoResultMetaData")
        if isinstance(no_rows, type):
            _NO_ROWS.update((no_rows, *no_rows.__subclasses__()))
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_execute", self._after)
        self.installed = True
        return True

    def _ran(self, runid: int, loader) -> None:
        """An ORM query run started in this thread: its rows are the last statement's
        (`loader`: the frame of loading.instances(cursor, context), which started it)."""
        key = getattr(self._local, "key", None) if self.every_statement \
            else self._key_of_run(loader)
        if key is not None:
            runs = self.runs
            runs[runid] = key
            if len(runs) > MAX_RUNS:
                self._keep_newest(runs, MAX_RUNS // 2)

    def _key_of_run(self, loader) -> Key | None:
        """The key of an ORM run, from its loader's frame: the statement its cursor ran
        and the program's frame that is running it."""
        try:
            context = loader.f_locals["cursor"].context
            statement = context.statement
            engine = context.root_connection.engine
        except (KeyError, AttributeError):  # another SQLAlchemy than 2.x: not known
            return None
        key = (normalize(self._named(statement)), call_site(3))
        self._count(key, engine)
        self.threads[threading.get_ident()] = key
        return key

    def _count(self, key: Key, engine) -> None:
        """One more execution of `key`, on `engine`."""
        if id(engine) not in self.databases:
            self.databases[id(engine)] = (engine.url.render_as_string(hide_password=True),
                                          engine.dialect.name, engine.dialect.driver)
        stats = self.stats.get(key)
        if stats is None:
            with self._lock:
                stats = self.stats.setdefault(key, StatementStats(key[0], key[1]))
        stats.executions += 1

    def _named(self, statement: str) -> str:
        for old, new in self._renamed:
            statement = statement.replace(old, new)
        return statement

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        key = (normalize(self._named(statement) if self._renamed else statement),
               call_site(3))
        self._count(key, conn.engine)
        self._local.key = key
        self.threads[threading.get_ident()] = key
        self._remember(self.cursors, cursor, key)

    def _remember(self, mapping: dict[int, tuple[weakref.ref, Key]], obj: object,
                  key: Key) -> None:
        """File `obj` (a cursor, a connection) under `key`, weakly; past MAX_CURSORS
        entries the dead ones go, then the oldest."""
        if obj is None:
            return
        try:
            mapping[id(obj)] = (weakref.ref(obj), key)
        except TypeError:  # a type without weak references: not followed
            return
        if len(mapping) > MAX_CURSORS:
            with self._lock:
                for ident, (ref, _) in list(mapping.items()):
                    if ref() is None:
                        mapping.pop(ident, None)
            self._keep_newest(mapping, MAX_CURSORS // 2)  # all alive: the oldest go

    def _after(self, conn, clause, multiparams, params, options, result) -> None:
        key = getattr(self._local, "key", None)  # this thread's statement: this one's
        if key is None:
            return
        cursor = getattr(getattr(result, "context", None), "cursor", None)
        count = getattr(cursor, "rowcount", -1)
        if isinstance(count, int) and count > 0:
            self.stats[key].rows += count
        # A metadata object takes no weak reference, and a strong one would keep it
        # alive: its id, checked with its keymap's id (an address is reused once freed).
        metadata = getattr(result, "_metadata", None)
        if metadata is None or type(metadata) in _NO_ROWS:
            return
        # Filed now, when made: later its holders change (the connection drops it at its
        # next command, a pool's rollback included) while its rows may live on.
        self._remember(self.results, getattr(cursor, "_result", None), key)
        parents = self.parents
        parents[id(metadata)] = (id(getattr(metadata, "_keymap", None)), key)
        if len(parents) > MAX_CURSORS:
            self._keep_newest(parents, MAX_CURSORS // 2)

    def _keep_newest(self, mapping: dict, count: int) -> None:
        """Forget all but the `count` newest entries (another thread may prune too)."""
        with self._lock:
            for old in list(islice(mapping, max(0, len(mapping) - count))):
                mapping.pop(old, None)

    def key_of_rows(self, metadata: object) -> Key | None:
        """The statement whose result made Rows with this metadata (`Row._parent`)."""
        known = self.parents.get(id(metadata))
        if known is None or known[0] != id(getattr(metadata, "_keymap", None)):
            return None
        return known[1]

    def lines(self) -> dict[tuple[str, int], Key]:
        """The program's lines that ran statements, as tracemalloc names a frame (the
        code's file name, the line), each with the statement it ran most often."""
        files = {site: code.co_filename for code, site in list(_CALL_SITES.values())}
        out: dict[tuple[str, int], Key] = {}
        ran: dict[tuple[str, int], int] = {}
        for key, stats in list(self.stats.items()):
            site = key[1]
            filename = files.get(site) if site is not None else None
            if filename is None:
                continue
            where = (filename, site.line)
            if stats.executions > ran.get(where, -1):
                out[where], ran[where] = key, stats.executions
        return out

    def key_of_run(self, runid: object) -> Key | None:
        return self.runs.get(runid) if isinstance(runid, int) else None

    def loading(self) -> Key | None:
        """The statement whose rows are in flight, when every thread now inside
        SQLAlchemy ran that one last (raw rows a driver returned, not yet made into
        objects, are held by such a thread's frames); None when they differ."""
        keys = set()
        for ident, frame in sys._current_frames().items():
            key = self.threads.get(ident)
            if key is None:
                continue
            while frame is not None:
                if str(frame.f_globals.get("__name__", "")).startswith("sqlalchemy."):
                    keys.add(key)
                    break
                frame = frame.f_back
        return keys.pop() if len(keys) == 1 else None

    def key_of_cursor(self, cursor: object) -> Key | None:
        """The statement a DB-API cursor ran last (its buffered rows are that one's)."""
        return _known(self.cursors, cursor)

    def key_of_result(self, result: object) -> Key | None:
        """The statement that made a driver's result object (PyMySQL's `MySQLResult`)."""
        return _known(self.results, result)


def _known(mapping: dict[int, tuple[weakref.ref, Key]], obj: object) -> Key | None:
    known = mapping.get(id(obj))
    return known[1] if known is not None and known[0]() is obj else None
