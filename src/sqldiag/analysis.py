"""From a record's measurements to key figures, categories with allocator_free, and a verdict.

Reads only the measured parts of a record, so a saved record can be re-analysed.

RSS figures come from the bare pass (no tracing). Traced categories come from the traced
pass; when it ran on fewer rows they are scaled by rows / traced rows (all categories but
statement_cache, whose size does not follow the row count). `allocator_free` at a moment is
the bare pass's RSS growth above its "ready" phase that the (scaled) traced bytes do not
account for: free memory kept by pymalloc and glibc, plus untraced C buffers (the
drivers' own, libpq/libmysqlclient).
"""

from __future__ import annotations

from typing import Any

from sqldiag.attribution.categories import (
    ALLOCATOR_FREE,
    DRIVER_ROWS,
    IDENTITY_MAP,
    ORM_OBJECTS,
    OTHER_PYTHON,
    SQLALCHEMY_ROWS,
    STATEMENT_CACHE,
    TRACED,
    summed,
)
from sqldiag.model import predict
from sqldiag.units import fmt_bytes

READY, AFTER_GC, AFTER_TRIM = "ready", "after gc.collect()", "after malloc_trim(0)"


def _phase(record: dict, name: str) -> dict | None:
    return next((p for p in record.get("phases", []) if p.get("name") == name), None)


def _net(entry: dict | None, overhead_key: str = "tracemalloc_overhead") -> int | None:
    if not entry:
        return None
    return int(entry["rss"]) - int(entry.get(overhead_key) or 0)


def _scaled(breakdown: dict | None, scale: float) -> dict[str, int]:
    if not breakdown:
        return {}
    return {c: int(breakdown["categories"].get(c, 0) * (1 if c == STATEMENT_CACHE else scale))
            for c in TRACED}


# A prediction above this share of the measured RSS growth cannot be live memory: the
# workload's memory did not grow with the row count (streaming, paging), so the model is
# rejected and the largest calibration run's own figures are used unscaled.
MODEL_REJECT_RATIO = 1.25
# Calibration points further than this from their line: the workload is not linear in
# rows at these sizes (a batch or page limit, or a missed transient peak).
MODEL_MAX_RESIDUAL = 0.03


def model_rejected(record: dict) -> bool:
    how = record.get("measurement", {})
    model, rows = how.get("model"), how.get("full_rows")
    if not (model and rows):
        return False
    residual = (model.get("linearity") or {}).get("peak")
    if residual is not None and residual > MODEL_MAX_RESIDUAL:
        return True
    predicted = sum(predict(model, "peak", rows).values())
    start, peak = _net(_phase(record, READY)), _peak_net(record)
    if start is None or peak is None:
        return False
    return predicted > MODEL_REJECT_RATIO * max(peak - start, 1)


def traced_categories(record: dict, moment: str) -> dict[str, int]:
    """Traced bytes per category at full size: the calibration model's prediction, or the
    traced run's breakdown scaled by rows (1 when it ran at full size)."""
    how = record.get("measurement", {})
    model, rows = how.get("model"), how.get("full_rows")
    if model and rows:
        if model_rejected(record):
            return _scaled(record.get("breakdowns", {}).get(moment), 1.0)
        predicted = predict(model, moment, rows)
        if predicted:
            return {c: predicted.get(c, 0) for c in TRACED}
    return _scaled(record.get("breakdowns", {}).get(moment), how.get("scale") or 1.0)


def net_rss(timeline: dict) -> list[int]:
    """The timeline's RSS net of tracemalloc's own memory (zero in untraced runs)."""
    rss = timeline.get("rss", [])
    overhead = timeline.get("overhead") or [0] * len(rss)
    return [r - (o or 0) for r, o in zip(rss, overhead)]


def _peak_net(record: dict) -> int | None:
    return max(net_rss(record.get("timeline", {})), default=None)


