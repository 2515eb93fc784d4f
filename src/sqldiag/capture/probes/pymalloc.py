"""pymalloc's own view, parsed: arenas, blocks in use, free blocks and pools, overhead.

CPython prints these only to its C stderr (sys._debugmallocstats); allocator.reading()
points the C file descriptor 2 at a file for the call and hands the text here. Free
blocks and free pools inside an arena stay in RSS until the whole arena is empty, which
is the usual reason RSS stays up after every object was freed.
"""

from __future__ import annotations

import re

_FIELDS = {
    "arenas": re.compile(r"^# arenas allocated current\s*=\s*([\d,]+)", re.MULTILINE),
    "arena_bytes": re.compile(r"^\d+ arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", re.MULTILINE),
    "used_bytes": re.compile(r"^# bytes in allocated blocks\s*=\s*([\d,]+)", re.MULTILINE),
    "free_block_bytes": re.compile(r"^# bytes in available blocks\s*=\s*([\d,]+)", re.MULTILINE),
    "free_pool_bytes": re.compile(r"^\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)", re.MULTILINE),
}
# What pymalloc's arenas spend on themselves: pool headers, blocks rounded up to their
# size class, and the alignment of arenas to pools (3.10 to 3.13 print all three).
_OVERHEAD = re.compile(r"^# bytes lost to (?:pool headers|quantization|arena alignment)"
                       r"\s*=\s*([\d,]+)", re.MULTILINE)


def parse_stats(text: str) -> dict[str, int] | None:
    """pymalloc's figures from sys._debugmallocstats's text, or None without arenas."""
    stats = {}
    for name, pattern in _FIELDS.items():
        match = pattern.search(text)
        stats[name] = int(match.group(1).replace(",", "")) if match else 0
    stats["overhead_bytes"] = sum(int(m.replace(",", "")) for m in _OVERHEAD.findall(text))
    return stats if stats["arena_bytes"] else None
