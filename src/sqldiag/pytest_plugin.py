"""pytest plugin (registered as `sqldiag` by entry point): memory budgets for tests.

    @pytest.mark.sqldiag(peak_rss="200MB", orm_objects="50MB")
    def test_report_export(db_session, sqldiag_capture):
        sqldiag_capture.mark("loaded")   # optional phase marks
        sqldiag_capture.census("held")   # optional: a census now
        ...

The test body runs under an in-process sqldiag capture; its record and HTML report are
written under --sqldiag-reports (default reports/pytest). A figure over its budget fails
the test, naming the figure and the record. A budget may name a call site
(`**{"app/export.py:load_users": "20MB"}`). Untraced by default (censuses of live
objects); `trace_depth=8` among the marker's keywords traces the test with tracemalloc,
which sees every transient peak (a census sees what is alive when it runs, and on Python
3.12+ as the test returns) at tracemalloc's cost, without the statement table.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

MARKER = "sqldiag"
TRACE_DEPTH = "trace_depth"  # a marker keyword that is not a budget: trace the test


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqldiag")
    group.addoption("--sqldiag-reports", default="reports/pytest",
                    help="where sqldiag writes the records of marked tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**budgets): measure the test with sqldiag and fail it when a "
                   "figure exceeds its budget, e.g. peak_rss='200MB', orm_objects='50MB'; "
                   "trace_depth=N traces it with tracemalloc")


class BudgetUnsureWarning(pytest.PytestWarning):
    """A budget passed on figures that saw too little of the test's peak to say so
    (`-W error::sqldiag.pytest_plugin.BudgetUnsureWarning` makes it fail the test)."""


class _CaptureHandle:
    """What the `sqldiag_capture` fixture gives: marks phases of the running capture, and
    takes a census where the test knows it holds what it wants measured."""

    def __init__(self) -> None:
        self.active: Any = None

    def mark(self, phase: str) -> None:
        if self.active is not None:
            self.active.mark(phase)

    def census(self, phase: str) -> None:
        """Mark a phase and take a census of what is alive now (a census otherwise runs
        at RSS highs, and seldom in a large test session, where each one costs more)."""
        if self.active is not None:
            self.active.census(phase)


@pytest.fixture
def sqldiag_capture(request: pytest.FixtureRequest) -> _CaptureHandle:
    handle = _CaptureHandle()
    request.node.stash[_HANDLE] = handle
    return handle


_HANDLE = pytest.StashKey[_CaptureHandle]()


def _budgets(marker: pytest.Mark) -> list:
    from sqldiag.analysis.budgets import Budget, parse_budget

    budgets = []
    for name, value in marker.kwargs.items():
        if name == TRACE_DEPTH:
            continue
        if isinstance(value, int):
            budgets.append(Budget(name, value))
        else:
            budgets.append(parse_budget(f"{name}={value}"))
    return budgets


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return (yield)
    from sqldiag.analysis.budgets import check_budgets, doubtful_passes
    from sqldiag.api import Capture
    from sqldiag.capture.probes.returns import at_return
    from sqldiag.errors import SqldiagError

    bad = None
    try:
        budgets = _budgets(marker)
    except SqldiagError as exc:
        bad = str(exc)
    if bad is not None:  # failed outside the except block: no chained traceback shown
        pytest.fail(f"bad sqldiag marker: {bad}", pytrace=False)
    name = "".join(c if c.isalnum() else "_" for c in item.name)[:60]
    reports = Path(item.config.getoption("--sqldiag-reports"))
    depth = marker.kwargs.get(TRACE_DEPTH, 0)
    if not isinstance(depth, int) or not 0 <= depth <= 100:
        pytest.fail(f"bad sqldiag marker: {TRACE_DEPTH} must be a whole number from 0 to 100",
                    pytrace=False)
    capture = Capture(name=name, reports_dir=reports, trace_depth=depth)
    handle = item.stash.get(_HANDLE, None)
    code = getattr(getattr(item, "obj", None), "__code__", None)
    with capture:
        # a census as the test returns, its locals alive (Python 3.12+: see returns.py)
        stop = at_return(code, lambda: capture.census("test returns")) if code else None
        if handle is not None:
            handle.active = capture
        try:
            result = yield
        finally:
            if stop is not None:
                stop()
            if handle is not None:
                handle.active = None
    if capture.analysis is None:
        pytest.fail("sqldiag: the test was not measured", pytrace=False)
    broken = check_budgets(capture.analysis, budgets)
    record = capture.run_dir / "record.json" if capture.run_dir else "?"
    if broken:
        pytest.fail(f"sqldiag budget exceeded: {'; '.join(broken)} (record: {record})",
                    pytrace=False)
    for doubt in doubtful_passes(capture.analysis, budgets):
        path, line, _ = item.reportinfo()
        # shown at the test's own line, as a warning the test raised would be
        warnings.warn_explicit(
            f"sqldiag: {doubt}. A census where the test holds its results "
            f"(sqldiag_capture.census('held')) or trace_depth=8 sees them (record: {record})",
            BudgetUnsureWarning, str(path), (line or 0) + 1)
    return result