def summarise(record: dict) -> dict[str, Any]:
    timeline = record.get("timeline", {})
    net = net_rss(timeline)
    start = _net(_phase(record, READY))
    end = _net(_phase(record, AFTER_GC))
    trim = _net(_phase(record, AFTER_TRIM))
    peak_net = max(net, default=None)
    peak_at = timeline["t"][net.index(peak_net)] if net else None
    scale = record.get("measurement", {}).get("scale") or 1.0
    breakdowns = record.get("breakdowns", {})
    peak_traced = sum(traced_categories(record, "peak").values()) or None
    end_traced = sum(traced_categories(record, "end").values()) if "end" in breakdowns \
        else None
    predicted_peak = (start + peak_traced) if start is not None and peak_traced else None
    growth = (peak_net - start) if peak_net is not None and start is not None else None
    explained = (peak_traced / growth) if peak_traced and growth and growth > 0 else None
    return {
        "start_rss": start,
        "peak_rss": peak_net,
        "peak_t": peak_at,
        "end_rss": end,
        "trim_rss": trim,
        "trim_released": (end - trim) if end is not None and trim is not None else None,
        "traced_peak_snapshot": peak_traced,
        "traced_end": end_traced,
        "scale": scale,
        "explained_share": round(explained, 4) if explained is not None else None,
        "predicted_peak_rss": predicted_peak,
        "gap_end": rss_gap(record, AFTER_GC),
        "gap_trim": rss_gap(record, AFTER_TRIM),
        "model_rejected": model_rejected(record),
        "model_error": round(predicted_peak / peak_net - 1, 4)
        if predicted_peak and peak_net else None,
    }


def rss_gap(record: dict, phase: str) -> dict[str, int] | None:
    """RSS above the "ready" phase at `phase`, split by who holds it: pymalloc's arenas
    (live blocks, free blocks and free pools inside arenas that cannot be returned while
    any block in them lives), glibc's free chunks (mallinfo2), and the rest (live C
    allocations, untraced buffers, memory the OS has not reclaimed)."""
    allocator = record.get("allocator") or {}
    py, glibc = allocator.get("pymalloc") or {}, allocator.get("mallinfo") or {}
    start, now = _phase(record, READY), _phase(record, phase)
    if not (start and now and py.get(READY) and py.get(phase)):
        return None
    growth = _net(now) - _net(start)
    arenas = py[phase]["arena_bytes"] - py[READY]["arena_bytes"]
    live = py[phase]["used_bytes"] - py[READY]["used_bytes"]
    glibc_free = (glibc.get(phase, {}).get("free_bytes", 0)
                  - glibc.get(READY, {}).get("free_bytes", 0)) if glibc.get(phase) else 0
    return {"rss_growth": growth, "pymalloc_arenas": arenas, "pymalloc_live": live,
            "pymalloc_free": arenas - live, "glibc_free": glibc_free,
            "glibc_arenas": (glibc.get(phase) or {}).get("arenas"),
            "rest": growth - arenas - glibc_free}


def categories_at(record: dict, moment: str, growth: int | None) -> dict[str, int]:
    """Traced categories at full size plus allocator_free from the RSS growth."""
    cats = traced_categories(record, moment) if record.get("breakdowns", {}).get(moment) \
        else {}
    if cats and growth is not None:
        cats[ALLOCATOR_FREE] = max(0, growth - sum(cats.values()))
    return cats


def _top(cats: dict[str, int], n: int = 2) -> list[tuple[str, int]]:
    traced = [(c, b) for c, b in cats.items() if c != ALLOCATOR_FREE and b > 0]
    return sorted(traced, key=lambda cb: cb[1], reverse=True)[:n]


