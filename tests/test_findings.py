"""Each finding of the verdict, on hand-made records: what fires it, what it computes,
and what keeps it quiet. No database, no measuring."""

from __future__ import annotations

from dataclasses import replace

import handmade
from handmade import MB

from sqldiag.analysis import findings as rules
from sqldiag.analysis.analyse import analyse
from sqldiag.analysis.findings import Section
from sqldiag.record.parts import (
    CalibrationModel,
    ChildProcess,
    Holder,
    HoldersAt,
    Iteration,
    Method,
    Processes,
    Repeat,
    Retention,
)


def fired(record) -> dict:
    return {f.rule: f for f in analyse(record).findings}


def test_every_rule_has_a_name_a_section_and_is_registered_once():
    names = [name for name, _, _ in rules.RULES]
    assert len(names) == len(set(names)) >= 15
    assert all(hasattr(rules, name) for name in names)


def test_whole_result_held_names_bytes_per_row_and_the_streaming_fix():
    found = fired(handmade.record(rows=1000, workers=10))
    whole = found["peak_is_whole_result"]
    # 800 MB traced over 10 workers x 1,000 rows
    assert whole.figures["bytes_per_row"] == 800 * MB / 10_000
    assert "held 10 times at once" in whole.text and "orm_objects 600 MB" in whole.text
    assert "peak_traced" not in found
    fix = found["fix_streaming"]
    assert fix.section is Section.FIX
    # streaming keeps 1,000 rows per worker: here all of them, so nothing is saved
    assert fix.figures["saving"] == 0
    bigger = fired(handmade.record(rows=100_000, workers=10))["fix_streaming"]
    assert bigger.figures["saving"] == 800 * MB - 10 * 1000 * (800 * MB / 1_000_000)


def test_whole_result_needs_results_held_at_the_end():
    found = fired(handmade.record(held_share=rules.HELD_AT_END_SHARE - 0.1))
    assert "peak_is_whole_result" not in found and "fix_streaming" not in found
    assert "peak_traced" in found


def test_whole_result_needs_rows_to_dominate():
    cats = {"other_python": 700 * MB, "orm_objects": 100 * MB}
    found = fired(handmade.record(peak_cats=cats))
    assert "peak_is_whole_result" not in found and "peak_traced" in found


def test_whole_result_needs_the_rows_consumed():
    rec = handmade.with_digest(handmade.record(rows=1000, workers=10), rows=500)
    assert "peak_is_whole_result" not in fired(rec)
    rec = handmade.with_digest(handmade.record(rows=1000, workers=10), rows=950)
    assert "peak_is_whole_result" in fired(rec)


def test_untraced_run_says_so():
    found = fired(handmade.record(method=Method.RSS_ONLY))
    assert "not traced" in found["peak_untraced"].text
    assert "peak_traced" not in found and "explained_share" not in found


def test_incomplete_run_comes_first():
    verdict = analyse(handmade.record(complete=False)).findings
    assert verdict[0].rule == "incomplete_run" and "INCOMPLETE RUN: stopped" in verdict[0].text


def test_sections_order_headline_fix_context():
    sections = [f.section for f in analyse(handmade.record()).findings]
    assert sections == sorted(sections)


def test_free_memory_after_work_names_what_the_allocators_hold():
    rec = handmade.record(start=50 * MB, end=250 * MB, end_cats={"other_python": 10 * MB})
    # pymalloc: 160 MB more arenas, 10 MB more of it in use; glibc: 30 MB more free and
    # 5 MB more in use (no Python object outside pymalloc: C memory)
    rec = handmade.with_allocators(rec, start_arenas=10 * MB, end_arenas=170 * MB,
                                   start_used=10 * MB, end_used=20 * MB,
                                   start_in_use=8 * MB, end_in_use=13 * MB,
                                   start_free=1 * MB, end_free=31 * MB)
    found = fired(rec)
    free = found["free_memory_after_work"]
    assert free.figures == {"left": 200 * MB, "traced_end": 10 * MB, "free": 180 * MB,
                            "native": 5 * MB, "unaccounted": 5 * MB}
    assert "180 MB is free memory the allocators keep (pymalloc 150 MB in arenas that live " \
        "blocks pin" in free.text
    assert "glibc 30 MB in 4 malloc arenas" in free.text
    assert "5.0 MB is C memory in use" in free.text and "5.0 MB is unaccounted" in free.text
    assert "objects_alive_after_work" not in found and "rss_returned" not in found


