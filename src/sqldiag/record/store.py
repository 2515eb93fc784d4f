"""Run records on disk: versioned JSON, written atomically, loaded without running code.

A record is a JSON object (optionally gzip-compressed); parts.py describes its parts
as value classes, and `Record.from_json` checks every field. Schema versions:

    1   also stored derived figures (summary, categories, kept_alive, kept_alive_peak,
        verdict, and a leak verdict inside repeat): they are ignored when read, and the
        analysis of this version is computed instead
    2   measured parts only

A newer version than this build reads is refused with a clear error.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqldiag.errors import SqldiagError
from sqldiag.record.codec import RecordError
from sqldiag.record.parts import FORMAT, SCHEMA_VERSION, Record

RECORD_NAME = "record.json"
MAX_RECORD_BYTES = 64 << 20  # decompressed; bounded memory on hostile input


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


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write via a temporary file in the same folder, fsync (unless only a process's
    death, not the machine's, is to be survived), then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_record(record: Record, run_dir: Path) -> Path:
    path = run_dir / RECORD_NAME
    write_atomic(path, json.dumps(record.to_json(), indent=1, allow_nan=False).encode("utf-8"))
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


def load_record(target: str | Path) -> Record:
    """Read and check a record. Plain JSON only: nothing in the file is ever executed."""
    path = resolve_record_path(target)
    data = _read_bounded(path)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SqldiagError(f"{path}: not a sqldiag record (invalid JSON: "
                           f"{str(exc).splitlines()[0][:120]})") from None
    return parse_record(raw, str(path))


def parse_record(raw: Any, where: str = "record") -> Record:
    """A Record from parsed JSON, any supported schema version; one clear error if not."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise SqldiagError(f"{where}: not a sqldiag run record")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SqldiagError(f"{where}: record has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise SqldiagError(f"{where}: record schema version {version} is newer than this "
                           f"sqldiag reads ({SCHEMA_VERSION}); upgrade sqldiag to open it")
    if version < 1:
        raise SqldiagError(f"{where}: record schema version {version} is not supported")
    if version == 1:
        raw = _from_v1(raw)
    try:
        return Record.from_json(raw)
    except RecordError as exc:
        raise SqldiagError(f"{where}: malformed record: {exc}") from None


def _from_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 wrote {} for a program's run parameters; the rest reads as it is (its
    derived parts are ignored)."""
    scenario = raw.get("scenario")
    if isinstance(scenario, dict) and scenario.get("params") == {}:
        raw = {**raw, "scenario": {**scenario, "params": None}}
    return raw
