"""`sqldiag run` on an asyncio program: AsyncSession over aiomysql, asyncmy and asyncpg.

asyncpg and asyncmy decode rows in compiled code that has no Python frames: the rules
charge the event loop's data_received callback and SQLAlchemy's awaited execute. These
tests pin down that rows land in driver_rows and orm_objects, not in other_python.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_view
from sqlalchemy import Integer, String, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqldiag.capture import whole_results

PROGRAM = Path(__file__).parent / "programs" / "async_load.py"
ROWS = 5000  # enough that a load is well above what importing the stack traces
ASYNC_DRIVERS = {"aiomysql": "mysql_url", "asyncmy": "mysql_url", "asyncpg": "pg_url"}


@pytest.mark.parametrize("driver", sorted(ASYNC_DRIVERS))
def test_asyncio_program_is_attributed(request, tmp_path, driver):
    importlib.import_module(driver)  # a test extra: missing means a broken install
    sync_url = make_url(request.getfixturevalue(ASYNC_DRIVERS[driver]))
    url = sync_url.set(drivername=f"{sync_url.get_backend_name()}+{driver}")
    url_text = url.render_as_string(hide_password=False)
    plain = subprocess.run([sys.executable, str(PROGRAM), url_text, str(ROWS)],
                           capture_output=True, text=True, check=False, timeout=120)
    # traced: these are known answers for the rules that charge compiled drivers' rows
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--trace-depth", "8",
                          str(PROGRAM), url_text, str(ROWS)], capture_output=True, text=True,
                         check=False, cwd=tmp_path, timeout=300)
    assert plain.returncode == 0 and run.returncode == 0, run.stderr
    assert run.stdout == plain.stdout == f"loaded [{ROWS}, {ROWS}, {ROWS}] {plain.stdout.split()[-1]}\n"

    record = run_view(next((tmp_path / "reports").iterdir()))
    peak, end = record["breakdowns"]["peak"], record["breakdowns"]["end"]
    cats = peak["categories"]
    assert cats["orm_objects"] > ROWS * 300, cats  # at least one whole load was alive
    assert cats["driver_rows"] > ROWS * 120, cats
    assert cats["identity_map"] > 0
    # the lists were dropped when the program ended: the rows are gone, and what stays
    # (imports, caches) is not charged to rows
    left = end["categories"]
    assert left["orm_objects"] + left["driver_rows"] < 0.05 * (cats["orm_objects"]
                                                                 + cats["driver_rows"]), left
    # nothing row-sized is left in other_python at the places compiled drivers hide behind
    hidden = [s for s in peak["sites"] if s["category"] == "other_python"
              and ("selector_events" in s["file"] or s["function"] == "_execute_async")
              and s["size"] > 64 * ROWS]
    assert not hidden, hidden


def test_asyncio_program_untraced(request, tmp_path):
    """By default nothing is traced: the censuses between the event loop's steps see the
    loads the three sessions hold."""
    url = make_url(request.getfixturevalue("pg_url")).set(drivername="postgresql+asyncpg")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--json", str(PROGRAM),
                          url.render_as_string(hide_password=False), str(ROWS)],
                         capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert record["measurement"]["method"] == "census"
    cats = record["categories"]["peak"]
    assert cats["orm_objects"] > 2 * ROWS * 300, cats  # two loads and more were alive
    assert cats["driver_rows"] > 2 * ROWS * 120, cats


class ToldBase(DeclarativeBase):
    pass


class Reading(ToldBase):
    __tablename__ = "told_readings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(40))


def test_results_streamed_by_tasks_at_once_are_each_told_whole(pg_url):
    """Four tasks stream ORM results at once (server-side cursors, no prebuffering): each
    builds its chunk in its own greenlet while the others' builds wait on the network in
    the same thread. Marked per thread, a build that ended while another was under way
    counted as nested, and two of the four results were never told of (no census as
    they were handed over)."""
    async def main() -> list[int]:
        url = make_url(pg_url).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(ToldBase.metadata.drop_all)
                await conn.run_sync(ToldBase.metadata.create_all)
                await conn.execute(insert(Reading), [{"id": i, "label": f"reading {i}"}
                                                     for i in range(1, 1501)])

            async def load() -> int:
                async with AsyncSession(engine) as session:
                    streamed = await session.stream_scalars(select(Reading))
                    return len(await streamed.all())

            return await asyncio.gather(*(load() for _ in range(4)))
        finally:
            async with engine.begin() as conn:
                await conn.run_sync(ToldBase.metadata.drop_all)
            await engine.dispose()

    told: list[int] = []
    whole_results.listen(told.append)
    try:
        loaded = asyncio.run(main())
    finally:
        whole_results.unlisten(told.append)
    assert loaded == [1500] * 4
    assert told.count(1500) == 4, told
    assert not whole_results._building