def test_python_memory_no_category_counted_after_the_work_is_called_alive_not_free():
    """A program's module-level cache of plain dicts of strings, measured by censuses:
    the garbage collector does not track such dicts, so the census counted 20 MB and
    pymalloc held 60 MB more in use. The verdict said the RSS left "is not live Python
    objects" while naming 60 MB of Python memory in use beside it."""
    rec = handmade.record(start=50 * MB, end=150 * MB, end_cats={"other_python": 20 * MB},
                          method=Method.CENSUS)
    # pymalloc: 82 MB more arenas, 80 MB more in use (20 MB counted, 60 MB not)
    rec = handmade.with_allocators(rec, start_arenas=10 * MB, end_arenas=92 * MB,
                                   start_used=10 * MB, end_used=90 * MB,
                                   start_in_use=8 * MB, end_in_use=10 * MB)
    found = fired(rec)
    assert "free_memory_after_work" not in found
    alive = found["objects_alive_after_work"]
    assert alive.figures["unattributed"] == 60 * MB
    assert alive.text.startswith("After the work 80 MB of Python objects are still alive "
                                 "(other_python 20 MB; 60 MB in pymalloc's blocks in use "
                                 "that no category counted: objects the garbage collector "
                                 "does not track"), alive.text


def test_python_objects_alive_after_work_name_the_code_of_the_modules_imported():
    """A program that imports SQLAlchemy during the work keeps its code alive after it:
    the census at the end counted it in other_python (8 MB of 54), and the verdict said
    only that "something holds them (a cache, a Session, a global)"."""
    rec = handmade.record(start=50 * MB, end=130 * MB, end_cats={"other_python": 54 * MB},
                          method=Method.CENSUS)
    end = replace(rec.breakdowns["end"], imported_code=8 * MB, imported_modules=193)
    rec = replace(rec, breakdowns={**rec.breakdowns, "end": end})
    alive = fired(rec)["objects_alive_after_work"]
    assert alive.text.startswith("After the work 54 MB of Python objects are still alive "
                                 "(other_python 54 MB, 8.0 MB of them the code of the 193 "
                                 "modules imported during the work): "), alive.text


def test_without_the_allocators_figures_nothing_is_called_free():
    rec = handmade.record(start=50 * MB, end=250 * MB, end_cats={"other_python": 10 * MB})
    free = fired(rec)["free_memory_after_work"]
    assert "free memory" not in free.text and "not measured" in free.text
    assert analyse(rec).categories["end"]["unaccounted"] == 190 * MB


def test_objects_alive_after_work_when_they_are_most_of_what_stays():
    rec = handmade.record(start=50 * MB, end=150 * MB,
                          end_cats={"identity_map": 30 * MB, "orm_objects": 50 * MB})
    found = fired(rec)
    assert "still alive" in found["objects_alive_after_work"].text
    assert "free_memory_after_work" not in found
    # and ORM objects are most of them, over the size that matters: scope the Session
    assert found["fix_session_scope"].figures["orm_at_end"] == 80 * MB


