"""The C allocator's view: glibc mallinfo2, the malloc_trim(0) probe, and both
allocators' figures together."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sqldiag.capture.attribution.overhead import tracemalloc_own_bytes
from sqldiag.capture.probes.gil import few_thread_switches, threads_parked
from sqldiag.capture.probes.pymalloc import parse_stats
from sqldiag.record.parts import Mallinfo, PymallocStats

# The other threads wait while the figures are read (a few ms at a GB of heap), so that
# they are of one moment.
_HOLD_S = 0.5


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


def _written_to_memory(libc: ctypes.CDLL, write: Callable[[int], object]) -> str | None:
    """What `write(stream)` writes to a C stream (a FILE *), read from memory
    (open_memstream); None where the C library has none."""
    if not hasattr(libc, "open_memstream"):
        return None
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                    ctypes.POINTER(ctypes.c_size_t)]
    stream = libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return None
    libc.fclose.argtypes = [ctypes.c_void_p]
    try:
        write(stream)
    finally:
        libc.fclose(stream)
    text = (buffer.value or b"").decode("utf-8", "replace")
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(ctypes.cast(buffer, ctypes.c_void_p))
    return text


def malloc_arenas() -> int | None:
    """How many malloc arenas glibc has (the main one and per-thread ones), from
    malloc_info's XML; MALLOC_ARENA_MAX caps this number."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_info"):
        return None
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    text = _written_to_memory(libc, lambda stream: libc.malloc_info(0, stream))
    return None if text is None else text.count("<heap nr=")


def _pymalloc_stats(libc: ctypes.CDLL) -> str | None:
    """sys._debugmallocstats()'s text, read from memory: it writes to C's `stderr`
    stream, pointed at memory for the call. Nothing else moves: the process's fd 2,
    where the program's threads and its child processes print, stays as it is (a
    thread that took the GIL meanwhile printed into sqldiag's file when fd 2 was
    redirected). None without the call or the stream."""
    if not hasattr(sys, "_debugmallocstats"):
        return None
    try:
        c_stderr = ctypes.c_void_p.in_dll(libc, "stderr")
    except ValueError:
        return None

    def stats_into(stream: int) -> None:
        saved = c_stderr.value
        c_stderr.value = stream
        try:
            sys._debugmallocstats()
        finally:
            c_stderr.value = saved
    return _written_to_memory(libc, stats_into)


def mallinfo() -> dict[str, int] | None:
    """glibc's heap statistics (main arena and the others summed), or None."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return _mallinfo_fields(libc.mallinfo2()) | {"arenas": malloc_arenas()}


def _mallinfo_fields(info: _MallInfo2) -> dict[str, int]:
    return {
        "arena_bytes": info.arena,  # heap of all arenas (sbrk'd and mmapped heaps)
        "mmap_bytes": info.hblkhd,  # blocks served by mmap (large allocations)
        "in_use_bytes": info.uordblks,
        "free_bytes": info.fordblks,  # free chunks the allocator keeps
        "releasable_bytes": info.keepcost,
    }


@lru_cache(maxsize=1)
def _libc_holding_the_gil() -> ctypes.PyDLL | None:
    """The C library through ctypes.PyDLL: its calls keep the GIL (CDLL's give it up,
    and beside busy threads the caller then waits tens of ms for it back)."""
    if _libc() is None:
        return None
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    libc.pread.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
    return libc


@lru_cache(maxsize=1)
def _statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None


def _rss_holding_the_gil(libc: ctypes.PyDLL) -> tuple[int | None, int | None]:
    """(RSS, its file-backed and shared part) in bytes, from /proc/self/statm."""
    fd = _statm()
    if fd is None:
        return None, None
    buffer = ctypes.create_string_buffer(128)
    read = libc.pread(fd, buffer, 127, 0)
    if read <= 0:
        return None, None
    fields, page = buffer.raw[:read].split(), os.sysconf("SC_PAGE_SIZE")
    return int(fields[1]) * page, int(fields[2]) * page


def glibc_in_use() -> int | None:
    """glibc's bytes in use now (its heaps' and mmapped chunks), read without giving up
    the GIL; None without glibc 2.33+."""
    libc = _libc_holding_the_gil()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


@dataclass(frozen=True)
class Reading:
    """Both allocators' figures, the RSS and tracemalloc's figures at one moment."""

    glibc: Mallinfo
    pymalloc: PymallocStats | None
    rss: int | None
    traced: int | None = None
    tracemalloc_bytes: int = 0
    file_rss: int | None = None  # RSS of mapped files (libraries) and shared memory


def reading() -> Reading:
    """glibc's and pymalloc's figures and the RSS (and tracemalloc's, when it traces),
    read at one moment: no other thread runs between the reads (a few ms at a GB of
    heap), else figures read while ten threads allocate 100 MB/s lag the RSS by tens of
    MB. The RSS is None where it cannot be read so (no glibc, no /proc)."""
    libc = _libc_holding_the_gil()
    if libc is not None and not hasattr(libc, "mallinfo2"):
        libc = None  # glibc before 2.33: pymalloc's figures only
    glibc: dict[str, int] | None = None
    rss: int | None = None
    file_rss: int | None = None
    traced: int | None = None
    own = 0
    text: str | None = None
    if libc is not None:
        with threads_parked(_HOLD_S):
            info = libc.mallinfo2()
            text = _pymalloc_stats(libc)
            rss, file_rss = _rss_holding_the_gil(libc)
            if tracemalloc.is_tracing():
                traced = tracemalloc.get_traced_memory()[0]
                own = tracemalloc_own_bytes(tracemalloc.get_tracemalloc_memory())
        glibc = _mallinfo_fields(info)
    if text is None:  # no glibc, or no C stream to point at memory
        text = _pymalloc_stats_through_fd2()
    if glibc is not None:
        glibc["arenas"] = malloc_arenas()  # after: malloc_info writes to a stream
    stats = parse_stats(text)
    return Reading(Mallinfo(**glibc) if glibc else Mallinfo(),
                   PymallocStats(**stats) if stats else None, rss, traced, own, file_rss)


def _pymalloc_stats_through_fd2() -> str:
    """sys._debugmallocstats()'s text without glibc (no stream in memory to point C's
    stderr at): fd 2 goes to a file for the call, the other threads held off."""
    if not hasattr(sys, "_debugmallocstats"):
        return ""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        with few_thread_switches(_HOLD_S):
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        sink.seek(0)
        return sink.read().decode("utf-8", "replace")


def allocator_state() -> tuple[Mallinfo, PymallocStats | None]:
    """glibc's and pymalloc's own figures now, as record parts (empty where absent)."""
    now = reading()
    return now.glibc, now.pymalloc
