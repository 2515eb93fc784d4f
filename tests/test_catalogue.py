"""The catalogue of causes and fixes: each scenario shows what its docstring says, and
`sqldiag compare` puts them side by side honestly (same rows, checked by a checksum)."""

from __future__ import annotations

import itertools
import json

from conftest import run_view

from sqldiag.workload.scenarios import builtin_scenarios

TRACED_KEYS = ("driver_rows", "sqlalchemy_rows", "orm_objects", "identity_map",
               "result_lists", "statement_cache", "other_python")


def _run(cli, url, scenario, *extra, rows=2000, workers=3):
    result = cli("scenario", scenario, "--url", url, "--rows", str(rows), "--workers",
                 str(workers), "--json", "--no-census", "--table", f"cat_{rows}", *extra)
    assert result.code == 0, (scenario, result.stderr)
    out = result.json()
    return out, run_view(out["run_dir"])


def test_every_builtin_scenario_has_a_description():
    names = {s.name for s in builtin_scenarios()}
    assert {"leak_repro", "leak_repro_processes", "fix_yield_per", "fix_core_partitions",
            "fix_keyset_pages", "core_all", "load_only_columns", "session_leak",
            "statement_cache_growth", "unconsumed_results", "long_text",
            "long_text_arena_max", "unclosed_session_thread", "short_sessions_expunge",
            "expire_on_commit"} <= names
    for scenario in builtin_scenarios():
        assert scenario.description not in ("(no description)", "(unreadable)"), scenario


def test_compare_fixes_with_the_same_rows(cli, sqlite_url, tmp_path):
    result = cli("compare", "leak_repro", "fix_yield_per", "fix_core_partitions",
                 "fix_keyset_pages", "core_all", "--url", sqlite_url, "--rows", "3000",
                 "--workers", "3", "--table", "cmp_users", "--no-census", "--json",
                 "--html", str(tmp_path / "compare.html"))
    assert result.code == 0, result.stderr
    rows = {row["scenario"]: row for row in json.loads(result.stdout)["rows"]}
    assert all(row["same_rows"] == "yes" for name, row in rows.items() if name != "leak_repro")
    assert rows["leak_repro"]["digest"]["rows"] == 3000
    orm = {name: row["peak"]["orm_objects"] for name, row in rows.items()}
    assert orm["fix_yield_per"] < 0.6 * orm["leak_repro"]
    assert orm["fix_core_partitions"] < 0.02 * orm["leak_repro"]
    assert orm["core_all"] < 0.02 * orm["leak_repro"]
    assert rows["core_all"]["peak"]["sqlalchemy_rows"] > 0
    html = (tmp_path / "compare.html").read_text()
    assert "fix_keyset_pages" in html and "same rows" in html


def test_compare_refuses_different_rows(cli, sqlite_url):
    common = ["--url", sqlite_url, "--rows", "500", "--workers", "1", "--table", "cmp_small",
              "--no-census", "--trace", "off"]
    refused = cli("compare", "leak_repro", "load_only_columns", *common)
    assert refused.code == 1
    assert "did not consume the same rows: load_only_columns" in refused.stderr
    allowed = cli("compare", "leak_repro", "load_only_columns", *common,
                  "--allow-different-rows")
    assert allowed.code == 0, allowed.stderr


def test_streaming_peak_does_not_follow_the_row_count(cli, sqlite_url):
    """tracemalloc's own peak of traced bytes: 4x the rows, the same batches in flight."""
    def traced_peak(scenario, rows):
        return _run(cli, sqlite_url, scenario, rows=rows, workers=2)[1]["measurement"][
            "traced_peak"]

    assert traced_peak("fix_yield_per", 8000) < 1.5 * traced_peak("fix_yield_per", 2000)
    assert traced_peak("leak_repro", 8000) > 3.0 * traced_peak("leak_repro", 2000)


def test_session_leak_keeps_objects_after_the_work(cli, sqlite_url):
    out, record = _run(cli, sqlite_url, "session_leak", rows=5000, workers=1)
    end = out["categories"]["end"]
    assert end["orm_objects"] > 500 * 300  # a tenth of the table, still alive
    assert end["identity_map"] > 0
    assert "500 objects in the identity map" in [p["name"] for p in record["phases"]]


