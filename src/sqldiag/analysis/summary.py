"""Key figures of a run, computed from its record's measurements (pure functions).

RSS figures come from the bare pass (no tracing), or net of tracemalloc's own memory in
an in-process run. Traced categories come from the traced pass: the calibration model's
prediction at full size, or the traced run's breakdown scaled by rows (statement_cache
excepted; see record.categories.row_scale). The rest of the RSS growth above the
"ready" phase is split into measured parts by analysis.rss_parts: native memory in use,
allocator overhead, free memory the allocators keep, and what is unaccounted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqldiag.analysis.rss_parts import AT_PEAK, RssParts, rss_parts
from sqldiag.record.categories import (
    ALLOCATOR_FREE,
    ALLOCATOR_OVERHEAD,
    MAPPED_FILES,
    NATIVE_MEMORY,
    PYTHON_UNATTRIBUTED,
    STATEMENT_CACHE,
    TRACED,
    UNACCOUNTED,
    holder_scale,
    row_scale,
)
from sqldiag.record.codec import JsonValue
from sqldiag.record.parts import (
    MODEL_MAX_RESIDUAL,
    Breakdown,
    CensusMark,
    Holder,
    HoldersAt,
    Method,
    QueryAt,
    Record,
)
from sqldiag.record.phases import AFTER_GC, AFTER_TRIM, END, MOMENTS, PEAK, READY, WORKLOAD_END

# A prediction above this share of the measured RSS growth cannot be live memory: the
# workload's memory did not grow with the row count (streaming, paging), so the model is
# rejected and the largest calibration run's own figures are used unscaled.
MODEL_REJECT_RATIO = 1.25
# A census taken below the peak RSS is extended to it (census_fill) by at most this
# factor in all: by the Python bytes measured at the peak, or, without the allocators'
# figures, by the RSS growth.
MAX_CENSUS_FILL = 2.0
MAX_CENSUS_SCALE = 1.5
# ... unless another census saw an RSS higher than this share above it.
CENSUS_RSS_LEVEL = 0.02
# A sample this close to a census (the watcher samples every 50 ms) may have seen it.
CENSUS_MARGIN_S = 0.06
# A census's lists (the collector's listing, 8 bytes an object, and the objects it picks
# from it) raised RSS by 11 bytes an object (8.1 MB at 713,000 objects). A census whose
# lists could reach this share of the RSS it read, or this many objects, has its window
# left out of the timeline; smaller ones leave it as it is (a short program takes one as
# often as every 50 ms: their windows would cover all of its samples).
CENSUS_LISTS_BYTES_PER_OBJECT = 16
CENSUS_LISTS_SHARE = 0.02
CENSUS_LISTS_OBJECTS = 1_000_000


@dataclass(frozen=True)
class Summary(JsonValue):
    """The key figures in bytes (None where the run did not measure them)."""

    start_rss: int | None
    peak_rss: int | None
    peak_t: float | None
    end_rss: int | None
    trim_rss: int | None
    trim_released: int | None
    traced_peak_snapshot: int | None
    traced_end: int | None
    scale: float
    explained_share: float | None
    predicted_peak_rss: int | None
    parts_peak: RssParts | None  # RSS growth as measured parts, at the peak ...
    parts_end: RssParts | None  # ... after the work ...
    parts_trim: RssParts | None  # ... and after malloc_trim(0)
    model_rejected: bool
    model_error: float | None
    predicted_overhead: int | None = None  # of the prediction, what the allocators add
    predicted_native: int | None = None  # ... and native memory

    @property
    def growth(self) -> int | None:
        """Peak RSS above the start."""
        if self.peak_rss is None or self.start_rss is None:
            return None
        return self.peak_rss - self.start_rss


def _net_at(record: Record, name: str) -> int | None:
    phase = record.phase(name)
    return phase.net_rss if phase is not None else None


def program_rss(record: Record) -> list[int]:
    """The timeline's RSS as the program alone has it: net of tracemalloc's own memory,
    and with the samples taken while a census ran, or after the workload's end, left
    out (a census's own lists of the live objects are not the program's, and the
    program waits meanwhile)."""
    net = record.timeline.net_rss()
    # a census is filed at its start; from there to its end (the program waits while
    # it holds the GIL, and runs on between its turns when it takes them)
    windows = [(c.t - CENSUS_MARGIN_S, c.t + (c.wall_s or c.seconds) + CENSUS_MARGIN_S)
               for c in record.measurement.censuses if _lists_matter(c)]
    # after the workload's end what runs is sqldiag's (the census of types at the end,
    # the holders' walk, gc.collect, the malloc_trim probe): a type census of 400,000
    # objects raised a bare run's RSS 5% above the workload's own peak
    ended, after = record.phase(WORKLOAD_END), record.phase(AFTER_GC)
    if ended is not None and after is not None:
        windows.append((ended.t + 1e-6, float("inf")))
    if not windows:
        return net
    kept = [rss if not any(lo <= t <= hi for lo, hi in windows) else 0
            for t, rss in zip(record.timeline.t, net)]
    return kept if any(kept) else net


def _census_readings(record: Record) -> list[tuple[float, int]]:
    """(t, RSS) as each census of an untraced run began, before its own lists, up to the
    workload's end: the program's own RSS between the watcher's samples (a psycopg 3
    fetchall held its rows and libpq's result together for less than a sample's spacing;
    a census read 146 MB where the samples peaked at 118 MB)."""
    if record.measurement.method is not Method.CENSUS:
        return []
    ended = record.phase(WORKLOAD_END)
    return [(c.t, c.rss) for c in record.measurement.censuses
            if c.rss and (ended is None or c.t <= ended.t)]


def _lists_matter(census: CensusMark) -> bool:
    """Whether a census's own lists may have shown in RSS beside the program's memory."""
    return (census.objects >= CENSUS_LISTS_OBJECTS
            or census.objects * CENSUS_LISTS_BYTES_PER_OBJECT
            >= CENSUS_LISTS_SHARE * census.rss)


def _peak(record: Record) -> tuple[int | None, float | None]:
    """The program's highest RSS and its moment: the timeline's, or a census's reading."""
    points = [*zip(record.timeline.t, program_rss(record)), *_census_readings(record)]
    if not points:
        return None, None
    t, rss = max(points, key=lambda point: point[1])
    return rss, t


