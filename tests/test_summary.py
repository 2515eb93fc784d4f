"""Key figures from hand-made records: RSS net of tracemalloc, scaling, the calibration
model, the measured parts of RSS. No database."""

from __future__ import annotations

from dataclasses import replace

import handmade
import pytest
from handmade import MB

from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.summary import summarise, traced_categories
from sqldiag.record.parts import CalibrationModel, CensusMark, Method, Phase, Timeline


def test_rss_figures_come_from_phases_and_timeline():
    s = summarise(handmade.record(start=50 * MB, peak=900 * MB, end=70 * MB, trim=60 * MB))
    assert (s.start_rss, s.peak_rss, s.end_rss, s.trim_rss) == (50 * MB, 900 * MB, 70 * MB,
                                                                60 * MB)
    assert s.trim_released == 10 * MB and s.peak_t == 4.0 and s.growth == 850 * MB
    # RSS that rose while malloc_trim ran: nothing given back, not a negative figure
    risen = summarise(handmade.record(start=50 * MB, peak=900 * MB, end=70 * MB, trim=71 * MB))
    assert risen.trim_released == 0 and risen.trim_rss == 71 * MB


def test_rss_is_taken_net_of_tracemalloc_own_memory():
    rec = handmade.record(start=50 * MB, peak=900 * MB)
    rec = replace(rec, timeline=Timeline(t=(0.0, 1.0), rss=(50 * MB, 900 * MB),
                                         overhead=(0, 300 * MB)),
                  phases=(Phase("ready", 0.0, 60 * MB, tracemalloc_overhead=10 * MB),))
    s = summarise(rec)
    assert s.peak_rss == 600 * MB and s.start_rss == 50 * MB


def test_scaled_trace_scales_every_category_but_the_statement_cache():
    rec = handmade.record(method=Method.SCALED_TRACE,
                          peak_cats={"orm_objects": 10 * MB, "statement_cache": MB})
    rec = replace(rec, measurement=replace(rec.measurement, scale=4.0, traced_rows=250))
    cats = traced_categories(rec, "peak")
    assert cats["orm_objects"] == 40 * MB and cats["statement_cache"] == MB


def test_calibrated_categories_are_the_model_prediction():
    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (1000.0, 500.0),
                                            "statement_cache": (2000.0, 0.0)}},
                             linearity={"peak": 0.001})
    rec = handmade.record(method=Method.CALIBRATED, peak=2 * 500 * 100_000)
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=100_000))
    cats = traced_categories(rec, "peak")
    assert cats["orm_objects"] == 1000 + 500 * 100_000
    assert cats["statement_cache"] == 2000
    assert not summarise(rec).model_rejected


def test_the_predicted_peak_is_of_rss_the_allocators_overhead_included():
    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (1000.0, 500.0)}},
                             linearity={"peak": 0.001}, overhead={"peak": (100.0, 20.0)})
    rec = handmade.record(method=Method.CALIBRATED, start=50 * MB, peak=2 * 500 * 100_000)
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=100_000))
    s = summarise(rec)
    assert s.predicted_overhead == 100 + 20 * 100_000
    assert s.predicted_peak_rss == 50 * MB + 1000 + 500 * 100_000 + s.predicted_overhead
    # an older record's model, without the overhead's line: live objects only
    older = replace(rec, measurement=replace(rec.measurement,
                                             model=replace(model, overhead={})))
    assert summarise(older).predicted_overhead is None
    assert summarise(older).predicted_peak_rss == 50 * MB + 1000 + 500 * 100_000