def test_session_fix_names_who_keeps_the_objects_and_blames_a_session_only_when_it_does():
    """A job's objects kept by a module-level cache, its Session closed: the fix named a
    Session that is never closed. It names the holders measured at the end, and the
    Session only when its identity maps are what holds them."""
    base = handmade.record(rows=None, start=50 * MB, end=150 * MB,
                           end_cats={"identity_map": 30 * MB, "orm_objects": 50 * MB})

    def held_by(*holders):
        return fired(replace(base, retention=Retention(rows=0, holders=holders)))[
            "fix_session_scope"].text

    cache = held_by(Holder("results held by cache.seen", 5, 40 * MB))
    assert "kept by what holds them: results held by cache.seen (40 MB)" in cache
    assert "Session" not in cache and "lru_cache" not in cache
    cached = held_by(Holder("results held by app.users_of (its lru_cache)", 20, 40 * MB))
    assert "results held by app.users_of (its lru_cache) (40 MB)" in cached
    assert "give it a maxsize" in cached and "cache_clear()" in cached
    both = held_by(Holder("Session identity maps", 1, 40 * MB),
                   Holder("results held by cache.seen", 5, 40 * MB))
    assert "results held by cache.seen (40 MB)" in both  # each holder has its fix
    assert "Session that is never closed" in both and "Session identity" not in both
    assert "Session that is never closed" in held_by(Holder("Session identity maps", 1, 40 * MB))
    assert "Session that is never closed" in held_by()  # not measured: the usual cause