def verdict(record: dict, summary: dict, categories: dict[str, dict[str, int]]) -> list[str]:
    """Plain-language findings, most important first."""
    lines: list[str] = []
    suggestions: list[str] = []
    status = record.get("status", {})
    if not status.get("complete", True):
        lines.append(f"INCOMPLETE RUN: {status.get('reason')}; the figures cover what was "
                     "measured before it stopped.")
    params = record.get("scenario", {}).get("params", {})
    rows, workers = params.get("rows") or 0, params.get("workers") or 0
    start, peak = summary.get("start_rss"), summary.get("peak_rss")
    peak_cats = categories.get("peak", {})
    if start is not None and peak is not None:
        growth = peak - start
        top = ", ".join(f"{c} {fmt_bytes(b)}" for c, b in _top(peak_cats, 3))
        traced = summary.get("traced_peak_snapshot")
        snapshots = record.get("measurement", {}).get("snapshots") or []
        at_end = [s["traced"] for s in snapshots if s.get("label") == "workload end"]
        highest = max((s["traced"] for s in snapshots), default=0)
        held = (at_end[0] / highest if at_end and highest else 0) * (traced or 0)
        rows_heavy = sum(peak_cats.get(c, 0) for c in (ORM_OBJECTS, DRIVER_ROWS, SQLALCHEMY_ROWS))
        consumed = (record.get("digest") or {}).get("rows")
        whole = consumed is None or consumed >= 0.9 * rows
        if (traced and rows and workers and whole and held >= 0.5 * traced
                and rows_heavy >= 0.5 * traced):
            per_row = traced / (rows * workers)
            suggestions.append(_streaming_fix(record, rows, workers, per_row, traced))
            lines.append(
                f"Peak RSS {fmt_bytes(peak)} ({fmt_bytes(growth)} above the start) = the whole "
                f"result set held {workers} times at once: {workers} workers x {rows:,} rows x "
                f"~{per_row:,.0f} bytes per row ({fmt_bytes(traced)} of live Python objects). "
                f"Largest: {top}.")
        elif traced:
            lines.append(f"Peak RSS {fmt_bytes(peak)} ({fmt_bytes(growth)} above the start); "
                         f"live Python objects at peak {fmt_bytes(traced)}; largest: {top}.")
        else:
            lines.append(f"Peak RSS {fmt_bytes(peak)} ({fmt_bytes(growth)} above the start); "
                         "not traced, so no categories.")
    repeat = record.get("repeat") or {}
    if repeat.get("line"):
        lines.append(f"{repeat['line']} (repeat runs at {repeat.get('rows', 0):,} rows)")
        if repeat.get("leak") and {IDENTITY_MAP, ORM_OBJECTS} & set(repeat.get("categories", {})):
            suggestions.append(
                "Fix: mapped objects pile up across runs: something long-lived (a Session never "
                "closed, a module-level cache) keeps them; scope Sessions to one unit of work "
                "and do not keep loaded objects; scenario session_leak shows this growth.")
    end, trim = summary.get("end_rss"), summary.get("trim_rss")
    traced_end = summary.get("traced_end")
    if start is not None and end is not None:
        left = end - start
        if traced_end is not None and left > 0 and traced_end < 0.5 * left:
            free = left - traced_end
            text = (f"RSS left after the work ({fmt_bytes(left)} above the start) is not live "
                    f"objects ({fmt_bytes(traced_end)} still traced) but free memory held by "
                    f"the allocator: {fmt_bytes(free)}.")
            if trim is not None:
                text += (f" malloc_trim(0) returned {fmt_bytes(summary['trim_released'])}; "
                         f"{fmt_bytes(max(trim - start, 0))} stays above the start.")
            gap = summary.get("gap_trim") or summary.get("gap_end")
            if gap and gap["pymalloc_arenas"] > 0.3 * max(left, 1):
                text += (f" Who holds it: pymalloc keeps {fmt_bytes(gap['pymalloc_arenas'])} "
                         f"more in arenas than at the start, {fmt_bytes(gap['pymalloc_free'])} "
                         "of it free but pinned (an arena is returned only when every block "
                         "in it is free, and a few survivors spread over many arenas keep "
                         f"them); glibc keeps {fmt_bytes(gap['glibc_free'])} free in "
                         f"{gap.get('glibc_arenas') or '?'} malloc arenas; "
                         f"{fmt_bytes(gap['rest'])} is elsewhere.")
            elif gap:
                text += (f" Who holds it: glibc keeps {fmt_bytes(gap['glibc_free'])} free, "
                         f"pymalloc {fmt_bytes(gap['pymalloc_arenas'])} in arenas, "
                         f"{fmt_bytes(gap['rest'])} elsewhere.")
            lines.append(text)
        elif traced_end is not None and left > 0:
            end_cats = categories.get("end", {})
            holders = ", ".join(f"{c} {fmt_bytes(b)}" for c, b in _top(end_cats, 2))
            lines.append(f"After the work {fmt_bytes(traced_end)} of Python objects are still "
                         f"alive ({holders}): something holds them (a cache, a Session, a "
                         "global); repeat the workload to tell a leak from a one-time cost.")
        elif left <= 0:
            lines.append("RSS returned to the start after the work.")
    if trim is not None and end is not None and start is not None and end - start > 0:
        released = summary.get("trim_released") or 0
        if released > 0.3 * (end - start) and released > 16 << 20:
            suggestions.append(
                f"Fix: RSS that stays up is glibc's free memory: calling malloc_trim(0) after "
                f"large batches gave back {fmt_bytes(released)} here; the long_text and "
                "long_text_arena_max scenarios (with --text-bytes 650) show it and "
                "MALLOC_ARENA_MAX side by side.")
    end_cats = categories.get("end", {})
    if end_cats.get(IDENTITY_MAP, 0) + end_cats.get(ORM_OBJECTS, 0) > 0.3 * max(
            summary.get("traced_end") or 0, 1) and (summary.get("traced_end") or 0) > 8 << 20:
        suggestions.append(
            "Fix: ORM objects outlive the work, as a Session that is never closed keeps them "
            "in its identity map: scope Sessions to one unit of work (with Session() as s:), or "
            "expunge_all() between batches; scenario session_leak shows the growth.")
    lines.extend(suggestions)
    followed = record.get("processes", {}).get("children") or []
    children = record.get("processes", {}).get("children_peak_rss") or {}
    if followed:
        lines.append(_children_line(followed))
    elif children:
        peaks = sorted(children.values(), reverse=True)
        lines.append(f"{len(peaks)} child processes peaked at {fmt_bytes(peaks[0])} RSS at most "
                     f"({fmt_bytes(sum(peaks))} summed); the figures above are the parent's.")
    share = summary.get("explained_share")
    if share is not None:
        other = peak_cats.get(OTHER_PYTHON, 0)
        traced = summary.get("traced_peak_snapshot") or 1
        how = record.get("measurement", {})
        if summary.get("model_rejected"):
            rows_used = (how.get("model") or {}).get("rows", [0])[-1]
            lines.append(
                f"Memory did not grow in proportion to the rows here (streaming or paging): "
                f"the calibration runs were not linear in rows, or a per-row model would "
                f"predict more live memory than RSS ever held, so the categories are those "
                f"measured at {rows_used:,} rows, unscaled.")
        basis = {"scaled-trace": f"traced at {how.get('traced_rows') or 0:,} rows and scaled "
                                 f"x{summary['scale']:.1f}",
                 "calibrated": "traced at " + ", ".join(
                     f"{r:,}" for r in (how.get("model") or {}).get("rows", [])) +
                               " rows, fitted as fixed + per-row cost"}.get(
            how.get("method"), "traced at full size")
        if summary.get("model_rejected"):
            basis = f"traced at {(how.get('model') or {}).get('rows', [0])[-1]:,} rows, unscaled"
        lines.append(f"The categories ({basis}) explain {share:.0%} of the RSS growth at peak "
                     f"({other / traced:.0%} of traced bytes fell in other_python); the rest is "
                     "allocator overhead and memory outside Python's allocators.")
    return lines


