"""How a run was measured, in sentences: the one home of that prose, which the report
shows and the verdict's explained-share finding abbreviates (findings.measured_basis)."""

from __future__ import annotations

from sqldiag.analysis.summary import Summary
from sqldiag.record.parts import Method, Record
from sqldiag.record.phases import PEAK
from sqldiag.units import fmt_bytes


def _rss_source(record: Record) -> str:
    how, live = record.measurement, record.snapshot
    if live is not None:
        return (f"A snapshot of running process {live.pid}, {live.installed_s:,.0f} s after "
                "it called sqldiag.install(): RSS and USS as read then and at each "
                "snapshot or metrics refresh since (the timeline); start RSS is the RSS "
                "at install().")
    if how.method is Method.IN_PROCESS:
        return (f"One run, in the measured program's own process, under tracemalloc "
                f"({how.trace_depth} frames); RSS sampled every {how.sample_period_s} s, less "
                "tracemalloc's tables and (estimated) each trace's chunk, is still the "
                "traced process's: its raw snapshots and the free chunks freed traces leave "
                "are in it. Untraced (the default), RSS is the program's own.")
    uss = " (with USS)" if how.uss_sampled else ""
    return (f"RSS, its peak, end and the malloc_trim probe come from a bare run of the "
            f"workload at full size, sampled every {how.sample_period_s} s by a separate "
            f"watcher process{uss}; no tracing.")


def _free_at_peak(summary: Summary) -> str:
    """The free memory the measured peak held, of which the prediction has only what
    native memory left (empty without the allocators' figures at the peak)."""
    parts = summary.parts_peak
    if parts is None or not parts.free or summary.model_error is None:
        return ""
    return (f" At the peak the allocators held {fmt_bytes(parts.free)} of free memory "
            f"(glibc's free chunks {fmt_bytes(parts.glibc_free)}, pymalloc's free blocks "
            f"and pools {fmt_bytes(parts.pymalloc_free)}), measured in the bare run: what "
            "the work freed before its peak and the allocators kept. Of it the prediction "
            "has only what native memory left (its line is of native memory at its "
            "high); what Python's own objects left, which depends on how the workers' "
            "frees and allocations interleaved, it does not predict.")