def test_the_free_memory_measured_at_the_peak_is_named_beside_the_prediction():
    # 1,000 MB of growth: the model predicts 800 MB of live objects; at the peak glibc
    # held 150 MB free (chunks the work freed) and pymalloc 50 MB of free blocks
    from sqldiag.analysis.method import how_measured

    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (0.0, 8 * MB / 1000)}},
                             linearity={"peak": 0.001})
    rec = handmade.record(method=Method.CALIBRATED, start=50 * MB, peak=1050 * MB)
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=100_000))
    rec = handmade.with_allocators(rec, start_arenas=10 * MB, end_arenas=10 * MB,
                                   end_used=0, peak=(860 * MB, 800 * MB, 0, 150 * MB))
    s = summarise(rec)
    assert s.model_error == pytest.approx(850 / 1050 - 1, abs=1e-4)
    assert s.parts_peak.free == 200 * MB
    text = " ".join(how_measured(rec, s))
    assert "allocators held 200 MB of free memory" in text
    assert "glibc's free chunks 150 MB, pymalloc's free blocks and pools 50 MB" in text
    # without the allocators' figures at the peak nothing is said of free memory
    bare = handmade.record(method=Method.CALIBRATED, start=50 * MB, peak=1050 * MB)
    bare = replace(bare, measurement=replace(bare.measurement, model=model,
                                             full_rows=100_000))
    assert "free memory" not in " ".join(how_measured(bare, summarise(bare)))


def test_native_memory_is_predicted_by_its_own_line_even_where_the_categories_fail():
    # the categories' line is rejected (its residual is too large): their figures are the
    # largest calibration run's, unscaled, and so no overhead is predicted for them; the
    # native memory's line still predicts the C memory the driver's result takes
    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (1000.0, 500.0)}},
                             linearity={"peak": 0.5}, overhead={"peak": (0.0, 20.0)},
                             native={"peak": (-5000.0, 1700.0)})
    rec = handmade.record(method=Method.CALIBRATED, start=50 * MB, peak=250 * MB,
                          peak_cats={"orm_objects": 2 * MB})
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=100_000))
    s = summarise(rec)
    assert s.model_rejected and s.predicted_overhead is None
    assert s.predicted_native == 1700 * 100_000 - 5000
    assert s.predicted_peak_rss == 50 * MB + 2 * MB + s.predicted_native


def test_a_prediction_above_what_rss_held_is_rejected():
    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (0.0, 1_000_000.0)}},
                             linearity={"peak": 0.0})
    rec = handmade.record(method=Method.CALIBRATED, peak_cats={"orm_objects": 3 * MB})
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=100_000))
    assert summarise(rec).model_rejected
    assert traced_categories(rec, "peak")["orm_objects"] == 3 * MB  # measured, unscaled


def test_without_allocator_figures_the_rest_is_unaccounted_never_negative():
    analysis = analyse(handmade.record(start=50 * MB, peak=1050 * MB))
    assert analysis.categories["peak"]["unaccounted"] == 200 * MB
    assert "allocator_free" not in analysis.categories["peak"]
    assert analysis.summary.explained_share == 0.8
    over = analyse(handmade.record(start=50 * MB, peak=500 * MB))
    assert over.categories["peak"]["unaccounted"] == 0


def test_rss_at_peak_is_a_sum_of_measured_parts():
    # 1000 MB of growth: 800 MB of Python objects (the categories), 700 MB of them in
    # pymalloc's blocks and so 100 MB in glibc's; glibc's in use grew 160 MB (60 MB of
    # it C memory), its free chunks 30 MB; pymalloc's arenas 720 MB (20 MB free)
    rec = handmade.with_allocators(
        handmade.record(start=50 * MB, peak=1050 * MB), start_arenas=10 * MB,
        end_arenas=30 * MB, start_used=5 * MB, end_used=12 * MB, start_in_use=10 * MB,
        end_in_use=20 * MB, peak=(730 * MB, 705 * MB, 170 * MB, 30 * MB))
    analysis = analyse(rec)
    parts = analysis.summary.parts_peak
    assert (parts.python_objects, parts.native, parts.pymalloc_free, parts.glibc_free,
            parts.rest) == (800 * MB, 60 * MB, 20 * MB, 30 * MB, 90 * MB)
    assert parts.python_outside_pymalloc == 100 * MB and parts.not_resident == 0
    peak = analysis.categories["peak"]
    assert peak["native_memory"] == 60 * MB and peak["allocator_free"] == 50 * MB
    assert peak["unaccounted"] == 90 * MB
    assert sum(peak.values()) == 1000 * MB
    assert "measured parts name 91% of it" in " ".join(analysis.verdict)


