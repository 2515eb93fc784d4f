"""A followed child's pass result, reduced for the record.

A child measured itself under tracemalloc (see follow.py), so its RSS is taken net of
tracemalloc's own memory. A forked child's RSS also counts the pages it still shares with
its parent; its USS (memory only it holds) is kept beside RSS for that reason.
"""

from __future__ import annotations

from sqldiag.capture.results import PassResult
from sqldiag.record.categories import TRACED
from sqldiag.record.parts import ChildProcess, ChildTimeline, Site
from sqldiag.record.phases import AFTER_GC, MOMENTS, PEAK, READY

MAX_POINTS = 240  # a child's timeline is thinned to this many samples in the record
TOP_SITES = 8


def _thin(values: list, keep: int) -> tuple:
    step = max(1, -(-len(values) // keep))
    return tuple(values[::step])


def child_entry(result: PassResult) -> ChildProcess:
    """What the record keeps of one child's result."""
    net = result.timeline.net_rss()
    uss = [u for u in result.timeline.uss if u is not None]
    start, end = (next((p.net_rss for p in result.phases if p.name == name), None)
                  for name in (READY, AFTER_GC))
    breakdowns = result.breakdowns
    categories = {moment: {c: breakdowns[moment].category(c) for c in TRACED}
                  for moment in MOMENTS if moment in breakdowns}
    sites = breakdowns[PEAK].sites if PEAK in breakdowns else ()
    return ChildProcess(
        pid=result.pid, ppid=result.ppid, name=result.name,
        start_method=result.start_method, failure=result.failure,
        wall_time_s=result.wall_time_s, t0_unix=result.t0_unix,
        start_rss=start, peak_rss=max(net, default=None), end_rss=end,
        peak_uss=max(uss, default=None), traced_peak=result.traced_peak,
        categories=categories,
        sites=tuple(Site(category=s.category, file=s.file, function=s.function, line=s.line,
                         size=s.size, count=s.count) for s in sites[:TOP_SITES]),
        timeline=ChildTimeline(t=_thin(list(result.timeline.t), MAX_POINTS),
                               rss=_thin(net, MAX_POINTS)),
        queries=breakdowns[PEAK].queries if PEAK in breakdowns else ())


