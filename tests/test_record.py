"""Run records: round trip, versions, malformed and hostile files, atomic unique writes."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import pytest

from sqldiag.errors import SqldiagError
from sqldiag.record.parts import FORMAT, SCHEMA_VERSION
from sqldiag.record.store import (
    MAX_RECORD_BYTES,
    load_record,
    new_run_dir,
    parse_record,
    save_record,
)


def minimal_record() -> dict:
    """The least a record must hold, as JSON."""
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "sqldiag_version": "0.1.0",
            "created_utc": "2026-11-25T00:00:00+00:00", "status": {"complete": True},
            "command": "", "scenario": {"name": "x"}, "database": {}, "environment": {},
            "measurement": {"method": "rss-only"}, "timeline": {}, "phases": [],
            "breakdowns": {}}


def test_round_trip(tmp_path):
    record = parse_record(minimal_record())
    path = save_record(record, tmp_path)
    assert load_record(path) == record
    assert load_record(tmp_path) == record  # a run folder works too
    assert parse_record(record.to_json()) == record
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_gzip_records_load(tmp_path):
    path = tmp_path / "record.json.gz"
    path.write_bytes(gzip.compress(json.dumps(minimal_record()).encode()))
    assert load_record(path).format == FORMAT


def test_newer_schema_version_is_refused_with_reason(tmp_path):
    record = minimal_record() | {"schema_version": SCHEMA_VERSION + 1}
    (tmp_path / "record.json").write_text(json.dumps(record))
    with pytest.raises(SqldiagError, match="newer than this sqldiag reads"):
        load_record(tmp_path)


@pytest.mark.parametrize("content", [
    b"", b"{", b"[]", b"null", b'{"format": "other"}', b"\xff\xfe\x00garbage",
    json.dumps(minimal_record()).encode()[:-20],  # truncated
    json.dumps(minimal_record() | {"phases": "not a list"}).encode(),
    json.dumps(minimal_record() | {"phases": [{"name": "ready", "t": 0, "rss": "1"}]}).encode(),
    json.dumps(minimal_record() | {"measurement": {"method": "guessed"}}).encode(),
    json.dumps(minimal_record() | {"timeline": {"rss": [1, True]}}).encode(),
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


def test_malformed_field_is_named_by_its_path(tmp_path):
    bad = minimal_record() | {"phases": [{"name": "ready", "t": 0, "rss": "1"}]}
    (tmp_path / "record.json").write_text(json.dumps(bad))
    with pytest.raises(SqldiagError, match=r"phases\[0\]\.rss: expected an integer"):
        load_record(tmp_path)


FIXTURES = Path(__file__).parent / "fixtures" / "records"


@pytest.mark.parametrize("name", ["v1-scenario-repeat", "v1-scenario-calibrated",
                                  "v1-run-children"])
def test_records_of_the_previous_format_load(name):
    """Records written by sqldiag 0.1.0 with schema version 1 (they also stored derived
    figures) load and get today's analysis: the same traced categories and start, and a
    peak that leaves out what sqldiag ran after the workload's end (in each of these
    three the highest sample came after it: a census of types, reducing snapshots)."""
    from sqldiag.analysis.analyse import analyse
    from sqldiag.record.categories import TRACED

    path = FIXTURES / f"{name}.json.gz"
    record = load_record(path)
    stored = json.loads(gzip.decompress(path.read_bytes()))
    assert stored["schema_version"] == 1
    assert record.schema_version == 1
    analysis = analyse(record)
    summary = analysis.to_json()["summary"]
    assert summary["start_rss"] == stored["summary"]["start_rss"]
    assert summary["traced_peak_snapshot"] == stored["summary"]["traced_peak_snapshot"]
    assert summary["peak_rss"] < stored["summary"]["peak_rss"]
    ended = record.phase("workload end")
    assert summary["peak_t"] <= ended.t
    for moment, categories in analysis.to_json()["categories"].items():
        assert {c: categories[c] for c in TRACED} == \
            {c: stored["categories"][moment][c] for c in TRACED}
    assert analysis.verdict and analysis.verdict[0].startswith("Peak RSS")
    assert parse_record(json.loads(json.dumps(record.to_json()))) == record


def test_v1_run_of_a_program_has_no_run_parameters():
    record = load_record(FIXTURES / "v1-run-children.json.gz")
    assert record.params is None and record.rows is None
    assert record.processes.children and record.processes.children[0].pid
