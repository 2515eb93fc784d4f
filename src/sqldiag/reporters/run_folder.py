"""Where a run lands: its folder with record.json and report.html (shared by the commands
and the capture() API)."""

from __future__ import annotations

from pathlib import Path

from sqldiag.analysis.analyse import Analysis
from sqldiag.record.parts import Record
from sqldiag.record.store import new_run_dir, save_record
from sqldiag.reporters.html import REPORT_NAME, write_report


def save_run(record: Record, analysis: Analysis, reports_dir: Path, name: str) -> Path:
    """A new run folder under `reports_dir` holding the record and its HTML report."""
    run_dir = new_run_dir(reports_dir, name)
    save_record(record, run_dir)
    write_report(record, analysis, run_dir / REPORT_NAME)
    return run_dir
