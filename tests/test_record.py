"""Run records: round trip, versions, malformed and hostile files, atomic unique writes."""

from __future__ import annotations

import gzip
import json
import os
import pickle

import pytest

from sqldiag.errors import SqldiagError
from sqldiag.record import (
    FORMAT,
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    load_record,
    new_run_dir,
    save_record,
)


def minimal_record() -> dict:
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "status": {"complete": True},
            "scenario": {"name": "x"}, "database": {}, "environment": {}, "measurement": {},
            "timeline": {}, "phases": [], "breakdowns": {}, "categories": {}, "summary": {},
            "verdict": []}


def test_round_trip(tmp_path):
    record = minimal_record()
    path = save_record(record, tmp_path)
    assert load_record(path) == record
    assert load_record(tmp_path) == record  # a run folder works too
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_gzip_records_load(tmp_path):
    path = tmp_path / "record.json.gz"
    path.write_bytes(gzip.compress(json.dumps(minimal_record()).encode()))
    assert load_record(path)["format"] == FORMAT


def test_newer_schema_version_is_refused_with_reason(tmp_path):
    record = minimal_record() | {"schema_version": SCHEMA_VERSION + 1}
    (tmp_path / "record.json").write_text(json.dumps(record))
    with pytest.raises(SqldiagError, match="newer than this sqldiag reads"):
        load_record(tmp_path)


@pytest.mark.parametrize("content", [
    b"", b"{", b"[]", b"null", b'{"format": "other"}', b"\xff\xfe\x00garbage",
    json.dumps(minimal_record()).encode()[:-20],  # truncated
    json.dumps(minimal_record() | {"phases": "not a list"}).encode(),
    json.dumps(minimal_record() | {"schema_version": True}).encode(),
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
])
def test_malformed_files_give_one_clear_error(tmp_path, content):
    path = tmp_path / "record.json"
    path.write_bytes(content)
    with pytest.raises(SqldiagError):
        load_record(path)


def test_pickle_payload_renamed_as_record_does_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "record.json"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(SqldiagError):
        load_record(path)
    assert not marker.exists()


def test_very_large_files_are_refused_without_reading_them_whole(tmp_path):
    path = tmp_path / "record.json.gz"
    with gzip.open(path, "wb") as handle:  # a gzip bomb: small on disk, huge inflated
        chunk = b" " * (1 << 20)
        for _ in range(MAX_RECORD_BYTES // len(chunk) + 2):
            handle.write(chunk)
    with pytest.raises(SqldiagError, match="larger than"):
        load_record(path)


def test_run_folders_started_at_the_same_moment_differ(tmp_path):
    folders = {new_run_dir(tmp_path, "leak_repro") for _ in range(5)}
    assert len(folders) == 5
    assert all(f.name.startswith("leak_repro-") for f in folders)


def test_missing_record_is_a_clear_error(tmp_path):
    with pytest.raises(SqldiagError, match="no run record"):
        load_record(tmp_path / "nothing")
