"""An order-independent checksum of the rows a scenario consumed, so that a fix can be
shown to produce the same rows as the workload it replaces."""

from __future__ import annotations

import threading
import zlib

COLUMNS = ("id", "name", "sex", "address", "age")
_MASK = (1 << 64) - 1


def _values(row: object) -> tuple:
    if hasattr(row, "_mapping"):  # a Core Row
        mapping = row._mapping  # type: ignore[attr-defined]
        return tuple(mapping[c] for c in COLUMNS if c in mapping)
    if isinstance(row, dict):
        return tuple(row[c] for c in COLUMNS if c in row)
    if isinstance(row, tuple):
        return row
    return tuple(getattr(row, c) for c in COLUMNS if hasattr(row, c))


class RowDigest:
    """`add(row)` for each row consumed: ORM objects, Core rows, dicts or tuples."""

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0
        self._lock = threading.Lock()

    def add(self, row: object) -> None:
        value = zlib.crc32(repr(_values(row)).encode("utf-8"))
        with self._lock:
            self.count += 1
            self._sum = (self._sum + value * 0x9E3779B97F4A7C15) & _MASK

    def add_all(self, rows) -> None:
        for row in rows:
            self.add(row)

    def to_dict(self) -> dict:
        return {"rows": self.count, "digest": f"{self._sum:016x}"}
