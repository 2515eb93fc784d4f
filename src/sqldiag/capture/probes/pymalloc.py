"""pymalloc's own view: arenas, blocks in use, free blocks and pools.

CPython prints these only to its C stderr (sys._debugmallocstats); the C file
descriptor 2 is pointed at a temporary file for the call and the figures are parsed.
Free blocks and free pools inside an arena stay in RSS until the whole arena is empty,
which is the usual reason RSS stays up after every object was freed.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_FIELDS = {
    "arenas": re.compile(r"^# arenas allocated current\s*=\s*([\d,]+)", re.MULTILINE),
    "arena_bytes": re.compile(r"^\d+ arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", re.MULTILINE),
    "used_bytes": re.compile(r"^# bytes in allocated blocks\s*=\s*([\d,]+)", re.MULTILINE),
    "free_block_bytes": re.compile(r"^# bytes in available blocks\s*=\s*([\d,]+)", re.MULTILINE),
    "free_pool_bytes": re.compile(r"^\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)", re.MULTILINE),
}


def pymalloc_stats() -> dict[str, int] | None:
    """Arenas and bytes of pymalloc now, or None where pymalloc is not in use."""
    if not hasattr(sys, "_debugmallocstats"):
        return None
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    stats = {}
    for name, pattern in _FIELDS.items():
        match = pattern.search(text)
        stats[name] = int(match.group(1).replace(",", "")) if match else 0
    return stats if stats["arena_bytes"] else None
