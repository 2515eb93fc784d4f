"""Create and fill the users table with deterministic, realistic rows."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

from sqldiag.errors import SqldiagError
from sqldiag.workload.schema import UserSchema, check_shape

DATA_VERSION = 1
BATCH_ROWS = 5_000
_STREETS = ("Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Lake", "Hill", "Park", "River",
            "Washington", "Lincoln", "Sunset", "Highland", "Meadow", "Forest", "Church")
_SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way")
_CITIES = ("Springfield", "Riverside", "Franklin", "Greenville", "Bristol", "Clinton",
           "Fairview", "Madison", "Georgetown", "Salem", "Ashland", "Dover", "Oxford")

ProgressFn = Callable[[int], None]


def _address(rng: random.Random, text_bytes: int | None) -> str:
    base = (f"{rng.randint(1, 9999)} {rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}, "
            f"{rng.choice(_CITIES)}, apt {rng.randint(1, 999)}")
    if text_bytes is None:
        target = rng.randint(40, 60)
    else:
        spread = max(text_bytes // 10, 1)
        target = max(1, rng.randint(text_bytes - spread, text_bytes + spread))
    while len(base) < target:
        base += f", {rng.choice(_CITIES)} {rng.randint(10000, 99999)}"
    return base[:target]


def generate_rows(count: int, text_bytes: int | None = None, start: int = 0,
                  seed: int = 20160517) -> Iterator[dict]:
    """Rows id start+1..start+count; the same arguments always give the same rows."""
    rng = random.Random(seed + start)
    for row_id in range(start + 1, start + count + 1):
        name_len = rng.randint(8, 12)
        name = rng.choice(string.ascii_uppercase) + "".join(
            rng.choices(string.ascii_lowercase, k=name_len - 1))
        yield {"id": row_id, "name": name, "sex": rng.choice("MF"),
               "address": _address(rng, text_bytes), "age": rng.randint(18, 90)}


def ensure_seeded(engine: Engine, schema: UserSchema, rows: int, text_bytes: int | None,
                  progress: Callable[[int], ProgressFn] | None = None) -> bool:
    """Make the table hold exactly the requested rows; True when rows were written.

    `progress(total)` returns a function called with the number of rows just written.
    """
    table, meta = schema.table, schema.meta_table
    meta.create(engine, checkfirst=True)
    wanted = {"row_count": rows, "text_bytes": text_bytes or 0, "data_version": DATA_VERSION}
    with engine.connect() as conn:
        record = conn.execute(select(meta).where(meta.c.table_name == table.name)).mappings().first()
    exists = check_shape(engine, table.name)
    if exists and record is None:
        with engine.connect() as conn:
            present = conn.execute(select(func.count()).select_from(table)).scalar_one()
        if present == rows:
            return False  # someone else's table with the right shape and size: read it as is
        raise SqldiagError(
            f"table {table.name!r} was not created by sqldiag and holds {present} rows, not "
            f"{rows}; sqldiag does not change it: use --rows {present} or pick --table")
    if exists and record is not None and all(record[k] == v for k, v in wanted.items()):
        return False
    if not exists:
        table.create(engine)
    with engine.begin() as conn:
        conn.execute(delete(table))
        conn.execute(delete(meta).where(meta.c.table_name == table.name))
    advance = progress(rows) if progress else None
    for start in range(0, rows, BATCH_ROWS):
        batch = list(generate_rows(min(BATCH_ROWS, rows - start), text_bytes, start))
        with engine.begin() as conn:
            conn.execute(insert(table), batch)
        if advance:
            advance(len(batch))
    with engine.begin() as conn:
        conn.execute(insert(meta), [{"table_name": table.name, **wanted}])
    return True