def _categories_source(record: Record, summary: Summary) -> str | None:
    how = record.measurement
    if how.method is Method.CALIBRATED and how.model is not None:
        residual = how.model.linearity.get(PEAK)
        worst = f"{residual * 100:.1f}%" if residual is not None else "n/a"
        text = (f"Categories come from tracemalloc ({how.trace_depth} frames) at "
                f"{', '.join(str(r) for r in how.model.rows)} rows, run beside the bare run; a "
                f"fixed + per-row line per category (worst residual {worst} at peak) predicts "
                f"{how.full_rows or 0:,} rows")
        if summary.model_rejected:
            text += (", but the prediction exceeded the measured RSS growth and was rejected: "
                     f"the figures are those at {how.model.rows[-1]} rows, unscaled")
        added = (f", {fmt_bytes(summary.predicted_overhead)} that the allocators add to "
                 "them" if summary.predicted_overhead is not None else "")
        if summary.predicted_native is not None:
            added += (f" and {fmt_bytes(summary.predicted_native)} of native memory at its "
                      "high, which glibc keeps once freed")
        text += (f". Predicted peak RSS {fmt_bytes(summary.predicted_peak_rss)} (the start, "
                 f"the live objects predicted{added}) against {fmt_bytes(summary.peak_rss)} "
                 "measured")
        if summary.model_error is not None:
            text += f" ({summary.model_error * 100:+.1f}%)"
        return text + "." + _free_at_peak(summary)
    if how.method is Method.SCALED_TRACE:
        return (f"Categories come from a second run under tracemalloc ({how.trace_depth} "
                f"frames) on {how.traced_rows or 0:,} rows, scaled x{how.scale or 1:.1f} to the "
                "full row count (statement_cache is not scaled).")
    if how.method is Method.FULL_TRACE:
        return (f"Categories come from a second run of the same size under tracemalloc "
                f"({how.trace_depth} frames).")
    if how.method is Method.RSS_ONLY:
        return "No tracing: no categories."
    live = record.snapshot
    if live is not None:
        holders = (f", the kept-alive-by walk {live.holders_s:.2f} s"
                   if live.holders_s is not None else "")
        return (f"A census of its live objects while it kept running took {live.seconds:.2f} "
                f"s in all (the census {live.census_s:.2f} s of CPU{holders}); the longest "
                f"any thread of the process waited meanwhile was {live.paused_s:.3f} s. "
                "other_python is the growth since install(); SQLAlchemy's objects are "
                "counted whole, whenever they were made. No allocation sites (nothing is "
                "traced in a live process).")
    if how.method is Method.CENSUS:
        paused = sum(c.seconds for c in how.censuses)
        walls = [c.wall_s for c in how.censuses if c.wall_s is not None]
        wall = f" ({sum(walls):.2f} s from their start to their end)" if walls else ""
        text = (f"Nothing was traced: the program ran at full size, and {len(how.censuses)} "
                f"censuses of its live objects, taken at new highs of RSS and at the end, "
                f"paused it for {paused:.2f} s of CPU in all{wall}. Each census counts the "
                "gc-tracked objects by kind and sizes an even sample of each kind "
                "(instances of a mapped class are alike); categories at peak are those of "
                "the census that found the most alive")
        if summary.scale != 1:
            text += (f", extended x{summary.scale:.2f} to the peak of RSS: "
                     + ("the Python bytes pymalloc held then beyond what it counted, shared "
                        "by what each category grew between the last two censuses before "
                        "the peak" if summary.parts_peak is not None
                        else "scaled by the RSS growth, what grew taken to keep its mix"))
        return text + (". No allocation sites: `sqldiag run --trace-depth N` (or "
                       "capture(trace_depth=N)) traces them, at tracemalloc's cost.")
    return None


def how_measured(record: Record, summary: Summary) -> list[str]:
    """The method, then what it cost and what it may miss."""
    sentences = [_rss_source(record)]
    own = record.measurement.own_rss
    if own:
        sentences.append(
            f"RSS is the whole process's: sqldiag's own modules and threads had raised it "
            f"{fmt_bytes(own)} above the interpreter's before the program started. Not all "
            "of that is measuring's cost: the standard library modules among them are "
            "shared with the program, which would import many of them alone.")
    categories = _categories_source(record, summary)
    if categories:
        sentences.append(categories)
    high = record.allocator.at_high
    if high is not None and summary.parts_peak is not None:
        sentences.append(
            "The rest of RSS is split with the allocators' own figures (glibc's mallinfo2, "
            "pymalloc's statistics), read at the start, after the work and at each new "
            f"high of RSS during it; the reading at the peak was at {fmt_bytes(high.rss)} "
            f"({high.t:.1f} s): native memory in use is glibc's growth in use less the "
            "live Python bytes outside pymalloc.")
    return sentences


def measuring_notes(record: Record) -> list[str]:
    """Figures about the measuring itself: the traced peak against the snapshot the
    categories come from, and what reducing the snapshots cost."""
    how, peak = record.measurement, record.breakdowns.get(PEAK)
    notes = []
    if how.traced_peak and peak is not None:
        rows = f" at {how.traced_rows:,} rows" if how.traced_rows else ""
        notes.append(f"In the traced run{rows}, tracemalloc's own peak of traced memory was "
                     f"{fmt_bytes(how.traced_peak)}; the peak snapshot the categories come from "
                     f"held {fmt_bytes(peak.total)} ({100 * peak.total / how.traced_peak:.0f}%): "
                     "snapshots are taken when traced memory reaches a new high, so a short "
                     "transient between samples can be missed.")
    if how.analysis is not None:
        notes.append(f"Reducing {how.analysis.traces:,} raw traces to categories took "
                     f"{how.analysis.seconds} s.")
    return notes
