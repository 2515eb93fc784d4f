"""The JSON a command prints with --json: where the run is, its status and analysis."""

from __future__ import annotations

import json
from pathlib import Path

from sqldiag.analysis.analyse import Analysis
from sqldiag.record.codec import encode
from sqldiag.record.parts import Record


def run_json(record: Record, analysis: Analysis, run_dir: Path | None = None) -> str:
    """The run's status, summary, categories and verdict as indented JSON."""
    out: dict = {}
    if run_dir is not None:
        out["run_dir"] = str(run_dir.resolve())
    out["status"] = encode(record.status)
    figures = analysis.to_json()
    out.update({key: figures[key] for key in ("summary", "categories", "verdict")})
    out["findings"] = figures["findings"]
    out["queries"] = figures["queries"]
    out["queries_measured"] = figures["queries_measured"]
    out["instances_counted"] = figures["instances_counted"]
    out["kept_alive"] = figures["kept_alive"]
    if record.snapshot is not None:
        out["snapshot"] = encode(record.snapshot)
    return json.dumps(out, indent=2)
