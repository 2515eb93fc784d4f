"""The original report's code as a pytest test with a memory budget (bench/run_cost.py
runs it: `pytest bench/pytest_original_report.py`; the plugin is registered
by sqldiag's entry point).

SQLDIAG_BENCH_URL and SQLDIAG_BENCH_WORKERS say what to load; the budget is generous:
the bench reads the figures from the record the plugin writes, not from pass or fail.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import original_report  # the bench folder holds it


@pytest.mark.sqldiag(peak_rss="20GB")
def test_original_report(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["original_report.py", os.environ["SQLDIAG_BENCH_URL"],
                                      os.environ.get("SQLDIAG_BENCH_WORKERS", "10")])
    original_report.main()
