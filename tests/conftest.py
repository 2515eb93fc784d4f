"""Shared fixtures: real databases (MariaDB, PostgreSQL, SQLite) and a CLI runner.

MariaDB and PostgreSQL tests skip with a reason when no server answers, except under
CI (`SQLDIAG_REQUIRE_DBS=1`, set by .ci/run), where a missing server fails them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

MYSQL_URL = os.environ.get("SQLDIAG_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_URL = os.environ.get("SQLDIAG_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REQUIRE_DBS = os.environ.get("SQLDIAG_REQUIRE_DBS") == "1"
# The same servers through the C drivers most production services run: mysqlclient
# (`pip install ".[mysqlclient]"`, which compiles against libmariadb-dev) and psycopg2.
MYSQLDB_URL = make_url(MYSQL_URL).set(drivername="mysql+mysqldb").render_as_string(False)
PSYCOPG2_URL = make_url(PG_URL).set(drivername="postgresql+psycopg2").render_as_string(False)


def _reachable(url: str) -> str | None:
    """None when the server answers, else the reason."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def _server(url: str) -> str:
    reason = _reachable(url)
    if reason is not None:
        if REQUIRE_DBS:
            pytest.fail(f"database server required in CI but not reachable: {reason}")
        pytest.skip(f"no server at {url}: {reason}")
    return url


@pytest.fixture(scope="session")
def mysql_url() -> str:
    return _server(MYSQL_URL)


@pytest.fixture(scope="session")
def pg_url() -> str:
    return _server(PG_URL)


@pytest.fixture(scope="session")
def mysqldb_url() -> str:
    return _server(MYSQLDB_URL)


@pytest.fixture(scope="session")
def psycopg2_url() -> str:
    return _server(PSYCOPG2_URL)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'sqldiag-test.sqlite3'}"


@pytest.fixture(params=["sqlite", "mysql", "postgresql", "mysqldb", "psycopg2"])
def any_url(request) -> str:
    """Each of the three databases in turn, and the two servers again through their C
    drivers (a missing driver module skips, and fails in CI, as a missing server does)."""
    return request.getfixturevalue({"sqlite": "sqlite_url", "mysql": "mysql_url",
                                    "postgresql": "pg_url", "mysqldb": "mysqldb_url",
                                    "psycopg2": "psycopg2_url"}[request.param])


def create_foreign_users(url: str, table: str, rows: int, first_name: str | None = None) -> None:
    """A table of the users shape that sqldiag did not create (no sqldiag_tables entry),
    filled with the deterministic rows; `first_name` replaces the first row's name."""
    from sqldiag.workload.schema import build_schema
    from sqldiag.workload.seeding import generate_rows

    engine = create_engine(url)
    schema = build_schema(table)
    schema.table.create(engine)
    values = list(generate_rows(rows))
    if first_name is not None:
        values[0]["name"] = first_name
    with engine.begin() as conn:
        conn.execute(schema.table.insert(), values)
    engine.dispose()


@pytest.fixture(scope="session")
def foreign_users():
    """create_foreign_users, for tests and fixtures of any scope."""
    return create_foreign_users


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def cli(tmp_path):
    """Run `python -m sqldiag ...` as a user would; reports land in tmp_path/reports."""
    def run(*args: str, env: dict | None = None, timeout: float = 300,
            cwd: Path | None = None) -> CliResult:
        full_env = dict(os.environ)
        full_env.setdefault("XDG_CACHE_HOME", str(tmp_path / "cache"))
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "sqldiag", *args], check=False,
                              capture_output=True,
                              text=True, env=full_env, timeout=timeout, cwd=cwd or tmp_path)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
    return run


def run_view(target: str | Path) -> dict:
    """A saved run as a user's JSON sees it: the record's measured parts, with the
    analysis of this version (summary, categories, kept-alive views, verdict) beside them,
    and the leak verdict inside `repeat`."""
    from sqldiag.analysis.analyse import analyse
    from sqldiag.record.store import load_record

    record = load_record(target)
    analysis = analyse(record)
    view = record.to_json() | analysis.to_json()
    if view.get("repeat") is not None and analysis.leak is not None:
        view["repeat"] = view["repeat"] | analysis.to_json()["leak"]
    return view


def lazy_module(folder: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    """A module `name` written to `folder` and put in sys.modules unloaded, as
    importlib's LazyLoader does (it runs the module on its first attribute); returns a
    function that tells whether it has run."""
    import builtins
    import importlib.util

    flag = f"{name.upper()}_RAN"
    (folder / f"{name}.py").write_text(f"import builtins\nbuiltins.{flag} = True\n")
    monkeypatch.syspath_prepend(str(folder))
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, lazy)
    loader.exec_module(lazy)
    return lambda: hasattr(builtins, flag)