def _peak_net(record: Record) -> int | None:
    return _peak(record)[0]


def model_rejected(record: Record) -> bool:
    """True when the calibration model cannot describe this run (see the thresholds)."""
    how = record.measurement
    if how.model is None or not how.full_rows:
        return False
    residual = how.model.linearity.get(PEAK)
    if residual is not None and residual > MODEL_MAX_RESIDUAL:
        return True
    predicted = sum(how.model.predict(PEAK, how.full_rows).values())
    start, peak = _net_at(record, READY), _peak_net(record)
    if start is None or peak is None:
        return False
    return predicted > MODEL_REJECT_RATIO * max(peak - start, 1)


def scaled(breakdown: Breakdown | None, scale: float) -> dict[str, int]:
    """A breakdown's traced categories taken to full size by `scale`."""
    if breakdown is None:
        return {}
    return {c: int(breakdown.category(c) * row_scale(c, scale)) for c in TRACED}


def census_scale(record: Record) -> float:
    """How much the peak census is scaled to reach the peak RSS: its categories with
    census_fill's bytes over its categories alone (1 when not a census run, or when
    nothing was added)."""
    breakdown = record.breakdowns.get(PEAK)
    base = sum(breakdown.category(c) for c in TRACED) if breakdown is not None else 0
    added = sum(census_fill(record).values())
    return round((base + added) / base, 4) if base and added else 1.0


