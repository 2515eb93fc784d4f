"""The pytest plugin, exercised through pytester as a user's test suite would use it."""

from __future__ import annotations

import json

pytest_plugins = ["pytester"]


def test_budget_failure_names_figure_and_record(pytester):
    pytester.makepyfile('''
        import pytest

        @pytest.mark.sqldiag(peak_rss="1GB")
        def test_small(sqldiag_capture):
            data = [str(i) for i in range(1000)]
            sqldiag_capture.mark("built")
            assert len(data) == 1000

        @pytest.mark.sqldiag(other_python="100KB")
        def test_too_big():
            keep = [str(i) * 20 for i in range(200_000)]
            assert keep

        def test_unmarked():
            assert True
    ''')
    result = pytester.runpytest("--sqldiag-reports", "runs")
    result.assert_outcomes(passed=2, failed=1)
    expected = ("*sqldiag budget exceeded: other_python * exceeds its budget of 100 KB "
                "(record: runs*record.json)*")
    result.stdout.fnmatch_lines([expected])
    records = sorted((pytester.path / "runs").glob("*/record.json"))
    assert len(records) == 2  # one per marked test, none for the unmarked one
    small = next(r for r in records if "test_small" in r.parent.name)
    phases = [p["name"] for p in json.loads(small.read_text())["phases"]]
    assert "built" in phases


def test_bad_marker_is_a_usage_error(pytester):
    pytester.makepyfile('''
        import pytest

        @pytest.mark.sqldiag(peak="lots")
        def test_x():
            pass
    ''')
    result = pytester.runpytest("--sqldiag-reports", "runs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*bad sqldiag marker: not a budget: 'peak=lots'*"])
