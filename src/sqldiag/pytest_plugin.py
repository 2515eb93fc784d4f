"""pytest plugin (registered as `sqldiag` by entry point): memory budgets for tests.

    @pytest.mark.sqldiag(peak_rss="200MB", orm_objects="50MB")
    def test_report_export(db_session, sqldiag_capture):
        sqldiag_capture.mark("loaded")   # optional phase marks
        ...

The test body runs under an in-process sqldiag capture; its record and HTML report are
written under --sqldiag-reports (default reports/pytest). A figure over its budget fails
the test, naming the figure and the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MARKER = "sqldiag"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqldiag")
    group.addoption("--sqldiag-reports", default="reports/pytest",
                    help="where sqldiag writes the records of marked tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**budgets): measure the test with sqldiag and fail it when a "
                   "figure exceeds its budget, e.g. peak_rss='200MB', orm_objects='50MB'")


class _CaptureHandle:
    """What the `sqldiag_capture` fixture gives: marks phases of the running capture."""

    def __init__(self) -> None:
        self.active: Any = None

    def mark(self, phase: str) -> None:
        if self.active is not None:
            self.active.mark(phase)


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
    from sqldiag.analysis.budgets import check_budgets
    from sqldiag.api import Capture
    from sqldiag.capture.probes.returns import at_return
    from sqldiag.errors import SqldiagError

    try:
        budgets = _budgets(marker)
    except SqldiagError as exc:
        pytest.fail(f"bad sqldiag marker: {exc}", pytrace=False)
    name = "".join(c if c.isalnum() else "_" for c in item.name)[:60]
    reports = Path(item.config.getoption("--sqldiag-reports"))
    capture = Capture(name=name, reports_dir=reports)
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
    if broken:
        record = capture.run_dir / "record.json" if capture.run_dir else "?"
        pytest.fail(f"sqldiag budget exceeded: {'; '.join(broken)} (record: {record})",
                    pytrace=False)
    return result
