"""sqldiag's per-user cache folder: the embedded SQLite database, parsed function spans."""

from __future__ import annotations

from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    folder = Path(platformdirs.user_cache_dir("sqldiag"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