def test_statement_cache_grows_with_distinct_sql(cli, sqlite_url):
    few, _ = _run(cli, sqlite_url, "statement_cache_growth", "--option", "queries=20")
    many, _ = _run(cli, sqlite_url, "statement_cache_growth", "--option", "queries=400")
    end = {k: v for k, v in many["categories"]["end"].items() if k in TRACED_KEYS}
    assert end["statement_cache"] > 5 * max(few["categories"]["end"]["statement_cache"], 1)
    assert end["statement_cache"] >= 0.85 * sum(end.values()), end


def test_pymysql_connection_pins_its_last_result(cli, mysql_url):
    """A Session left open in an idle thread: its PyMySQL connection keeps the whole
    buffered result alive (driver_rows) though the objects were dropped."""
    out, record = _run(cli, mysql_url, "unclosed_session_thread", rows=2000, workers=2)
    held = record["breakdowns"]["peak"]["categories"]
    assert held["driver_rows"] > 2 * 2000 * 60  # two result sets of 2,000 rows
    assert out["categories"]["end"]["driver_rows"] < 0.1 * held["driver_rows"]


def test_unconsumed_results_hold_driver_buffers_on_pymysql(cli, mysql_url):
    out, _ = _run(cli, mysql_url, "unconsumed_results", rows=2000, workers=2)
    assert out["categories"]["peak"]["driver_rows"] > 2 * 2000 * 60
    assert out["categories"]["peak"]["orm_objects"] < 50_000


def test_processes_report_children(cli, sqlite_url):
    _, record = _run(cli, sqlite_url, "leak_repro_processes", "--trace", "off",
                       rows=2000, workers=2)
    assert len(record["processes"]["children_peak_rss"]) >= 2
    assert any("child processes (not followed) peaked" in line for line in record["verdict"])
    assert record["digest"]["rows"] == 2000


def test_arena_max_scenario_sets_the_environment(cli, sqlite_url):
    _, record = _run(cli, sqlite_url, "long_text_arena_max", "--text-bytes", "650",
                       "--trace", "off", rows=1000, workers=2)
    assert record["scenario"]["env"] == {"MALLOC_ARENA_MAX": "2"}
    assert record["phases"][-1]["name"] == "after malloc_trim(0)"


def test_streaming_fix_is_not_extrapolated_per_row(cli, sqlite_url):
    """Calibration sizes sit below yield_per's batch: a per-row model would predict more
    live memory than RSS ever held; it is rejected and said so."""
    out, record = _run(cli, sqlite_url, "fix_yield_per", rows=20000, workers=10)
    assert record["measurement"]["method"] == "calibrated"
    assert record["summary"]["model_rejected"] is True
    assert any("did not grow in proportion to the rows" in line for line in record["verdict"])
    growth = record["summary"]["peak_rss"] - record["summary"]["start_rss"]
    traced = sum(v for k, v in out["categories"]["peak"].items() if k in TRACED_KEYS)
    assert traced < 1.25 * growth


def test_repeat_tells_a_leak_from_a_peak(cli, sqlite_url):
    _, leaking = _run(cli, sqlite_url, "session_leak", "--repeat", "5", rows=5000, workers=1)
    verdict = leaking["repeat"]
    assert verdict["leak"] is True
    assert {"orm_objects", "identity_map"} <= set(verdict["categories"])
    totals = [it["traced"] for it in verdict["iterations"]]
    steps = [b - a for a, b in itertools.pairwise(totals[1:])]
    assert max(steps) < 1.5 * min(steps)  # linear: the same growth every run
    assert any(line.startswith("LEAK:") for line in leaking["verdict"])
    _, peaking = _run(cli, sqlite_url, "leak_repro", "--repeat", "5", rows=2000, workers=3)
    assert peaking["repeat"]["leak"] is False
    assert any(line.startswith("No leak:") for line in peaking["verdict"])


def test_kept_alive_by_names_the_holders(cli, sqlite_url, mysql_url):
    _, record = _run(cli, sqlite_url, "leak_repro", rows=2000, workers=3)
    held = {h["holder"]: h["bytes"] for h in record["kept_alive"]}
    traced = record["breakdowns"]["workload_end"]["total"] if "workload_end" in \
        record["breakdowns"] else record["summary"]["traced_peak_snapshot"]
    # the workload's return value holds the rows' objects: most of what is traced
    assert 0.5 * traced < held["result held by its caller"] < 1.2 * traced
    assert held["Session identity maps"] == 0  # every Session was closed
    assert any(line.startswith("Kept alive at the workload's end by: result held by its "
                               "caller") for line in record["verdict"])
    # at the peak, inside pool.map, the finished workers' lists wait in the pool's result
    # object until map returns them; its chain starts at a running function's local
    peak = {h["holder"]: h for h in record["kept_alive_peak"]["holders"]}
    pooled = peak["pool results not yet fetched"]
    assert pooled["bytes"] > 0.3 * held["result held by its caller"]
    assert pooled["chain"][0].startswith("local ") and pooled["chain"][-1] == "MapResult"
    assert any(line.startswith("Kept alive at the workload's peak (") for line in
               record["verdict"])
    _, pinned = _run(cli, mysql_url, "unclosed_session_thread", rows=2000, workers=2)
    held = {h["holder"]: h for h in pinned["kept_alive"]}
    assert held["driver buffers"]["objects"] == 2
    assert held["driver buffers"]["bytes"] > 2 * 2000 * 60
    assert held["result held by its caller"]["bytes"] < held["driver buffers"]["bytes"]