def test_python_bytes_a_census_measured_in_glibcs_blocks_are_not_native_memory():
    """A census sizes the identity maps' tables, long lists and imported classes one by
    one, and knows which are over pymalloc's 512 bytes: those are glibc's in use, so
    native memory is glibc's growth less them, and what pymalloc holds beyond the rest
    of the categories is Python memory no category counted. Without the figure, all the
    categories are taken to be in pymalloc's blocks while they fit."""
    # the same allocators as above: pymalloc 705 MB in use, glibc 160 MB grown; the
    # census counted 800 MB, 150 MB of it in blocks over 512 bytes
    def census_run(outside: int | None):
        rec = handmade.with_allocators(
            handmade.record(method=Method.CENSUS, start=50 * MB, peak=1050 * MB),
            start_arenas=10 * MB, end_arenas=30 * MB, start_used=5 * MB, end_used=12 * MB,
            start_in_use=10 * MB, end_in_use=20 * MB, peak=(730 * MB, 705 * MB, 170 * MB,
                                                             30 * MB))
        peak = replace(rec.breakdowns["peak"], outside_pymalloc=outside)
        return analyse(replace(rec, breakdowns={**rec.breakdowns, "peak": peak}))

    parts = census_run(150 * MB).summary.parts_peak
    assert parts.python_outside_pymalloc == 150 * MB
    assert parts.native == 10 * MB and parts.python_unattributed == 50 * MB
    assert parts.rest == 90 * MB  # the same bytes, named by what they are
    # measured below what the allocators imply: the allocators' figure stands
    parts = census_run(40 * MB).summary.parts_peak
    assert (parts.python_outside_pymalloc, parts.native) == (100 * MB, 60 * MB)
    assert census_run(None).summary.parts_peak.native == 60 * MB


def test_parts_that_add_to_more_than_rss_are_not_resident_never_negative():
    # glibc says 150 MB of free chunks, but RSS grew only 100 MB: malloc_trim handed
    # pages of them back; what RSS cannot hold is shown apart and no part goes negative
    rec = handmade.with_allocators(
        handmade.record(start=50 * MB, end=150 * MB, end_cats={"other_python": 1 * MB}),
        start_arenas=10 * MB, end_arenas=20 * MB, start_used=5 * MB, end_used=6 * MB,
        start_free=0, end_free=150 * MB)
    parts = analyse(rec).summary.parts_end
    assert parts.growth == 100 * MB and parts.not_resident == 60 * MB
    assert parts.glibc_free == 90 * MB and parts.rest == 0
    assert min(parts.native, parts.overhead, parts.pymalloc_free, parts.glibc_free,
               parts.rest) >= 0
    assert parts.python_objects + parts.native + parts.overhead + parts.free == 100 * MB


def _with_censuses(rec, *censuses: CensusMark, timeline: Timeline | None = None):
    """`rec` with these censuses in its measurement (and this timeline)."""
    rec = replace(rec, measurement=replace(rec.measurement, censuses=censuses))
    return rec if timeline is None else replace(rec, timeline=timeline)


def test_samples_taken_during_a_census_are_not_the_programs_peak():
    """A census lists every live object: its lists are sqldiag's memory, not the
    program's, and the program waits while it runs."""

    rec = handmade.record(method=Method.CENSUS, start=50 * MB, peak=900 * MB,
                          peak_cats={"orm_objects": 700 * MB})
    timeline = Timeline(t=(0.0, 1.0, 2.0, 2.5, 3.0, 4.0),
                        rss=(50 * MB, 500 * MB, 850 * MB, 960 * MB, 870 * MB, 300 * MB))
    # filed at its start, with the RSS it read then; it ran until 2.7
    census = CensusMark("census at an RSS high", t=2.3, rss=860 * MB, seconds=0.4,
                        objects=7_000_000, wall_s=0.4)
    rec = _with_censuses(rec, census, timeline=timeline)
    assert summarise(rec).peak_rss == 870 * MB  # 960 MB was the census's own lists


