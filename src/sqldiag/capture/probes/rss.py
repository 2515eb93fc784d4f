"""This process's RSS, read cheaply enough to poll from a thread."""

from __future__ import annotations

import os
from collections.abc import Callable


def rss_reader() -> Callable[[], int]:
    """A function that returns this process's RSS in bytes, from /proc/self/statm (a
    few microseconds), or from psutil where there is no /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        import psutil

        process = psutil.Process()
        return lambda: process.memory_info().rss

    def read() -> int:
        return _resident(os.pread(fd, 128, 0), page)

    return read


def rss_once() -> int:
    """This process's RSS now, read once: no file is left open (the program's process
    reads it before anything of sqldiag's is imported, and sees its own files only)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return _resident(statm.read(), os.sysconf("SC_PAGE_SIZE"))
    except OSError:
        return rss_reader()()


def _resident(statm: bytes, page: int) -> int:
    """RSS in bytes from /proc/self/statm's line (its second field, in pages)."""
    return int(statm.split()[1]) * page
