"""Seeding: deterministic realistic rows, skipped when present, other tables left alone."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, func, select, text

from sqldiag.errors import SqldiagError
from sqldiag.workload.schema import build_schema
from sqldiag.workload.seeding import ensure_seeded, generate_rows


def test_rows_are_deterministic_and_realistic():
    first = list(generate_rows(2000))
    assert first == list(generate_rows(2000))
    for row in first:
        assert re.fullmatch(r"[A-Z][a-z]{7,11}", row["name"])
        assert row["sex"] in ("M", "F")
        assert 40 <= len(row["address"]) <= 60
        assert 18 <= row["age"] <= 90
    assert [r["id"] for r in first] == list(range(1, 2001))
    assert len({r["name"] for r in first}) > 1900


def test_text_bytes_sets_address_length():
    lengths = [len(r["address"]) for r in generate_rows(500, text_bytes=650)]
    assert min(lengths) >= 585 and max(lengths) <= 715
    assert 620 <= sum(lengths) / len(lengths) <= 680


def test_seed_then_skip_then_reseed_on_new_size(any_url):
    engine = create_engine(any_url)
    schema = build_schema("seed_users")
    calls = []

    def progress(total):
        calls.append(total)
        return lambda n: None

    ensure_seeded(engine, schema, 1200, None, progress)
    assert ensure_seeded(engine, schema, 1200, None, progress) is False  # already there
    assert calls == [1200]
    ensure_seeded(engine, schema, 700, None, progress)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.table)).scalar() == 700
        address = conn.execute(select(schema.table.c.address).where(
            schema.table.c.id == 5)).scalar()
    assert address == list(generate_rows(5))[-1]["address"]
    engine.dispose()


def test_table_of_another_shape_is_left_untouched(any_url):
    engine = create_engine(any_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS foreign_users"))
        conn.execute(text("CREATE TABLE foreign_users (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(text("INSERT INTO foreign_users VALUES (1, 'a@example.com')"))
    with pytest.raises(SqldiagError, match="another shape.*--table"):
        ensure_seeded(engine, build_schema("foreign_users"), 100, None)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT email FROM foreign_users")).all() == [("a@example.com",)]
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE foreign_users"))
    engine.dispose()


def test_same_shape_table_not_ours_is_never_refilled(sqlite_url, foreign_users):
    foreign_users(sqlite_url, "their_users", 10)
    engine = create_engine(sqlite_url)
    schema = build_schema("their_users")
    assert ensure_seeded(engine, schema, 10, None) is False  # used as it is
    with pytest.raises(SqldiagError, match="not created by sqldiag"):
        ensure_seeded(engine, schema, 50, None)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.table)).scalar() == 10
    engine.dispose()


def test_seeding_100k_rows_into_sqlite_is_fast(tmp_path):
    """Well under 10 s for 100,000 rows (batched multi-row inserts); a generous bound."""
    import time

    engine = create_engine(f"sqlite:///{tmp_path / 'big.sqlite3'}")
    started = time.perf_counter()
    ensure_seeded(engine, build_schema("users"), 100_000, None)
    assert time.perf_counter() - started < 20
    engine.dispose()