def test_a_small_programs_census_lists_are_not_its_peak_either():
    """In a program of 180 MB a census of 713,000 objects raised RSS by 8 MB: fewer
    objects than a large program's census, but as large a share of its RSS. A census of
    a few thousand objects leaves the samples around it as they are."""

    rec = handmade.record(method=Method.CENSUS, start=25 * MB, peak=170 * MB,
                          peak_cats={"orm_objects": 70 * MB})
    timeline = Timeline(t=(0.0, 1.0, 2.0, 2.05, 2.1, 2.5),
                        rss=(25 * MB, 120 * MB, 178 * MB, 188 * MB, 188 * MB, 180 * MB))
    census = CensusMark("census at an RSS high", t=2.01, rss=180 * MB, seconds=0.18,
                        objects=713_000, wall_s=0.18)
    rec = _with_censuses(rec, census, timeline=timeline)
    assert summarise(rec).peak_rss == 180 * MB  # its reading as it began
    few = replace(census, objects=5_000, seconds=0.001, wall_s=0.001)
    assert summarise(_with_censuses(rec, few)).peak_rss == 188 * MB


def test_a_census_reading_between_samples_can_be_the_peak():
    """RSS as a census began is the program's own (its lists come after): a high the
    watcher's samples, 50 ms apart, missed. After the workload's end it is sqldiag's."""

    rec = handmade.record(method=Method.CENSUS, start=50 * MB, peak=900 * MB,
                          peak_cats={"orm_objects": 700 * MB})
    between = CensusMark("census at an RSS high", t=3.5, rss=940 * MB, seconds=0.01,
                         objects=40_000, wall_s=0.01)
    late = CensusMark("after gc.collect()", t=5.2, rss=990 * MB, seconds=0.01,
                      objects=40_000, wall_s=0.01)
    seen = _with_censuses(rec, between, late)
    summary = summarise(seen)
    assert (summary.peak_rss, summary.peak_t) == (940 * MB, 3.5)
    assert summarise(rec).peak_rss == 900 * MB  # without it: the timeline's
    traced = replace(seen, measurement=replace(seen.measurement, method=Method.FULL_TRACE))
    assert summarise(traced).peak_rss == 900 * MB  # a traced run's censuses: none of this


def test_pages_of_libraries_mapped_in_during_the_work_are_a_part():
    rec = handmade.with_allocators(
        handmade.record(start=50 * MB, end=80 * MB, end_cats={"other_python": 5 * MB}),
        start_arenas=10 * MB, end_arenas=15 * MB, start_used=5 * MB, end_used=10 * MB)
    rec = replace(rec, allocator=replace(rec.allocator, file_rss={"ready": 8 * MB,
                                                                  "after gc.collect()": 28 * MB}))
    parts = analyse(rec).summary.parts_end
    assert parts.mapped_files == 20 * MB and parts.rest == 5 * MB
    assert analyse(rec).categories["end"]["mapped_files"] == 20 * MB



def test_native_memory_gets_a_slope_only_where_it_grows_with_the_rows():
    from sqldiag.capture.calibration import fit_if_growing

    rows = [400.0, 800.0, 1200.0]
    # a buffered result in the driver's C memory: a line, 2 KB a row
    fixed, per_row = fit_if_growing(rows, [0.8e6, 1.6e6, 2.4e6])
    assert abs(per_row - 2000) < 1e-6 and abs(fixed) < 1e-3
    # connections and caches: ~0.85 MB whatever the rows, with a few hundred KB of noise
    # that a slope would multiply by a full-size row count
    assert fit_if_growing(rows, [887e3, 807e3, 891e3]) == (pytest.approx(861666.7), 0.0)
    assert fit_if_growing(rows, [700e3, 800e3, 900e3])[1] == 0.0  # grows by 200 KB only
    # libpq's whole results beside 0.5 MB fixed (measured at their high): less than
    # twice the smallest, still a slope
    fixed, per_row = fit_if_growing(rows, [1.12e6, 1.72e6, 2.10e6])
    assert 1200 < per_row < 1250
    # the middle run's workers held fewer results at once: still a slope, the largest
    # run's high being the most
    assert fit_if_growing(rows, [0.96e6, 0.62e6, 2.68e6])[1] > 2000
    # the largest run's high is not the most: no slope
    assert fit_if_growing(rows, [1.06e6, 1.61e6, 1.25e6])[1] == 0.0


