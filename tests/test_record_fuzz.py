"""Fuzzing the record loader and the renderers: any input gives a record or one clear
SqldiagError, never another exception, and nothing in a file is executed."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.diff import diff_records
from sqldiag.errors import SqldiagError
from sqldiag.record.parts import Record
from sqldiag.record.store import load_record
from sqldiag.reporters.html import render
from sqldiag.reporters.terminal import print_summary

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)

# about 2,100 inputs in all: random bytes are cheap, rendered records are not
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
BYTES_SETTINGS = settings(SETTINGS, max_examples=1500)


@pytest.fixture(scope="module")
def real_record(tmp_path_factory) -> dict:
    """A real record of a tiny run."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("fuzz")
    proc = subprocess.run([sys.executable, "-m", "sqldiag", "scenario", "leak_repro", "--url",
                           f"sqlite:///{root / 'db.sqlite3'}", "--rows", "200", "--workers", "1",
                           "--no-census", "--json", "--reports-dir", str(root / "r")],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, XDG_CACHE_HOME=str(root)))
    assert proc.returncode == 0, proc.stderr
    return load_record(json.loads(proc.stdout)["run_dir"]).to_json()


def _render_all(record: Record) -> None:
    """Every renderer on a record that loaded: none may fail (validation is at load)."""
    import io

    from rich.console import Console

    analysis = analyse(record)
    render(record, analysis)
    print_summary(record, analysis, Console(file=io.StringIO()))
    diff_records(record, record)


@BYTES_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "record.json"
    path.write_bytes(data)
    with pytest.raises(SqldiagError):
        load_record(path)


@SETTINGS
@given(key=st.sampled_from(["breakdowns", "timeline", "phases", "measurement", "status",
                            "scenario", "environment", "database", "types", "allocator",
                            "processes", "retention", "schema_version", "command"]),
       value=json_values)
def test_mutated_real_record(tmp_path_factory, real_record, key, value):
    record = json.loads(json.dumps(real_record))
    record[key] = value
    path = tmp_path_factory.mktemp("m") / "record.json"
    path.write_text(json.dumps(record))
    try:
        loaded = load_record(path)
    except SqldiagError:
        return
    _render_all(loaded)


@SETTINGS
@given(section=st.sampled_from(["breakdowns", "timeline", "allocator", "measurement"]),
       inner=json_values)
def test_mutated_inner_values(tmp_path_factory, real_record, section, inner):
    record = json.loads(json.dumps(real_record))
    part = record[section]
    for name in list(part)[:3]:
        part[name] = inner
    path = tmp_path_factory.mktemp("i") / "record.json"
    path.write_text(json.dumps(record))
    try:
        loaded = load_record(path)
    except SqldiagError:
        return
    _render_all(loaded)
