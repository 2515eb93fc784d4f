"""Byte sizes: parse what users type, format what reports show."""

from __future__ import annotations

import re

from sqldiag.errors import SqldiagError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """'300MB', '1.5G', '4096' -> bytes (binary multiples)."""
    match = _SIZE.match(text)
    if not match or match.group(2).upper() not in _UNITS:
        raise SqldiagError(f"not a size: {text!r} (use e.g. 300MB or 2GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def fmt_bytes(value: float | None) -> str:
    """Human-readable MiB-based size, e.g. '1.16 GB', '312 MB', '48 KB'."""
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1 << 30:
        return f"{sign}{value / (1 << 30):.2f} GB"
    if value >= 10 << 20:
        return f"{sign}{value / (1 << 20):.0f} MB"
    if value >= 1 << 20:
        return f"{sign}{value / (1 << 20):.1f} MB"
    if value >= 1 << 10:
        return f"{sign}{value / (1 << 10):.0f} KB"
    return f"{sign}{value:.0f} B"
