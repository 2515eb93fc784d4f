"""The pytest plugin, exercised through pytester as a user's test suite would use it."""

from __future__ import annotations

import json
import sys

import pytest

pytest_plugins = ["pytester"]


def test_budget_failure_names_figure_and_record(pytester):
    pytester.makepyfile('''
        import pytest

        @pytest.mark.sqldiag(peak_rss="1GB")
        def test_small(sqldiag_capture):
            data = [str(i) for i in range(1000)]
            sqldiag_capture.mark("built")
            assert len(data) == 1000

        # traced: tracemalloc sees the list at its peak however briefly it lives (a census
        # sees it if one runs meanwhile, or, on Python 3.12+, as the test returns)
        @pytest.mark.sqldiag(other_python="100KB", trace_depth=4)
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
    big = json.loads(next(r for r in records if "test_too_big" in r.parent.name).read_text())
    small_method = json.loads(small.read_text())["measurement"]["method"]
    assert (big["measurement"]["trace_depth"], small_method) == (4, "census")


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
    assert "another exception occurred" not in result.stdout.str()  # one line, no chain


CALLS = """
    import pytest
    from sqlalchemy import Integer, String, create_engine, insert
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


    class Base(DeclarativeBase):
        pass


    class Row(Base):
        __tablename__ = "rows"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        text: Mapped[str] = mapped_column(String(80))


    def load_rows(engine):
        with Session(engine) as session:
            return session.query(Row).all()


    @pytest.mark.sqldiag(**{"test_calls.py:load_rows": "10KB"})
    def test_load(tmp_path, sqldiag_capture):
        engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(Row), [{"id": i, "text": "t" * 60} for i in range(3000)])
        rows = load_rows(engine)
        if CENSUS:
            sqldiag_capture.census("loaded")
        assert len(rows) == 3000
"""
EXCEEDED = "*sqldiag budget exceeded: test_calls.py:load_rows * exceeds its budget of 10 KB*"


def test_a_budget_on_the_function_that_runs_a_query(pytester):
    """A budget can name a call site: what the statements run from a function held (a
    census where the test holds its rows: in a large test session censuses are sparse)."""
    pytester.makepyfile(test_calls=CALLS.replace("CENSUS", "True"))
    result = pytester.runpytest("--sqldiag-reports", "runs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([EXCEEDED])


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the return event without tracing "
                    "every call needs sys.monitoring (Python 3.12+)")
def test_a_short_test_is_seen_as_it_returns(pytester):
    """Rows held only until the test returns, a few milliseconds: the census as it
    returns sees them."""
    pytester.makepyfile(test_calls=CALLS.replace("CENSUS", "False"))
    result = pytester.runpytest("--sqldiag-reports", "runs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([EXCEEDED])


def test_a_budget_passed_on_a_peak_the_censuses_did_not_see_is_warned_of(pytester):
    """64 MB of bytes, which no category counts, held at a census: the budget on
    other_python passes on what the census saw, with a warning at the test's line that
    most of the peak went unseen. Dicts the census counts (most of their test's growth)
    pass without one: 200,000 of eight keys are 52 MB by getsizeof on 3.11-3.13 and 69 MB
    on 3.10, and the census scale took them to 101 MB there once, so the budget leaves
    room above that, yet less than the growth a census that saw nothing would leave."""
    pytester.makepyfile(test_held='''
        import pytest

        @pytest.mark.sqldiag(other_python="50MB")
        def test_blob(sqldiag_capture):
            blob = b"x" * (64 << 20)
            sqldiag_capture.census("held")
            assert len(blob) == 64 << 20

        @pytest.mark.sqldiag(other_python="150MB")
        def test_dicts(sqldiag_capture):
            keep = [dict.fromkeys("abcdefgh", i) for i in range(200_000)]
            sqldiag_capture.census("held")
            assert len(keep) == 200_000
    ''')
    result = pytester.runpytest("--sqldiag-reports", "runs")
    result.assert_outcomes(passed=2, warnings=1)
    warned = ("*test_held.py:3: BudgetUnsureWarning: sqldiag: other_python * is within its "
              "budget of 50 MB, but the categories explain only *")
    result.stdout.fnmatch_lines(["test_held.py::test_blob", warned])
    result = pytester.runpytest("--sqldiag-reports", "runs",
                                "-W", "error::sqldiag.pytest_plugin.BudgetUnsureWarning")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_held.py::test_blob*"])