def test_expire_on_commit_drops_the_loaded_values(cli, sqlite_url):
    kept, _ = _run(cli, sqlite_url, "expire_on_commit", "--option", "expire=0")
    expired, _ = _run(cli, sqlite_url, "expire_on_commit")
    # the objects stay (held by the lists); the strings the driver made for them do not
    assert expired["categories"]["peak"]["driver_rows"] < 0.5 * kept["categories"]["peak"][
        "driver_rows"]


def test_expunge_all_keeps_a_long_session_flat(cli, sqlite_url):
    def traced_peak(rows):
        return _run(cli, sqlite_url, "short_sessions_expunge", rows=rows, workers=2)[1][
            "measurement"]["traced_peak"]

    assert traced_peak(8000) < 1.5 * traced_peak(2000)


def test_malloc_arena_max_caps_the_arenas(cli, sqlite_url):
    def arenas(scenario):
        _, record = _run(cli, sqlite_url, scenario, "--text-bytes", "650", "--trace", "off",
                         rows=2000, workers=6)
        return record["allocator"]["mallinfo"]["after gc.collect()"]["arenas"]

    assert arenas("long_text_arena_max") <= 2
    assert arenas("long_text") > 2  # six threads each got an arena of their own


def test_a_buffered_result_is_native_memory_on_postgresql(cli, psycopg2_url):
    """psycopg2's client-side cursor keeps the whole result in libpq's C memory while
    Python reads 1,000 rows at a time: the peak is native memory, not a Python category,
    and streaming from a server-side cursor removes it."""
    out, record = _run(cli, psycopg2_url, "buffered_result_native", rows=60000, workers=1)
    peak = out["categories"]["peak"]
    growth = out["summary"]["peak_rss"] - out["summary"]["start_rss"]
    python = sum(peak[c] for c in TRACED_KEYS)
    assert peak["native_memory"] > python, peak
    assert peak["native_memory"] >= 0.5 * growth, (peak, growth)
    assert out["summary"]["parts_peak"]["rest"] <= 0.1 * growth
    assert any(line.startswith("Fix: ") and "libpq's PGresult" in line
               for line in out["verdict"]), out["verdict"]
    fixed, fixed_record = _run(cli, psycopg2_url, "fix_core_partitions", rows=60000,
                               workers=1)
    assert fixed["categories"]["peak"]["native_memory"] < 0.3 * peak["native_memory"]
    assert fixed_record["digest"] == record["digest"]  # the same rows, read both ways


def test_compare_on_an_80_column_terminal_shows_whole_names():
    """The table of 8 columns is wider than 80 columns: rich cut the names to "leak_r…".
    There each scenario gets a line of its figures instead."""
    from rich.console import Console

    from sqldiag.analysis.compare import CompareRow
    from sqldiag.reporters.terminal import print_compare

    rows = [CompareRow(name, 1_170_000_000, 1_100_000_000, 900_000_000, 20_000_000, 20.1,
                       49_751.0, {"orm_objects": 725_000_000, "allocator_free": 900_000_000},
                       None, same)
            for name, same in (("leak_repro", "n/a"), ("buffered_result_native", "yes"),
                               ("[red]fix_keyset_pages", "NO"))]
    narrow = Console(width=80, record=True, color_system=None)
    print_compare(rows, narrow)
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for name in ("leak_repro", "buffered_result_native", "[red]fix_keyset_pages"):
        assert f"{name}: peak RSS " in text, text
    assert "largest at peak orm_objects 691" in text and "same rows NO" in text
    wide = Console(width=200, record=True, color_system=None)
    print_compare(rows, wide)
    assert "┃ scenario" in wide.export_text()
