"""Short, machine-independent names for source files in records and reports."""

from __future__ import annotations

import os
import sysconfig
from functools import lru_cache

_STDLIB = sysconfig.get_paths()["stdlib"].replace("\\", "/").rstrip("/") + "/"


@lru_cache(maxsize=8192)
def short_path(filename: str) -> str:
    """`sqlalchemy/orm/loading.py` for installed packages, `<stdlib>/...` for the standard
    library, a path relative to the working directory for the user's own files."""
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    if path.startswith(_STDLIB):
        return "<stdlib>/" + path[len(_STDLIB):]
    if "/src/sqldiag/" in path:
        return "sqldiag/" + path.rsplit("/src/sqldiag/", 1)[1]
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def install_prefixes(*kinds: str) -> tuple[str, ...]:
    """The folders of these sysconfig install paths ("stdlib", "purelib", ...), each as
    configured and resolved, ending in a separator: for `str.startswith`."""
    paths = sysconfig.get_paths()
    return tuple({folder + os.sep for kind in kinds
                  for folder in (paths[kind], os.path.realpath(paths[kind]))})