def test_session_fix_leaves_a_leak_across_runs_to_the_leak_fix():
    runs = tuple(Iteration(run=i, traced=10 * MB + i * MB,
                           categories={"identity_map": i * MB // 2, "orm_objects": i * MB // 2})
                 for i in range(1, 5))
    rec = replace(handmade.record(start=50 * MB, end=150 * MB,
                                  end_cats={"identity_map": 30 * MB, "orm_objects": 50 * MB}),
                  repeat=Repeat(rows=1000, iterations=runs))
    found = fired(rec)
    assert "fix_leak_scope" in found and "fix_session_scope" not in found
    assert ", here" not in found["fix_leak_scope"].text
    cached = replace(rec, retention=Retention(rows=0, holders=(
        Holder("results held by cache.seen", 5, 40 * MB),)))
    assert "keeps them, here results held by cache.seen (40 MB); scope" in fired(cached)[
        "fix_leak_scope"].text


def test_session_fix_stays_quiet_under_its_minimum():
    small = rules.ORM_LEFT_MIN_BYTES // 2
    rec = handmade.record(start=50 * MB, end=50 * MB + small,
                          end_cats={"orm_objects": small})
    assert "fix_session_scope" not in fired(rec)


def test_rss_returned():
    found = fired(handmade.record(start=50 * MB, end=49 * MB))
    assert found["rss_returned"].text == "RSS returned to the start after the work."


def test_malloc_trim_fix_needs_a_large_enough_return():
    rec = handmade.record(start=50 * MB, end=250 * MB, trim=100 * MB,
                          end_cats={"other_python": MB})
    assert fired(rec)["fix_malloc_trim"].figures["released"] == 150 * MB
    small = handmade.record(start=50 * MB, end=250 * MB, trim=240 * MB,
                            end_cats={"other_python": MB})
    assert "fix_malloc_trim" not in fired(small)


def test_kept_alive_holders_are_scaled_and_named_from_a_megabyte():
    rec = replace(handmade.record(rows=10_000), retention=Retention(
        rows=1000,
        holders=(Holder("result held by its caller", 1, 2 * MB),
                 Holder("compiled-SQL caches", 1, 200_000)),
        peak=HoldersAt("worker 1 done", 3 * MB,
                       (Holder("pool results not yet fetched", 1, 3 * MB,
                               ("local self of wait()", "MapResult")),))))
    analysis = analyse(rec)
    by_holder = {h.holder: h.bytes for h in analysis.kept_alive}
    assert by_holder == {"result held by its caller": 20 * MB,
                         "compiled-SQL caches": 200_000}  # caches are not scaled
    found = fired(rec)
    assert "result held by its caller 20 MB" in found["kept_alive_at_end"].text
    assert "compiled-SQL" not in found["kept_alive_at_end"].text  # under a megabyte
    assert "local self of wait() -> MapResult" in found["kept_alive_at_peak"].text


def test_a_holder_named_by_its_root_is_not_named_again_before_its_path():
    rec = replace(handmade.record(rows=10_000), retention=Retention(
        rows=10_000, holders=(Holder("results held by __main__.kept", 5, 30 * MB,
                                     ("__main__.kept", "list", "list")),)))
    text = fired(rec)["kept_alive_at_end"].text
    assert "results held by __main__.kept 30 MB. Path to them: __main__.kept -> list -> " \
        "list." in text, text
    assert "__main__.kept: __main__.kept" not in text


def test_leak_over_repeated_runs_and_its_fix():
    runs = tuple(Iteration(run=i, traced=10 * MB + i * MB,
                           categories={"identity_map": i * MB // 2, "orm_objects": i * MB // 2},
                           types={"User": 1000 * i}) for i in range(1, 5))
    rec = replace(handmade.record(), repeat=Repeat(rows=1000, iterations=runs))
    found = fired(rec)
    assert found["leak_or_peak"].text.startswith("LEAK:")
    assert found["leak_or_peak"].figures["per_run"] == MB
    assert "fix_leak_scope" in found
    flat = tuple(replace(it, traced=10 * MB, categories={}) for it in runs)
    found = fired(replace(rec, repeat=Repeat(rows=1000, iterations=flat)))
    assert found["leak_or_peak"].text.startswith("No leak:")
    assert "fix_leak_scope" not in found


def test_followed_children_are_summed():
    children = tuple(ChildProcess(pid=100 + i, start_method="fork", peak_rss=100 * MB,
                                  categories={"peak": {"orm_objects": 30 * MB}})
                     for i in range(2))
    found = fired(replace(handmade.record(), processes=Processes(children=children)))
    text = found["followed_children"].text
    assert "2 child processes were followed (fork x2)" in text
    assert "held 60 MB of Python objects" in text and "200 MB RSS summed" in text
    assert "child_processes_rss" not in found
    # forked and untraced, they were only sampled: no "0 B of Python objects ()"
    sampled = tuple(replace(child, categories={}) for child in children)
    text = fired(replace(handmade.record(), processes=Processes(children=sampled))
                 )["followed_children"].text
    assert "held 200 MB RSS summed" in text and "Python objects" not in text
    assert "only sampled for RSS" in text and "--trace-depth N" in text
    one = fired(replace(handmade.record(), processes=Processes(children=(
        children[0], sampled[1]))))["followed_children"].text
    assert "held 30 MB of Python objects" in one
    assert "1 of them forked and only sampled for RSS" in one


def test_unfollowed_children_by_rss_only():
    rec = replace(handmade.record(),
                  processes=Processes(children_peak_rss={"1": 100 * MB, "2": 50 * MB}))
    assert fired(rec)["child_processes_rss"].figures == {"largest": 100 * MB,
                                                         "summed": 150 * MB}


def test_explained_share_says_how_categories_were_measured():
    found = fired(handmade.record(start=50 * MB, peak=1050 * MB))
    assert found["explained_share"].figures["explained_share"] == 0.8
    assert "traced at full size" in found["explained_share"].text
    assert found["explained_share"].section is Section.CONTEXT


def test_a_calibration_that_is_not_linear_is_rejected_and_said():
    model = CalibrationModel(rows=(100, 200, 300),
                             fits={"peak": {"orm_objects": (0.0, 1000.0)}},
                             linearity={"peak": rules_threshold_above()})
    rec = handmade.record(method=Method.CALIBRATED)
    rec = replace(rec, measurement=replace(rec.measurement, model=model, full_rows=1000))
    found = fired(rec)
    assert "did not grow in proportion" in found["model_not_linear"].text
    assert "traced at 300 rows, unscaled" in found["explained_share"].text


def rules_threshold_above() -> float:
    from sqldiag.analysis.summary import MODEL_MAX_RESIDUAL

    return MODEL_MAX_RESIDUAL * 2