def census_fill(record: Record) -> dict[str, int]:
    """Bytes added to each category of the peak census to reach the peak of RSS: a
    census is taken at a high of RSS, and the program grows on until the next one.

    Where the allocators were read at the peak, what is added is pymalloc's bytes in use
    then that the census's categories do not count (measured, and no more than RSS grew
    after the census), shared out by what each category grew from the census before the
    last one to the last one before the peak (what was growing then: driver buffers in
    flight that a worker holds for a moment do not, a load's ORM objects do); where they
    were not, the census is scaled by the RSS
    growth (what grew keeps its mix), unless another census saw a higher RSS; at most
    MAX_CENSUS_FILL or MAX_CENSUS_SCALE times the census in all; {} when not a census
    run."""
    breakdown = record.breakdowns.get(PEAK)
    if record.measurement.method is not Method.CENSUS or breakdown is None or \
            not breakdown.rss:
        return {}
    base = {c: breakdown.category(c) for c in TRACED}
    total = sum(base.values())
    start, (peak, peak_t) = _net_at(record, READY), _peak(record)
    if not total or start is None or peak is None or breakdown.rss >= peak \
            or breakdown.rss <= start:
        return {}
    parts = rss_parts(record, AT_PEAK, peak - start, total)
    if parts is None:
        return _filled_by_rss(record, base, start, peak)
    # what came after the census: no more than RSS grew meanwhile (Python memory that no
    # census counts, untracked strings say, stays unattributed)
    missing = min(parts.python_unattributed, int((MAX_CENSUS_FILL - 1) * total),
                  peak - breakdown.rss)
    weights = _recent_growth(record, peak_t) or base
    weights.pop(STATEMENT_CACHE, None)  # compiled once, not grown by the load
    shares = sum(weights.values())
    if missing <= 0 or not shares:
        return {}
    return {c: int(missing * w / shares) for c, w in weights.items() if w}


def _filled_by_rss(record: Record, base: dict[str, int], start: int,
                   peak: int) -> dict[str, int]:
    """census_fill without the allocators' figures: the census scaled by RSS growth."""
    census_rss = record.breakdowns[PEAK].rss or 0
    if any(c.rss > census_rss * (1 + CENSUS_RSS_LEVEL) for c in record.measurement.censuses):
        return {}  # RSS rose further for something else than what this census found
    scale = (peak - start) / (census_rss - start)
    if scale > MAX_CENSUS_SCALE:
        return {}
    grown = {c: int(b * row_scale(c, scale)) - b for c, b in base.items()}
    return {c: added for c, added in grown.items() if added > 0}


def _recent_growth(record: Record, peak_t: float | None) -> dict[str, int]:
    """What each category grew between the last two censuses at or before the peak of
    RSS ({} with fewer than two, or where nothing grew)."""
    marks = [c for c in record.measurement.censuses if c.categories
             and (peak_t is None or c.t <= peak_t)]
    if len(marks) < 2:
        return {}
    before, last = marks[-2].categories, marks[-1].categories
    grown = {c: last.get(c, 0) - before.get(c, 0) for c in TRACED}
    return {c: g for c, g in grown.items() if g > 0}


def peak_factors(record: Record) -> dict[str, float]:
    """Per category, what the peak census's bytes are multiplied by at the peak of RSS
    (census_fill over the census; 1 for every category that got nothing)."""
    breakdown = record.breakdowns.get(PEAK)
    fill = census_fill(record)
    if breakdown is None:
        return {}
    return {c: (breakdown.category(c) + added) / breakdown.category(c)
            for c, added in fill.items() if breakdown.category(c)}


def peak_queries(record: Record) -> tuple[QueryAt, ...]:
    """What each statement's results held at peak, scaled as the peak census is, with
    what followed child processes' statements held at theirs; largest first."""
    breakdown = record.breakdowns.get(PEAK)
    factors = peak_factors(record)
    merged: dict[tuple[str, str, int, str], QueryAt] = {}
    own = breakdown.queries if breakdown is not None else ()
    if not own:
        own, factors = retention_queries(record), {}
    children = [q for child in record.processes.children for q in child.queries]
    for query, scaled_by in [(q, factors) for q in own] + [(q, {}) for q in children]:
        key = _query_key(query)
        held = {c: int(b * scaled_by.get(c, 1.0)) for c, b in query.categories.items()}
        known = merged.get(key)
        if known is not None:
            held = {c: held.get(c, 0) + known.categories.get(c, 0)
                    for c in held.keys() | known.categories.keys()}
            query = replace(query, executions=query.executions + known.executions,
                            rows=query.rows + known.rows, objects=query.objects + known.objects)
        merged[key] = replace(query, categories=held)
    return tuple(sorted(merged.values(), key=lambda q: (-q.total, -q.executions)))


def _query_key(query: QueryAt) -> tuple[str, str, int, str]:
    return (query.statement, query.file, query.line, query.function)


