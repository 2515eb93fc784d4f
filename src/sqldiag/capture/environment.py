"""Facts about the machine and libraries a run happened on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import psutil

from sqldiag._version import __version__
from sqldiag.capture.probes.allocator import glibc_version
from sqldiag.record.parts import DriverPackage, Environment
from sqldiag.redact import looks_secret

# Environment variables that change what memory does; only these are recorded.
_RECORDED_ENV = ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                 "PYTHONMALLOC", "PYTHONHASHSEED")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(driver_package: str | None) -> Environment:
    return Environment(
        sqldiag=__version__,
        python=sys.version.split()[0],
        python_implementation=platform.python_implementation(),
        sqlalchemy=_version("sqlalchemy"),
        sqlalchemy_compiled=_sqlalchemy_compiled(),
        driver=DriverPackage(package=driver_package,
                             version=_version(driver_package) if driver_package else None),
        os=f"{platform.system()} {platform.release()}",
        libc=glibc_version(),
        machine=platform.machine(),
        cpus=os.cpu_count(),
        memory_total=psutil.virtual_memory().total,
        env={k: os.environ[k] for k in _RECORDED_ENV if k in os.environ and not looks_secret(k)},
    )


def _sqlalchemy_compiled() -> bool:
    try:
        from sqlalchemy.util import has_compiled_ext
    except ImportError:
        return False
    try:
        return bool(has_compiled_ext())
    except Exception:  # noqa: BLE001 - older releases raise on a missing extension
        return False
