"""Assemble a run record from the results of measured passes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqldiag import __version__, environment
from sqldiag.analysis import analyse
from sqldiag.database import driver_distribution
from sqldiag.leak import leak_verdict
from sqldiag.model import fit_model
from sqldiag.probes import allocator
from sqldiag.record import FORMAT, SCHEMA_VERSION


def assemble_record(*, created: datetime, scenario: dict, database: dict, command: str,
                    bare: dict, traced: dict | None, full_rows: int | None,
                    failure: str | None, calibration: list[dict] | None = None,
                    repeated: dict | None = None) -> dict[str, Any]:
    """`bare` gives RSS, phases and the trim probe; `traced` the categories. They may be the
    same pass (in-process capture), in which case RSS is taken net of tracemalloc."""
    scale = None
    method = "rss-only"
    if traced:
        same_size = full_rows is None or traced.get("rows") in (None, full_rows)
        scale = None if same_size else full_rows / traced["rows"]
        method = "in-process-trace" if traced is bare else (
            "full-trace" if same_size else "scaled-trace")
    model = fit_model(calibration) if calibration else None
    if model and model["fits"]:
        method, scale = "calibrated", None
    record: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "sqldiag_version": __version__,
        "created_utc": created.isoformat(timespec="seconds"),
        "status": {"complete": failure is None, "reason": failure},
        "command": command,
        "scenario": scenario,
        "database": database,
        "environment": environment.describe(driver_distribution(database.get("driver") or "")),
        "measurement": {
            "method": method,
            "trace_depth": traced["trace_depth"] if traced else 0,
            "traced_rows": traced.get("rows") if traced else None,
            "scale": scale,
            "sample_period_s": bare.get("sample_period_s", 0.05),
            "uss_sampled": bare["uss_sampled"],
            "census": bool(traced and traced["types"]),
            "traced_peak": traced["traced_peak"] if traced else None,
            "traced_wall_time_s": traced["wall_time_s"] if traced else None,
            "analysis": traced.get("analysis") if traced else None,
            "traced_phases": traced["phases"] if traced and traced is not bare else [],
            "snapshots": traced["snapshots"] if traced else [],
            "model": model,
            "calibration": [{"rows": c["rows"], "wall_time_s": c["wall_time_s"],
                             "peak_total": c["breakdowns"].get("peak", {}).get("total"),
                             "end_total": c["breakdowns"].get("end", {}).get("total")}
                            for c in calibration or []],
            "full_rows": full_rows,
        },
        "timeline": bare["timeline"],
        "phases": bare["phases"],
        "breakdowns": traced["breakdowns"] if traced else {},
        "types": traced["types"] if traced else {},
        "allocator": {"glibc": allocator.glibc_version(), "malloc_trim": bare["malloc_trim"],
                      "mallinfo": bare["mallinfo"], "pymalloc": bare.get("pymalloc") or {}},
        "wall_time_s": bare["wall_time_s"],
        "digest": bare.get("digest"),
        "processes": {"children_peak_rss": bare.get("child_peaks") or {},
                      "children": bare.get("children") or (traced or {}).get("children") or []},
        "retention": bare.get("retention"),
        "repeat": ({"rows": repeated["rows"], "iterations": repeated["iterations"],
                    **leak_verdict(repeated["iterations"])} if repeated else None),
    }
    record.update(analyse(record))
    return record