def instances_counted(record: Record) -> bool:
    """Whether the by-query table counts the instances alive (a census does; a traced
    run's table is the bytes allocated below each statement's line)."""
    breakdown = record.breakdowns.get(PEAK)
    return not (breakdown is not None and breakdown.queries and breakdown.traced is not None)


def queries_measured(record: Record) -> str:
    """How the by-query bytes were measured, when not by a census of the run itself."""
    retention = record.retention
    breakdown = record.breakdowns.get(PEAK)
    if not instances_counted(record):
        return ("the bytes tracemalloc traced below each statement's line at the traced "
                "peak (a traced run does not count the instances alive)")
    if breakdown is not None and breakdown.queries or retention is None or \
            not retention.queries:
        return ""
    size = (f"{retention.rows:,} rows x {record.workers} workers"
            if retention.rows and retention.rows != record.rows else "full size")
    return (f"each statement's share of every category from a census of an untraced run "
            f"at {size}, applied to the peak's categories")


def retention_queries(record: Record) -> tuple[QueryAt, ...]:
    """A scenario's statements at peak: each statement's share of every category, as a
    census of the untraced retention run found it, applied to the peak's categories;
    executions and rows as the bare pass counted them at full size."""
    retention = record.retention
    held = retention.queries if retention is not None else ()
    if not held and not record.statements:
        return ()
    census = retention.categories if retention is not None else {}
    peak = traced_categories(record, PEAK) if PEAK in record.breakdowns else {}
    factor = {c: peak.get(c, 0) / b for c, b in census.items() if b > 0}
    counted = {_query_key(q): q for q in record.statements}
    rows_scale = record.rows / retention.rows if record.rows and retention and \
        retention.rows else 1.0
    out = []
    for query in held:
        categories = {c: int(b * factor[c]) for c, b in query.categories.items()
                      if c in factor}
        objects = int(query.objects * rows_scale)
        full = counted.pop(_query_key(query), None)
        out.append(replace(query, categories=categories, objects=objects,
                           executions=full.executions if full else query.executions,
                           rows=full.rows if full else query.rows))
    return tuple(out) + tuple(counted.values())


def rss_inflated_by_tracing(record: Record) -> bool:
    """True when the RSS is that of a process tracemalloc traced while it ran (the
    program traced in its own process): less tracemalloc's tables and each trace's chunk,
    it still holds the raw snapshots and the free chunks that freed traces leave in
    glibc's heap, which the program alone never has. Its RSS cannot be split into the
    program's parts, nor the categories' share of it stated."""
    return record.measurement.method is Method.IN_PROCESS


def _predicted_besides(record: Record) -> tuple[int | None, int | None]:
    """What the allocators add to the predicted live bytes at the peak, and the native
    memory then (the calibration model's lines for them), each None when there is no
    such prediction."""
    how = record.measurement
    if how.model is None or not how.full_rows:
        return None, None
    # native memory has a line of its own: it stands where the categories' was rejected
    # (their figures are then the largest calibration run's, and so is their overhead)
    native = how.model.predict_native(PEAK, how.full_rows)
    if model_rejected(record):
        return None, native
    return how.model.predict_overhead(PEAK, how.full_rows), native


def traced_categories(record: Record, moment: str) -> dict[str, int]:
    """Traced bytes per category at full size: the calibration model's prediction, or the
    traced run's breakdown scaled by rows (1 when it ran at full size)."""
    how = record.measurement
    breakdown = record.breakdowns.get(moment)
    if how.model is not None and how.full_rows:
        if model_rejected(record):
            return scaled(breakdown, 1.0)
        predicted = how.model.predict(moment, how.full_rows)
        if predicted:
            return {c: predicted.get(c, 0) for c in TRACED}
    if how.method is Method.CENSUS:
        fill = census_fill(record) if moment == PEAK else {}
        return {c: b + fill.get(c, 0) for c, b in scaled(breakdown, 1.0).items()}
    return scaled(breakdown, how.scale or 1.0)


