"""Per-process figures: each followed child's result reduced for the record, and totals.

A child measured itself under tracemalloc (see follow.py), so its RSS is taken net of
tracemalloc's own memory. A forked child's RSS also counts the pages it still shares with
its parent; its USS (memory only it holds) is kept beside RSS for that reason.
"""

from __future__ import annotations

from typing import Any

from sqldiag.analysis import net_rss
from sqldiag.attribution.categories import TRACED, summed

MAX_POINTS = 240  # a child's timeline is thinned to this many samples in the record
TOP_SITES = 8


def _net_at(phases: list[dict], name: str) -> int | None:
    for phase in phases:
        if phase.get("name") == name:
            return int(phase["rss"]) - int(phase.get("tracemalloc_overhead") or 0)
    return None


def _thin(values: list, keep: int) -> list:
    step = max(1, -(-len(values) // keep))
    return values[::step]


def child_entry(result: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of one child's result."""
    from sqldiag.measure import AFTER_GC, READY

    timeline = result.get("timeline") or {}
    net = net_rss(timeline)
    uss = [u for u in timeline.get("uss") or [] if u is not None]
    breakdowns = result.get("breakdowns") or {}
    categories = {moment: {c: int(breakdowns[key]["categories"].get(c, 0)) for c in TRACED}
                  for moment, key in (("peak", "peak"), ("end", "end")) if key in breakdowns}
    sites = (breakdowns.get("peak") or {}).get("sites") or []
    return {
        "pid": result.get("pid"),
        "ppid": result.get("ppid"),
        "name": result.get("name"),
        "start_method": result.get("start_method"),
        "failure": result.get("failure"),
        "wall_time_s": result.get("wall_time_s"),
        "t0_unix": result.get("t0_unix"),
        "start_rss": _net_at(result.get("phases") or [], READY),
        "peak_rss": max(net, default=None),
        "end_rss": _net_at(result.get("phases") or [], AFTER_GC),
        "peak_uss": max(uss, default=None),
        "traced_peak": result.get("traced_peak"),
        "categories": categories,
        "sites": [{k: s.get(k) for k in ("category", "file", "function", "line", "size",
                                           "count")} for s in sites[:TOP_SITES]],
        "timeline": {"t": _thin(timeline.get("t") or [], MAX_POINTS),
                     "rss": _thin(net, MAX_POINTS)},
    }


def process_table(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per process (the main one first, then each followed child) and a total.

    The total adds each process's own peak: the processes need not peak at the same
    moment, so it is an upper bound on what they held at once."""
    children = (record.get("processes") or {}).get("children") or []
    if not children:
        return []
    summary = record.get("summary") or {}
    main_cats = (record.get("categories") or {}).get("peak") or {}
    timeline = record.get("timeline") or {}
    uss = [u - (o or 0) for u, o in zip(timeline.get("uss") or [], timeline.get("overhead")
                                        or [0] * len(timeline.get("uss") or [])) if u]
    rows = [{"process": "main", "pid": None, "start_method": "",
             "peak_rss": summary.get("peak_rss"), "peak_uss": max(uss, default=None),
             "end_rss": summary.get("end_rss"), "failure": None,
             "categories": {c: int(main_cats.get(c, 0)) for c in TRACED}}]
    for child in children:
        rows.append({"process": str(child.get("name") or "child"), "pid": child.get("pid"),
                     "start_method": child.get("start_method") or "",
                     "peak_rss": child.get("peak_rss"), "peak_uss": child.get("peak_uss"),
                     "end_rss": child.get("end_rss"), "failure": child.get("failure"),
                     "categories": dict((child.get("categories") or {}).get("peak") or {})})
    total_cats = summed([r["categories"] for r in rows])
    rows.append({"process": "all (sum of peaks)", "pid": None,
                 "start_method": "", "failure": None,
                 "peak_rss": sum(int(r["peak_rss"] or 0) for r in rows),
                 "peak_uss": sum(int(r["peak_uss"] or 0) for r in rows) or None,
                 "end_rss": sum(int(r["end_rss"] or 0) for r in rows),
                 "categories": total_cats})
    return rows
