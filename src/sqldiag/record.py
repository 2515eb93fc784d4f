"""The run record: versioned JSON on disk, written atomically, loaded without running code.

A record is a JSON object (optionally gzip-compressed) with these top-level keys:

    format            "sqldiag-run"
    schema_version    int; this build reads 1 and refuses newer versions
    sqldiag_version   version of the tool that wrote it
    created_utc       ISO 8601 time the run started
    status            {"complete": bool, "reason": str|null}
    command           the command line that reproduces the run (password removed)
    scenario          {"name", "source": "builtin"|"file", "path", "params": {...}}
    database          {"url" (password removed), "dialect", "driver", "server_version"}
    environment       {"python", "sqlalchemy", "driver", "os", "libc", "machine", ...}
    measurement       how the run was measured: method, trace depth, sample period, notes
    timeline          columns {"t", "rss", "uss", "traced"} sampled by the RSS sampler
    phases            [{"name", "t", "rss", "traced", "tracemalloc_overhead"}]
    breakdowns        {moment: {"label", "t", "traced", "total", "categories", "counts",
                       "sites": [{"category","file","function","line","size","count",
                       "traceback"}]}} for moments "peak", "workload_end", "end"
    categories        {"peak"|"end": {category: bytes}} including allocator_free
    types             {"peak"|"end": {"sampled_every", "types": [{"type","count","size"}]}}
    allocator         {"glibc", "malloc_trim", "mallinfo": {phase: {...}}}
    processes         {"children_peak_rss": {pid: bytes}, "children": [{"pid", "ppid",
                       "name", "start_method", "failure", "wall_time_s", "start_rss",
                       "peak_rss", "end_rss", "peak_uss", "traced_peak", "categories":
                       {"peak"|"end": {category: bytes}}, "sites", "timeline"}]} for
                       multiprocessing children that measured themselves
    kept_alive        [{"holder", "objects", "bytes", "chain"}] at the workload's end
    kept_alive_peak   {"label", "holders": [...]} at the mark where holders held most
    summary           key figures in bytes: start_rss, peak_rss, end_rss, trim_rss, ...
    verdict           [plain-language findings, most important first]
    wall_time_s       seconds the workload ran
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqldiag.errors import SqldiagError

T = TypeVar("T")

FORMAT = "sqldiag-run"
SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
MAX_RECORD_BYTES = 64 << 20  # decompressed; bounded memory on hostile input

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str, "schema_version": int, "status": dict, "scenario": dict,
    "database": dict, "environment": dict, "measurement": dict, "timeline": dict,
    "phases": list, "breakdowns": dict, "categories": dict, "summary": dict, "verdict": list,
}


def utc_stamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(reports_dir: Path, scenario: str) -> Path:
    """A fresh folder reports/<scenario>-<UTC timestamp>[-n]; never an existing one."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in scenario)[:60]
    base = f"{safe_name}-{utc_stamp()}"
    for attempt in range(1000):
        candidate = reports_dir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()  # atomic: two runs at the same moment get different folders
            return candidate
        except FileExistsError:
            continue
    raise SqldiagError(f"cannot create a run folder under {reports_dir}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_record(record: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / RECORD_NAME
    write_atomic(path, json.dumps(record, indent=1, allow_nan=False).encode("utf-8"))
    return path


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
        try:
            data = stream.read(MAX_RECORD_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise SqldiagError(f"{path}: not a readable record ({exc})") from None
    if len(data) > MAX_RECORD_BYTES:
        raise SqldiagError(f"{path}: larger than {MAX_RECORD_BYTES >> 20} MB; not a record")
    return data


def resolve_record_path(target: str | Path) -> Path:
    """A record file, or a run folder holding record.json."""
    path = Path(target)
    if path.is_dir():
        path = path / RECORD_NAME
    if not path.is_file():
        raise SqldiagError(f"no run record at {target}")
    return path


def load_record(target: str | Path) -> dict[str, Any]:
    """Read and check a record. Plain JSON only: nothing in the file is ever executed."""
    path = resolve_record_path(target)
    data = _read_bounded(path)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SqldiagError(f"{path}: not a sqldiag record (invalid JSON: "
                           f"{str(exc).splitlines()[0][:120]})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SqldiagError(f"{path}: not a sqldiag run record")
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SqldiagError(f"{path}: record has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise SqldiagError(f"{path}: record schema version {version} is newer than this "
                           f"sqldiag reads ({SCHEMA_VERSION}); upgrade sqldiag to open it")
    if version < 1:
        raise SqldiagError(f"{path}: record schema version {version} is not supported")
    for key, kind in _REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise SqldiagError(f"{path}: record is missing or has a malformed {key!r}")
    return record


def checked_render(path_hint: str | Path, render: Callable[[], T]) -> T:
    """Run a renderer on a loaded record; a record whose inner parts have the wrong shape
    (hand-edited, hostile) gives one clear error instead of a traceback."""
    from jinja2 import TemplateError
    from rich.errors import MarkupError

    try:
        return render()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError,
            OverflowError, RecursionError, TemplateError, MarkupError) as exc:
        raise SqldiagError(f"{path_hint}: malformed record ({type(exc).__name__}: "
                           f"{str(exc)[:120]})") from None