def _children_line(children: list[dict]) -> str:
    """What the followed child processes held, in one sentence."""
    methods: dict[str, int] = {}
    for child in children:
        method = str(child.get("start_method") or "?")
        methods[method] = methods.get(method, 0) + 1
    held = summed([(child.get("categories") or {}).get("peak") or {} for child in children])
    how = ", ".join(f"{method} x{count}" for method, count in sorted(methods.items()))
    peaks = [int(c.get("peak_rss") or 0) for c in children]
    top = ", ".join(f"{c} {fmt_bytes(b)}" for c, b in _top(held, 3))
    return (f"{len(children)} child processes were followed ({how}); at their own peaks they "
            f"held {fmt_bytes(sum(held.values()))} of Python objects ({top}) and "
            f"{fmt_bytes(sum(peaks))} RSS summed (largest {fmt_bytes(max(peaks))}); the "
            "figures above are the main process's, the processes table has each one.")


def _streaming_fix(record: dict, rows: int, workers: int, per_row: float,
                   traced: float) -> str:
    """Streaming keeps a batch per worker instead of the whole result: estimate the saving
    from this run's own bytes per row, and name the scenarios that demonstrate it."""
    batch = min(1000, rows)
    kept = workers * batch * per_row
    saving = max(traced - kept, 0)
    params = record.get("scenario", {}).get("params", {})
    command = (f"sqldiag compare {record.get('scenario', {}).get('name', 'leak_repro')} "
               f"fix_yield_per fix_core_partitions fix_keyset_pages --rows {rows} "
               f"--workers {workers} --url {record.get('database', {}).get('url', '')}")
    if params.get("text_bytes"):
        command += f" --text-bytes {params['text_bytes']}"
    return (f"Fix: stream instead of materialising whole results. With yield_per({batch}) on "
            f"a server-side cursor (scenario fix_yield_per), Core partitions() (fix_core_"
            f"partitions) or keyset pages (fix_keyset_pages) each worker holds about {batch:,} "
            f"rows, not {rows:,}: about {fmt_bytes(saving)} less live memory at peak, "
            f"estimated from this run's {per_row:,.0f} bytes per row. Measure it: {command}")