def summarise(record: Record) -> Summary:
    start, end, trim = (_net_at(record, READY), _net_at(record, AFTER_GC),
                        _net_at(record, AFTER_TRIM))
    peak_net, peak_at = _peak(record)
    peak_traced = sum(traced_categories(record, PEAK).values()) or None
    end_traced = sum(traced_categories(record, END).values()) \
        if END in record.breakdowns else None
    added, native = _predicted_besides(record)
    predicted_peak = (start + peak_traced + (added or 0) + (native or 0)) \
        if start is not None and peak_traced else None
    growth = (peak_net - start) if peak_net is not None and start is not None else None
    inflated = rss_inflated_by_tracing(record)
    explained = (peak_traced / growth) if peak_traced and growth and growth > 0 \
        and not inflated else None
    end_growth = (end - start) if end is not None and start is not None else None
    trim_growth = (trim - start) if trim is not None and start is not None else None
    return Summary(
        start_rss=start, peak_rss=peak_net, peak_t=peak_at, end_rss=end, trim_rss=trim,
        # RSS may rise meanwhile (the probe's own pages): nothing was given back then
        trim_released=max(0, end - trim) if end is not None and trim is not None else None,
        traced_peak_snapshot=peak_traced, traced_end=end_traced,
        scale=census_scale(record) if record.measurement.method is Method.CENSUS
        else record.measurement.scale or 1.0,
        explained_share=round(explained, 4) if explained is not None else None,
        predicted_peak_rss=predicted_peak, predicted_overhead=added,
        predicted_native=native,
        parts_peak=None if inflated else rss_parts(record, AT_PEAK, growth, peak_traced or 0),
        parts_end=None if inflated else rss_parts(record, AFTER_GC, end_growth,
                                                  end_traced or 0),
        parts_trim=None if inflated else rss_parts(record, AFTER_TRIM, trim_growth,
                                                   end_traced or 0),
        model_rejected=model_rejected(record),
        model_error=round(predicted_peak / peak_net - 1, 4)
        if predicted_peak and peak_net else None)


def categories_at(record: Record, moment: str, growth: int | None,
                  parts: RssParts | None) -> dict[str, int]:
    """Traced categories at full size, then the rest of the RSS growth as measured parts
    (native memory, allocator overhead, free memory, unaccounted); without the
    allocators' figures, all of the rest is unaccounted."""
    if moment not in record.breakdowns:
        return {}
    cats = traced_categories(record, moment)
    if not cats or growth is None or rss_inflated_by_tracing(record):
        return cats
    if parts is None:
        cats[UNACCOUNTED] = max(0, growth - sum(cats.values()))
        return cats
    cats.update({PYTHON_UNATTRIBUTED: parts.python_unattributed,
                 NATIVE_MEMORY: parts.native, ALLOCATOR_OVERHEAD: parts.overhead,
                 ALLOCATOR_FREE: parts.free, MAPPED_FILES: parts.mapped_files,
                 UNACCOUNTED: parts.rest})
    return cats


def all_categories(record: Record, summary: Summary) -> dict[str, dict[str, int]]:
    """Categories at peak and at end, for the moments the record has a breakdown of."""
    reached = {PEAK: summary.peak_rss, END: summary.end_rss}
    parts = {PEAK: summary.parts_peak, END: summary.parts_end}
    start = summary.start_rss
    return {moment: categories_at(record, moment, (reached[moment] - start)
                                  if start is not None and reached[moment] is not None
                                  else None, parts[moment])
            for moment in MOMENTS if moment in record.breakdowns}


def _scaled_holders(record: Record, holders: tuple[Holder, ...]) -> tuple[Holder, ...]:
    """Holders measured at the retention run's rows, scaled to the full row count."""
    retention = record.retention
    if not holders or retention is None:
        return ()
    if not record.rows or not retention.rows:  # measured at full size (a live snapshot)
        return holders
    scale = record.rows / retention.rows
    return tuple(Holder(h.holder, h.objects, int(h.bytes * holder_scale(h.holder, scale)),
                        h.chain) for h in holders)


def kept_alive(record: Record) -> tuple[Holder, ...]:
    """Kept-alive-by at the workload end, scaled to the full row count."""
    return _scaled_holders(record, record.retention.holders if record.retention else ())


def kept_alive_peak(record: Record) -> HoldersAt | None:
    """Kept-alive-by at the mark inside the workload where the holders held most."""
    peak = record.retention.peak if record.retention else None
    if peak is None:
        return None
    holders = _scaled_holders(record, peak.holders)
    if not holders:
        return None
    return HoldersAt(peak.label, sum(h.bytes for h in holders), holders)
