"""The C allocator's view: glibc mallinfo2 and the malloc_trim(0) probe."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from functools import lru_cache


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def glibc_version() -> str | None:
    name, version = platform.libc_ver()
    return f"{name} {version}" if name else None


def has_malloc_trim() -> bool:
    libc = _libc()
    return libc is not None and hasattr(libc, "malloc_trim")


def malloc_trim() -> bool:
    """Ask glibc to return free heap memory to the OS; False where glibc is absent."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim(0)
    return True


def malloc_arenas() -> int | None:
    """How many malloc arenas glibc has (the main one and per-thread ones), from
    malloc_info's XML; MALLOC_ARENA_MAX caps this number."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_info") or not hasattr(libc, "open_memstream"):
        return None
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                    ctypes.POINTER(ctypes.c_size_t)]
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return None
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    text = (buffer.value or b"").decode("ascii", "replace")
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(ctypes.cast(buffer, ctypes.c_void_p))
    return text.count("<heap nr=")


def mallinfo() -> dict[str, int] | None:
    """glibc's heap statistics (main arena and the others summed), or None."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "arena_bytes": info.arena,  # sbrk'd heap of all arenas
        "mmap_bytes": info.hblkhd,  # blocks served by mmap (large allocations)
        "in_use_bytes": info.uordblks,
        "free_bytes": info.fordblks,  # free chunks the allocator keeps
        "releasable_bytes": info.keepcost,
        "arenas": malloc_arenas(),
    }