def _scaled_holders(record: dict, holders: list[dict]) -> list[dict]:
    """Holders measured at the retention run's rows, scaled to the full row count
    (caches are not scaled)."""
    retention = record.get("retention") or {}
    rows = (record.get("scenario", {}).get("params") or {}).get("rows")
    measured_rows = retention.get("rows")
    if not holders or not rows or not measured_rows:
        return []
    scale = rows / measured_rows
    return [{**h, "bytes": int(h["bytes"] * (1 if h["holder"] == "compiled-SQL caches"
                                             else scale))} for h in holders]


def kept_alive(record: dict) -> list[dict]:
    """Kept-alive-by at the workload end, scaled to the full row count."""
    return _scaled_holders(record, (record.get("retention") or {}).get("holders") or [])


def kept_alive_peak(record: dict) -> dict | None:
    """Kept-alive-by at the mark inside the workload where the holders held most."""
    peak = (record.get("retention") or {}).get("peak") or {}
    holders = _scaled_holders(record, peak.get("holders") or [])
    if not holders:
        return None
    return {"label": str(peak.get("label") or ""), "holders": holders}


def _holders_line(when: str, holders: list[dict]) -> str | None:
    big = [h for h in holders if h["bytes"] >= 1 << 20]
    if not big:
        return None
    text = f"Kept alive {when} by: " + ", ".join(
        f"{h['holder']} {fmt_bytes(h['bytes'])}" for h in big) + "."
    chained = next((h for h in big if h["chain"]), None)
    if chained:
        text += f" {chained['holder']}: " + " -> ".join(chained["chain"]) + "."
    return text


def analyse(record: dict) -> dict[str, Any]:
    """The derived parts of a record: summary, categories, kept-alive view, verdict."""
    summary = summarise(record)
    breakdowns = record.get("breakdowns", {})
    start = summary["start_rss"]
    growth = {"peak": summary["peak_rss"], "end": summary["end_rss"]}
    categories = {key: categories_at(record, key, (growth[key] - start)
                                     if start is not None and growth[key] is not None else None)
                  for key in ("peak", "end") if breakdowns.get(key)}
    holders = kept_alive(record)
    peak_holders = kept_alive_peak(record)
    lines = verdict(record, summary, categories)
    found = [_holders_line(f"at the workload's peak ({peak_holders['label']})",
                           peak_holders["holders"]) if peak_holders else None,
             _holders_line("at the workload's end", holders)]
    for text in reversed([t for t in found if t]):
        lines.insert(1 if lines else 0, text)
    return {"summary": summary, "categories": categories, "kept_alive": holders,
            "kept_alive_peak": peak_holders, "verdict": lines}
