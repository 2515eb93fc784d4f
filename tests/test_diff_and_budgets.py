"""`sqldiag diff` and budgets on real runs: no change against itself, growth caught."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.budgets import Budget, check_budgets, parse_budget
from sqldiag.analysis.diff import diff_records, growth_failures
from sqldiag.errors import SqldiagError
from sqldiag.record.store import load_record


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A small run and one with four times the rows, on one SQLite file."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("runs")
    url = f"sqlite:///{root / 'db.sqlite3'}"
    dirs = []
    for rows in (1000, 4000):
        proc = subprocess.run([sys.executable, "-m", "sqldiag", "scenario", "leak_repro",
                               "--url", url, "--rows", str(rows), "--workers", "2",
                               "--table", f"diff_{rows}", "--json", "--no-census",
                               "--reports-dir", str(root / "reports")],
                              capture_output=True, text=True, check=False,
                              env=dict(os.environ, XDG_CACHE_HOME=str(root)))
        assert proc.returncode == 0, proc.stderr
        dirs.append(Path(json.loads(proc.stdout)["run_dir"]))
    return dirs


def test_run_diffed_against_itself_shows_no_change(two_runs, cli):
    small = load_record(two_runs[0])
    result = diff_records(small, small)
    assert all(change.delta in (0, None) for change in result.changes())
    assert result.sites == []
    assert "about the same" in result.verdict
    assert growth_failures(result, 0.0) == []
    out = cli("diff", str(two_runs[0]), str(two_runs[0]), "--fail-on-growth", "1%", "--json")
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["sites"] == []


def test_growth_is_named_and_fails_ci(two_runs, cli, tmp_path):
    html = tmp_path / "diff.html"
    out = cli("diff", str(two_runs[0]), str(two_runs[1]), "--fail-on-growth", "10%",
              "--html", str(html))
    assert out.code == 3
    assert "orm_objects at peak grew" in out.stderr
    assert "B peaks" in out.stdout and "higher" in out.stdout
    page = html.read_text()
    assert "grew (red) or shrank (green)" in page and "sqlalchemy/orm/state.py" in page
    data = json.loads(cli("diff", str(two_runs[0]), str(two_runs[1]), "--json").stdout)
    orm = next(c for c in data["categories"]["peak"] if c["name"] == "orm_objects")
    assert 3.0 < orm["b"] / orm["a"] < 5.0
    grown = [s for s in data["sites"] if s["delta"] > 0]
    assert grown and all(s["function"] for s in grown)


def test_sites_match_by_function_not_line(two_runs):
    a = load_record(two_runs[0])
    peak = a.breakdowns["peak"]
    moved = tuple(replace(site, line=site.line + 7) for site in peak.sites)
    b = replace(a, breakdowns={**a.breakdowns, "peak": replace(peak, sites=moved)})
    assert b.breakdowns["peak"].sites != peak.sites  # the code moved, nothing else changed
    assert diff_records(a, b).sites == []


def test_budgets_on_a_record(two_runs):
    analysis = analyse(load_record(two_runs[0]))
    peak = analysis.summary.peak_rss
    assert check_budgets(analysis, [Budget("peak_rss", peak)]) == []
    broken = check_budgets(analysis, [Budget("peak_rss", peak - 1),
                                      parse_budget("orm_objects=1KB")])
    assert len(broken) == 2 and broken[0].startswith("peak_rss")
    assert "orm_objects" in broken[1]


def test_budget_syntax_errors_are_clear():
    with pytest.raises(SqldiagError, match="not a budget"):
        parse_budget("peak=300MB")
    with pytest.raises(SqldiagError, match="not a size"):
        parse_budget("peak_rss=lots")
    assert parse_budget("peak_rss=1.5GB").limit == int(1.5 * (1 << 30))


def test_scenario_budget_exits_3_and_names_the_record(cli, sqlite_url):
    out = cli("scenario", "leak_repro", "--url", sqlite_url, "--rows", "500", "--workers", "1",
              "--no-census", "--budget", "peak_rss=1MB", "--budget", "driver_rows=10GB")
    assert out.code == 3
    assert "peak_rss" in out.stderr and "exceeds its budget of 1.0 MB" in out.stderr
    assert "driver_rows" not in out.stderr
    assert "record.json" in out.stderr


def test_verdict_says_how_far_in_words_that_fit_the_gap():
    """A 3% gap read "1.0x lower"; under 1.5x the verdict gives a share."""
    from sqldiag.analysis.diff import _how_far
    assert [_how_far(97, 100), _how_far(140, 100), _how_far(100, 300), _how_far(180, 100)] == [
        "3% lower", "40% higher", "3.0x lower", "1.8x higher"]