def _census_below_the_peak(census_rss: int = 700 * MB, **allocators: int):
    """A census run whose peak census (driver 50, orm 100, identity 20 MB) was taken at
    700 MB, below the peak of 1,000 MB; the census before it found orm at 60 MB and
    identity at 12 MB, the same driver buffers in flight."""

    found = {"driver_rows": 50 * MB, "orm_objects": 100 * MB, "identity_map": 20 * MB,
             "statement_cache": 1 * MB}
    rec = handmade.record(method=Method.CENSUS, start=50 * MB, peak=1000 * MB,
                          peak_cats=found)
    before = CensusMark("census at an RSS high", t=2.0, rss=500 * MB, seconds=0.1,
                        objects=1000, categories={"driver_rows": 50 * MB,
                                                  "orm_objects": 60 * MB,
                                                  "identity_map": 12 * MB})
    last = CensusMark("census at an RSS high", t=3.0, rss=700 * MB, seconds=0.1,
                      objects=2000, categories=found)
    rec = _with_censuses(replace(rec, breakdowns={
        **rec.breakdowns, "peak": replace(rec.breakdowns["peak"], rss=census_rss)}),
        before, last)
    if allocators:
        rec = handmade.with_allocators(rec, start_arenas=0, end_arenas=0, end_used=0,
                                       peak=(900 * MB, allocators["used"], 0, 0))
    return rec


def test_a_census_below_the_peak_is_filled_by_the_python_bytes_measured_there():
    """pymalloc's bytes in use at the peak that the census did not count are shared by
    what grew between the last two censuses: ORM objects and the identity map, not the
    driver buffers a worker holds for a moment, nor the statement cache."""
    rec = _census_below_the_peak(used=171 * MB + 60 * MB)  # 60 MB more than counted
    cats = traced_categories(rec, "peak")
    assert cats["orm_objects"] == 100 * MB + 50 * MB  # 40 of the 48 MB that grew
    assert cats["identity_map"] == 20 * MB + 10 * MB
    assert cats["driver_rows"] == 50 * MB and cats["statement_cache"] == 1 * MB
    summary = summarise(rec)
    assert summary.scale == pytest.approx(231 / 171, abs=1e-3)
    assert summary.parts_peak.python_unattributed == 0
    # never more than twice what the census counted, nor than RSS grew after it
    capped = traced_categories(_census_below_the_peak(used=171 * MB + 900 * MB), "peak")
    assert sum(capped.values()) == pytest.approx(2 * 171 * MB, rel=1e-6)
    near = _census_below_the_peak(used=171 * MB + 60 * MB, census_rss=990 * MB)
    assert sum(traced_categories(near, "peak").values()) == pytest.approx(181 * MB, abs=2)


def test_without_the_allocators_figures_a_census_is_scaled_by_rss_growth():
    rec = _census_below_the_peak()
    cats = traced_categories(rec, "peak")
    scale = (1000 - 50) / (700 - 50)
    assert cats["orm_objects"] == int(100 * MB * scale)
    assert cats["driver_rows"] == int(50 * MB * scale)
    assert cats["statement_cache"] == 1 * MB  # compiled once
    # a later census at a higher RSS found less alive: RSS rose for something else
    higher = CensusMark("census at an RSS high", t=3.5, rss=800 * MB, seconds=0.1,
                        objects=1500)
    rec = replace(rec, measurement=replace(
        rec.measurement, censuses=(*rec.measurement.censuses, higher)))
    assert traced_categories(rec, "peak")["orm_objects"] == 100 * MB
