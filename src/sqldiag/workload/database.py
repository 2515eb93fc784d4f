"""Where the workload's data lives: URL resolution, engine creation, server facts."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from sqldiag.cache import cache_dir
from sqldiag.errors import SqldiagError
from sqldiag.redact import safe_url, scrub

DEFAULT_URL_ENV = "SQLDIAG_URL"  # the database to use when --url is not given
CONNECT_TIMEOUT_S = 10

# For each SQLAlchemy driver name: the distribution a record names with its version,
# and what to pip install when it is missing.
DRIVER_DISTRIBUTIONS = {
    "pymysql": ("PyMySQL", "pymysql"),
    "mysqldb": ("mysqlclient", "mysqlclient"),
    "mysqlconnector": ("mysql-connector-python", "mysql-connector-python"),
    "asyncmy": ("asyncmy", "asyncmy"),
    "aiomysql": ("aiomysql", "aiomysql"),
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "asyncpg": ("asyncpg", "asyncpg"),
    "pg8000": ("pg8000", "pg8000"),
}


def driver_distribution(driver: str) -> str | None:
    """The installed distribution behind a SQLAlchemy driver name, if we know it."""
    entry = DRIVER_DISTRIBUTIONS.get(driver)
    return entry[0] if entry else None


def default_sqlite_path() -> Path:
    """The embedded default database: a file in the per-user cache folder."""
    return cache_dir() / "sqldiag.sqlite3"


def resolve_url(cli_url: str | None) -> URL:
    """The URL from --url, else $SQLDIAG_URL, else the embedded SQLite file."""
    raw = cli_url or os.environ.get(DEFAULT_URL_ENV) or f"sqlite:///{default_sqlite_path()}"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise SqldiagError(f"not a database URL: {scrub(raw)!r} "
                           "(expected e.g. mysql+pymysql://user@host:3306/db)") from None
    if url.drivername == "mysql":
        url = url.set(drivername="mysql+pymysql")
    elif url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise SqldiagError(f"SQLAlchemy has no dialect {url.drivername!r} (in "
                           f"{safe_url(url)!r})") from None
    except ImportError:
        pass  # a missing driver package: open_engine names the package to install
    return url


def connect_args_for(url: URL, timeout: float, probe: bool = False) -> dict:
    """Bounded connect timeouts so that a silent server fails fast.

    For the probe connection PyMySQL also gets a read timeout: its connect_timeout ends
    once TCP connects, and a server that accepts but never greets would hang forever.
    """
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "mysql" and driver == "pymysql":
        args = {"connect_timeout": timeout}
        return args | {"read_timeout": timeout} if probe else args
    if backend in ("mysql", "postgresql"):
        return {"connect_timeout": max(1, round(timeout))}
    return {}


def open_engine(url: URL, pool_size: int = 5,
                connect_timeout: float = CONNECT_TIMEOUT_S) -> Engine:
    """Create an engine sized for `pool_size` concurrent workers and check it connects
    within `connect_timeout` seconds."""
    kwargs: dict = {"connect_args": connect_args_for(url, connect_timeout)}
    if url.get_backend_name() != "sqlite":
        kwargs.update(pool_size=max(pool_size, 1), max_overflow=5)
    _probe(url, connect_timeout)
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise SqldiagError(f"SQLAlchemy has no dialect {url.drivername!r}") from None
    except ModuleNotFoundError as exc:
        package = DRIVER_DISTRIBUTIONS.get(url.get_driver_name(), (None, exc.name))[1]
        raise SqldiagError(f"the driver for {url.drivername} is not installed: "
                           f"pip install {package}") from None
    return engine


def _probe(url: URL, timeout: float) -> None:
    """Connect once, with timeouts on every step, and turn failures into one line."""
    try:
        engine = create_engine(url, poolclass=NullPool,
                               connect_args=connect_args_for(url, timeout, probe=True))
    except (NoSuchModuleError, ModuleNotFoundError):
        return  # reported with the right message by open_engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        raise SqldiagError(f"cannot connect to {safe_url(url)}: "
                           f"{scrub(reason, (url.password or '',))}") from None
    finally:
        engine.dispose()


def server_version(engine: Engine) -> str:
    """The database server's own version string."""
    backend = engine.dialect.name
    query = {"sqlite": "select sqlite_version()", "postgresql": "show server_version"}.get(
        backend, "select version()")
    try:
        with engine.connect() as conn:
            value = conn.execute(text(query)).scalar()
    except DBAPIError:
        return "unknown"
    prefix = "SQLite " if backend == "sqlite" else ""
    return f"{prefix}{value}"
