"""The post's `users` table, its mapped class, and the check that a table is ours to use."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import registry

from sqldiag.errors import SqldiagError

# Bookkeeping of the tables sqldiag created; only these may be refilled or dropped.
META_TABLE = "sqldiag_tables"

EXPECTED_COLUMNS = {"id": "INTEGER", "name": "VARCHAR", "sex": "VARCHAR",
                    "address": "TEXT", "age": "INTEGER"}


@dataclass
class UserSchema:
    """The mapped class and the table a scenario works on."""

    metadata: MetaData
    table: Table
    User: type
    meta_table: Table


def build_schema(table_name: str = "users") -> UserSchema:
    """A fresh MetaData with the users table and a mapped `User` class."""
    metadata = MetaData()
    table = Table(
        table_name, metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(255), nullable=False),
        Column("sex", String(255), nullable=False),
        Column("address", Text, nullable=False),
        Column("age", Integer),
    )
    meta_table = Table(
        META_TABLE, metadata,
        Column("table_name", String(255), primary_key=True),
        Column("row_count", Integer, nullable=False),
        Column("text_bytes", Integer, nullable=False),
        Column("data_version", Integer, nullable=False),
    )

    class User:
        """One row of the users table, as the post maps it."""

        def __repr__(self) -> str:
            return f"<User id={self.id}>"

    registry(metadata=metadata).map_imperatively(User, table)
    return UserSchema(metadata=metadata, table=table, User=User, meta_table=meta_table)


def _type_family(sql_type: object) -> str:
    name = type(sql_type).__name__.upper()
    if "INT" in name:
        return "INTEGER"
    if name in ("TEXT", "LONGTEXT", "MEDIUMTEXT", "CLOB"):
        return "TEXT"
    if "CHAR" in name or name == "STRING":
        return "VARCHAR"
    return name


def check_shape(engine: Engine, table_name: str) -> bool | None:
    """None when the table is missing, True when it has the post's shape.

    A table of another shape raises: sqldiag never alters tables it did not create.
    """
    inspector = inspect(engine)
    if not inspector.has_table(table_name):
        return None
    columns = {c["name"].lower(): _type_family(c["type"])
               for c in inspector.get_columns(table_name)}
    if columns != EXPECTED_COLUMNS:
        found = ", ".join(f"{k} {v}" for k, v in columns.items())
        raise SqldiagError(
            f"table {table_name!r} exists with another shape ({found}); sqldiag leaves it "
            "untouched: pick another name with --table")
    return True
