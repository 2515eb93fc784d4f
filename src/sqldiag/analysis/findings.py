"""The verdict as a table of findings: each rule detects one thing in a run, computes
its figures and words its sentence. Rules are pure functions of the record and the
figures analysed from it; each is named, and its thresholds are named constants here.

The verdict lists headline findings first (what happened), then the fixes that fit,
then context on the method (child processes, how the categories were measured); within
a section, in the order of this file.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqldiag.analysis.leak import LeakVerdict
from sqldiag.analysis.rss_parts import RssParts
from sqldiag.analysis.summary import Summary, rss_inflated_by_tracing
from sqldiag.record.categories import (
    DRIVER_ROWS,
    HOLDER_IDENTITY,
    IDENTITY_MAP,
    LRU_CACHE_ROOT,
    ORM_OBJECTS,
    OTHER_PYTHON,
    SQLALCHEMY_ROWS,
    TRACED,
    summed,
)
from sqldiag.record.codec import JsonValue
from sqldiag.record.parts import ChildProcess, Holder, HoldersAt, Method, QueryAt, Record
from sqldiag.record.phases import END, PEAK, WORKLOAD_END
from sqldiag.units import fmt_bytes

# -- thresholds -------------------------------------------------------------------------
# The whole result set is held at once when, at the workload's end (results still held),
# traced memory is at least this share of the traced peak ...
HELD_AT_END_SHARE = 0.5
# ... and rows (driver, Core, ORM) are at least this share of the traced peak ...
ROW_CATEGORIES_SHARE = 0.5
# ... and the scenario consumed at least this share of its rows (when it counted them).
ROWS_CONSUMED_SHARE = 0.9
# Rows a streaming fix keeps per worker (yield_per, partitions, pages).
STREAM_BATCH_ROWS = 1000
# RSS left after the work is free memory, not live objects, when the Python memory still
# in use (what the categories count, and pymalloc's blocks in use beyond it) is below this
# share of it.
TRACED_LEFT_SHARE = 0.5
# of the Python memory left, the share not counted by a category that the verdict names
UNCOUNTED_LEFT_SHARE = 0.1
# malloc_trim is a fix worth naming when it gave back this share of what stayed, and at
# least this much.
TRIM_FIX_SHARE = 0.3
TRIM_FIX_MIN_BYTES = 16 << 20
# C memory in use at the peak is a driver's whole result when it is this share of the
# growth, and at least this much.
NATIVE_FIX_SHARE = 0.3
NATIVE_FIX_MIN_BYTES = 4 << 20
# ORM objects outlive the work when they are this share of what is still traced, and
# what is traced is at least this much.
ORM_LEFT_SHARE = 0.3
ORM_LEFT_MIN_BYTES = 8 << 20
# A holder is named in the verdict from this size on.
HOLDER_MIN_BYTES = 1 << 20
# A statement is named as the line to change when its results hold at least this share
# of what the census found alive at peak, and at least this much.
QUERY_SHARE = 0.2
QUERY_MIN_BYTES = 1 << 20
BRIEF_STATEMENT = 100  # characters of a statement quoted in the verdict
LARGEST_SHOWN = 3


class Section(enum.IntEnum):
    HEADLINE = 0
    FIX = 1
    CONTEXT = 2


@dataclass(frozen=True)
class Finding(JsonValue):
    """One sentence of the verdict, with the rule that wrote it and its figures."""

    rule: str
    section: Section
    text: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    """What every rule reads: the record and the figures analysed from it."""

    record: Record
    summary: Summary
    categories: dict[str, dict[str, int]]
    kept_alive: tuple[Holder, ...] = ()
    kept_alive_peak: HoldersAt | None = None
    leak: LeakVerdict | None = None
    queries: tuple[QueryAt, ...] = ()  # at peak, largest first (summary.peak_queries)

    @property
    def peak_categories(self) -> dict[str, int]:
        return self.categories.get(PEAK, {})

    @property
    def alive_at_peak(self) -> int:
        """What the traced categories found alive at peak (Python objects)."""
        return sum(b for c, b in self.peak_categories.items() if c in TRACED)

    @property
    def end_categories(self) -> dict[str, int]:
        return self.categories.get(END, {})


Rule = Callable[[Facts], "Finding | None"]
RULES: list[tuple[str, Section, Rule]] = []


def rule(section: Section) -> Callable[[Callable[[Facts], tuple[str, dict] | str | None]],
                                       Rule]:
    """Register a rule; it returns its sentence (and optionally figures) or None."""

    def register(func: Callable[[Facts], tuple[str, dict] | str | None]) -> Rule:
        def run(facts: Facts) -> Finding | None:
            found = func(facts)
            if found is None:
                return None
            text, figures = found if isinstance(found, tuple) else (found, {})
            return Finding(func.__name__, section, text,
                           {k: float(v) for k, v in figures.items() if v is not None})

        RULES.append((func.__name__, section, run))
        return run

    return register


def findings(facts: Facts) -> tuple[Finding, ...]:
    """Every rule that fires, headline first, then fixes, then context."""
    found = [f for _, _, run in RULES if (f := run(facts)) is not None]
    return tuple(sorted(found, key=lambda f: f.section))  # stable: file order within


def largest(cats: dict[str, int], n: int = LARGEST_SHOWN) -> list[tuple[str, int]]:
    """The largest traced categories (Python objects)."""
    traced = [(c, b) for c, b in cats.items() if c in TRACED and b > 0]
    return sorted(traced, key=lambda cb: cb[1], reverse=True)[:n]


def _named(cats: dict[str, int], n: int = LARGEST_SHOWN) -> str:
    return ", ".join(f"{c} {fmt_bytes(b)}" for c, b in largest(cats, n))


# -- what happened ----------------------------------------------------------------------
@rule(Section.HEADLINE)
def incomplete_run(facts: Facts) -> str | None:
    status = facts.record.status
    if status.complete:
        return None
    return (f"INCOMPLETE RUN: {status.reason}; the figures cover what was measured before "
            "it stopped.")


@rule(Section.HEADLINE)
def program_exit_code(facts: Facts) -> str | None:
    status = facts.record.status
    if not status.complete or not status.exit_code:
        return None
    return (f"The program exited with code {status.exit_code} (its own sys.exit or os._exit, at "
            "its end): the figures cover the whole run, and sqldiag exits with that code "
            "too.")


@dataclass(frozen=True)
class WholeResult:
    rows: int
    workers: int
    traced: int
    per_row: float


def whole_result_held(facts: Facts) -> WholeResult | None:
    """Every worker's whole result alive at once: most of the traced peak is rows, and it
    is still held when the workload ends."""
    record, summary = facts.record, facts.summary
    rows, workers = record.rows or 0, record.workers or 0
    traced = summary.traced_peak_snapshot
    if not (traced and rows and workers):
        return None
    snapshots = record.measurement.snapshots
    at_end = [s.traced for s in snapshots if s.label == WORKLOAD_END]
    highest = max((s.traced for s in snapshots), default=0)
    held = (at_end[0] / highest if at_end and highest else 0) * traced
    cats = facts.peak_categories
    rows_heavy = sum(cats.get(c, 0) for c in (ORM_OBJECTS, DRIVER_ROWS, SQLALCHEMY_ROWS))
    consumed = record.digest.rows if record.digest is not None else None
    whole = consumed is None or consumed >= ROWS_CONSUMED_SHARE * rows
    if whole and held >= HELD_AT_END_SHARE * traced and rows_heavy >= ROW_CATEGORIES_SHARE \
            * traced:
        return WholeResult(rows, workers, traced, traced / (rows * workers))
    return None


@rule(Section.HEADLINE)
def peak_is_whole_result(facts: Facts) -> tuple[str, dict] | None:
    whole, s = whole_result_held(facts), facts.summary
    if whole is None or s.peak_rss is None or s.growth is None:
        return None
    return ((f"Peak RSS {fmt_bytes(s.peak_rss)} ({fmt_bytes(s.growth)} above the start) = the "
            f"whole result set held {whole.workers} times at once: {whole.workers} workers x "
            f"{whole.rows:,} rows x ~{whole.per_row:,.0f} bytes per row "
            f"({fmt_bytes(whole.traced)} of live Python objects). Largest: "
            f"{_named(facts.peak_categories)}."),
            {"peak_rss": s.peak_rss, "growth": s.growth, "bytes_per_row": whole.per_row,
             "traced": whole.traced})


@rule(Section.HEADLINE)
def peak_traced(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    if (s.peak_rss is None or s.growth is None or not s.traced_peak_snapshot
            or whole_result_held(facts) is not None):
        return None
    return ((f"Peak RSS {fmt_bytes(s.peak_rss)} ({fmt_bytes(s.growth)} above the start); live "
            f"Python objects at peak {fmt_bytes(s.traced_peak_snapshot)}; largest: "
            f"{_named(facts.peak_categories)}."),
            {"peak_rss": s.peak_rss, "growth": s.growth, "traced": s.traced_peak_snapshot})


@rule(Section.HEADLINE)
def peak_untraced(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    if s.peak_rss is None or s.growth is None or s.traced_peak_snapshot:
        return None
    return ((f"Peak RSS {fmt_bytes(s.peak_rss)} ({fmt_bytes(s.growth)} above the start); not "
            "traced, so no categories."), {"peak_rss": s.peak_rss, "growth": s.growth})


def _big(holders: tuple[Holder, ...]) -> list[Holder]:
    """The holders the verdict names: a megabyte or more."""
    return [h for h in holders if h.bytes >= HOLDER_MIN_BYTES]


def _holders_text(when: str, holders: tuple[Holder, ...]) -> tuple[str, dict] | None:
    big = _big(holders)
    if not big:
        return None
    text = f"Kept alive {when} by: " + ", ".join(
        f"{h.holder} {fmt_bytes(h.bytes)}" for h in big) + "."
    chained = next((h for h in big if h.chain), None)
    if chained:
        path = " -> ".join(chained.chain)
        # a holder named by its root ("results held by __main__.kept") is not named twice
        named_by_root = chained.holder.endswith(f" {chained.chain[0]}")
        text += f" Path to them: {path}." if named_by_root else f" {chained.holder}: {path}."
    return text, {"bytes": sum(h.bytes for h in big)}


@rule(Section.HEADLINE)
def kept_alive_at_peak(facts: Facts) -> tuple[str, dict] | None:
    peak = facts.kept_alive_peak
    if peak is None:
        return None
    return _holders_text(f"at the workload's peak ({peak.label})", peak.holders)


@rule(Section.HEADLINE)
def kept_alive_at_end(facts: Facts) -> tuple[str, dict] | None:
    when = "at the snapshot" if facts.record.snapshot is not None else "at the workload's end"
    return _holders_text(when, facts.kept_alive)


def brief(statement: str) -> str:
    """A statement as the verdict quotes it: the select list elided, capped."""
    text = re.sub(r"^SELECT .+? FROM ", "SELECT ... FROM ", statement, flags=re.IGNORECASE)
    return text if len(text) <= BRIEF_STATEMENT else text[:BRIEF_STATEMENT - 3] + "..."


def top_query(facts: Facts) -> QueryAt | None:
    """The statement whose results held the most at peak, when it held much of it."""
    if not facts.queries:
        return None
    top = facts.queries[0]
    if top.total < QUERY_MIN_BYTES or top.total < QUERY_SHARE * max(facts.alive_at_peak, 1):
        return None
    return top


@rule(Section.HEADLINE)
def query_holds_most(facts: Facts) -> tuple[str, dict] | None:
    top = top_query(facts)
    if top is None:
        return None
    runs = f"{top.executions:,} execution{'s' if top.executions != 1 else ''}"
    # a traced run counts bytes below the line, not instances (0)
    loaded = f"{top.objects:,} instances alive, " if top.objects else ""
    text = (f"{top.where}: {brief(top.statement)} keeps {fmt_bytes(top.total)} at peak "
            f"({loaded}{runs}; {top.total / max(facts.alive_at_peak, 1):.0%} of what was alive): "
            f"{_named(top.categories)}.")
    return (text,
            {"bytes": top.total, "objects": top.objects, "executions": top.executions})


@rule(Section.HEADLINE)
def leak_or_peak(facts: Facts) -> tuple[str, dict] | None:
    if facts.leak is None or facts.record.repeat is None:
        return None
    how = (f"repeat runs at {facts.record.repeat.rows:,} rows" if facts.record.rows is not None
           else f"the program run {len(facts.record.repeat.iterations)} times in one process")
    return (f"{facts.leak.line} ({how})",
            {"per_run": facts.leak.per_run, "leak": int(facts.leak.leak)})


def _left_after_work(s: Summary) -> int | None:
    if s.start_rss is None or s.end_rss is None:
        return None
    return s.end_rss - s.start_rss


def _python_left(s: Summary) -> int | None:
    """Python memory in use after the work: what the categories count, and pymalloc's
    blocks in use beyond it (live objects no category counted)."""
    if s.traced_end is None:
        return None
    return s.traced_end + (s.parts_end.python_unattributed if s.parts_end is not None else 0)


# in a census, Python memory in use that no category counted is mostly this
NOT_TRACKED = ("objects the garbage collector does not track, which a census does not "
               "size: strings, numbers, and dicts or tuples that hold only such values, "
               "as a cache of plain values is made of")


def parts_text(parts: RssParts) -> str:
    """The measured parts of an RSS growth in words, largest first, free memory called
    free only where the allocators say it is."""
    said = []
    if parts.free:
        where = []
        if parts.pymalloc_free:
            where.append(f"pymalloc {fmt_bytes(parts.pymalloc_free)} in arenas that live "
                         "blocks pin")
        if parts.glibc_free:
            where.append(f"glibc {fmt_bytes(parts.glibc_free)} in "
                         f"{parts.glibc_arenas or '?'} malloc arenas")
        said.append((parts.free, (f"{fmt_bytes(parts.free)} is free memory the allocators "
                                  f"keep ({'; '.join(where)})")))
    if parts.python_unattributed:
        said.append((parts.python_unattributed,
                     (f"{fmt_bytes(parts.python_unattributed)} is Python memory in use "
                      "that no category counted (pymalloc's blocks in use)")))
    if parts.native:
        said.append((parts.native, (f"{fmt_bytes(parts.native)} is C memory in use that "
                                    "is not a Python object (driver and library buffers)")))
    if parts.overhead:
        said.append((parts.overhead, f"{fmt_bytes(parts.overhead)} is pymalloc's overhead"))
    if parts.mapped_files:
        said.append((parts.mapped_files, (f"{fmt_bytes(parts.mapped_files)} is pages of "
                                          "libraries and files mapped in (imports)")))
    if parts.rest:
        said.append((parts.rest, f"{fmt_bytes(parts.rest)} is unaccounted"))
    text = "; ".join(words for _, words in sorted(said, key=lambda p: -p[0]))
    if parts.not_resident:
        text += (f" (glibc counts {fmt_bytes(parts.not_resident)} more that is out of RSS: "
                 "handed back by malloc_trim or never written)")
    return text


@rule(Section.HEADLINE)
def rss_of_a_traced_process(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    if not rss_inflated_by_tracing(facts.record) or s.growth is None:
        return None
    return (("RSS here is that of the process under tracemalloc: less its tables and each "
             "trace's own chunk (estimated), it still holds tracemalloc's raw snapshots and "
             "the free memory that freed traces leave in glibc's heap, which the program "
             "alone never has; so neither the share of RSS the categories explain nor what "
             "the rest is can be stated. For the program's own RSS and its measured parts, "
             "run it without tracing (the default: censuses of live objects)."),
            {"growth": s.growth})


@rule(Section.HEADLINE)
def free_memory_after_work(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    left, python = _left_after_work(s), _python_left(s)
    if left is None or left <= 0 or python is None or \
            python >= TRACED_LEFT_SHARE * left or rss_inflated_by_tracing(facts.record):
        return None
    text = (f"RSS left after the work ({fmt_bytes(left)} above the start) is not live "
            f"Python objects ({fmt_bytes(s.traced_end)} still traced)")
    parts = s.parts_end
    text += f": {parts_text(parts)}." if parts is not None else \
        "; the allocators' own figures were not measured, so what holds it is not known."
    if s.trim_rss is not None and s.start_rss is not None:
        text += (f" malloc_trim(0) returned {fmt_bytes(s.trim_released)}; "
                 f"{fmt_bytes(max(s.trim_rss - s.start_rss, 0))} stays above the start")
        trimmed = s.parts_trim
        text += (f", {fmt_bytes(trimmed.free)} of it still free memory the allocators "
                 "keep." if trimmed is not None and trimmed.free else ".")
    figures = {"left": left, "traced_end": s.traced_end}
    if parts is not None:
        figures.update(free=parts.free, native=parts.native, unaccounted=parts.rest)
    return text, figures


@rule(Section.HEADLINE)
def objects_alive_after_work(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    left, python = _left_after_work(s), _python_left(s)
    if left is None or left <= 0 or python is None or python < TRACED_LEFT_SHARE * left:
        return None
    unattributed = s.parts_end.python_unattributed if s.parts_end is not None else 0
    named = _named(facts.end_categories, 2) + _imported_text(facts.record, END, "them")
    if unattributed > UNCOUNTED_LEFT_SHARE * python:
        named += (f"; {fmt_bytes(unattributed)} in pymalloc's blocks in use that no category "
                  "counted" + (f": {NOT_TRACKED}" if facts.record.measurement.method
                               is Method.CENSUS else ""))
    return ((f"After the work {fmt_bytes(python)} of Python objects are still alive "
            f"({named}): something holds them (a cache, a Session, a global); repeat the "
             "workload to tell a leak from a one-time cost."),
            {"left": left, "traced_end": s.traced_end, "unattributed": unattributed})


@rule(Section.HEADLINE)
def rss_returned(facts: Facts) -> str | None:
    left = _left_after_work(facts.summary)
    if left is None or left > 0:
        return None
    return "RSS returned to the start after the work."


# -- what to change ---------------------------------------------------------------------
@rule(Section.FIX)
def fix_streaming(facts: Facts) -> tuple[str, dict] | None:
    """Streaming keeps a batch per worker instead of the whole result: the saving is
    estimated from this run's own bytes per row."""
    whole = whole_result_held(facts)
    if whole is None:
        return None
    record = facts.record
    batch = min(STREAM_BATCH_ROWS, whole.rows)
    saving = max(whole.traced - whole.workers * batch * whole.per_row, 0)
    command = (f"sqldiag compare {record.scenario.name} fix_yield_per fix_core_partitions "
               f"fix_keyset_pages --rows {whole.rows} --workers {whole.workers} --url "
               f"{record.database.url or ''}")
    if record.params and record.params.text_bytes:
        command += f" --text-bytes {record.params.text_bytes}"
    return ((f"Fix: stream instead of materialising whole results. With yield_per({batch}) on "
            f"a server-side cursor (scenario fix_yield_per), Core partitions() (fix_core_"
            f"partitions) or keyset pages (fix_keyset_pages) each worker holds about {batch:,} "
            f"rows, not {whole.rows:,}: about {fmt_bytes(saving)} less live memory at peak, "
            f"estimated from this run's {whole.per_row:,.0f} bytes per row. Measure it: "
            f"{command}"), {"saving": saving, "batch_rows": batch})


@rule(Section.FIX)
def fix_native_result(facts: Facts) -> tuple[str, dict] | None:
    """Much of the peak is C memory in use: a client-side cursor's whole result, kept by
    the driver's C library while Python reads it a batch at a time."""
    parts = facts.summary.parts_peak
    if parts is None or parts.growth <= 0 or parts.native < NATIVE_FIX_MIN_BYTES or \
            parts.native < NATIVE_FIX_SHARE * parts.growth:
        return None
    record = facts.record
    where = {"postgresql": "libpq's PGresult", "mysql": "libmysqlclient's MYSQL_RES",
             "sqlite": "SQLite's page cache"}.get(record.database.dialect or "",
                                                  "the driver's C library")
    return ((f"Fix: {fmt_bytes(parts.native)} at the peak ({parts.native / parts.growth:.0%} of "
            "the growth) is C memory in use, not Python objects: a client-side cursor holds "
            f"the whole result in {where} while Python reads it. Stream it from a server-side "
            "cursor instead (execution_options(stream_results=True) with partitions() or "
            "yield_per()); scenario buffered_result_native shows the cause and "
            "fix_core_partitions the fix: sqldiag compare buffered_result_native "
            f"fix_core_partitions --url {record.database.url or ''}"),
            {"native": parts.native, "share": parts.native / parts.growth})


@rule(Section.FIX)
def fix_leak_scope(facts: Facts) -> str | None:
    if not _mapped_objects_leak(facts):
        return None
    held = _held_by(facts)
    return ("Fix: mapped objects pile up across runs: something long-lived (a Session never "
            "closed, a module-level cache) keeps them" + (f", here {held}" if held else "") +
            "; scope Sessions to one unit of work and do not keep loaded objects; scenario "
            "session_leak shows this growth.")


def _mapped_objects_leak(facts: Facts) -> bool:
    """Whether a repeated run found mapped objects (or identity maps) growing run after run."""
    leak = facts.leak
    return leak is not None and leak.leak and bool(
        {IDENTITY_MAP, ORM_OBJECTS} & set(leak.categories))


def _held_by(facts: Facts) -> str | None:
    """The holders measured at the end (a megabyte or more) other than Sessions' identity
    maps, two at most: "results held by cache.seen (40 MB)"."""
    others = [h for h in _big(facts.kept_alive) if h.holder != HOLDER_IDENTITY]
    return ", ".join(f"{h.holder} ({fmt_bytes(h.bytes)})" for h in others[:2]) or None


def _held_by_sessions(facts: Facts) -> bool:
    """Whether Sessions' identity maps hold a megabyte or more at the end, or no holder
    was measured (the usual cause)."""
    big = _big(facts.kept_alive)
    return not big or any(h.holder == HOLDER_IDENTITY for h in big)


@rule(Section.FIX)
def fix_malloc_trim(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    left = _left_after_work(s)
    released = s.trim_released or 0
    if s.trim_rss is None or left is None or left <= 0:
        return None
    if released <= TRIM_FIX_SHARE * left or released <= TRIM_FIX_MIN_BYTES:
        return None
    return ((f"Fix: RSS that stays up is glibc's free memory: calling malloc_trim(0) after "
            f"large batches gave back {fmt_bytes(released)} here; the long_text and "
            "long_text_arena_max scenarios (with --text-bytes 650) show it and "
            "MALLOC_ARENA_MAX side by side."), {"released": released})


@rule(Section.FIX)
def fix_session_scope(facts: Facts) -> tuple[str, dict] | None:
    traced_end = facts.summary.traced_end or 0
    orm = facts.end_categories.get(IDENTITY_MAP, 0) + facts.end_categories.get(ORM_OBJECTS, 0)
    if orm <= ORM_LEFT_SHARE * max(traced_end, 1) or traced_end <= ORM_LEFT_MIN_BYTES:
        return None
    if _mapped_objects_leak(facts):
        return None  # fix_leak_scope says it, and names the growth
    # who keeps them, where it was measured: a Session only when its identity map does
    # (it holds clean objects weakly; a module-level cache kept a job's objects and the
    # fix blamed a Session that was closed)
    named = _held_by(facts)
    session = ("a Session that is never closed keeps them in its identity map: scope "
               "Sessions to one unit of work (with Session() as s:), or expunge_all() "
               "between batches; scenario session_leak shows the growth.")
    if not named:
        return f"Fix: ORM objects outlive the work, as {session}", {"orm_at_end": orm}
    cached = (" A function under functools.lru_cache keeps every result it returned, for "
              "as long as the process runs: give it a maxsize, cache the values you need "
              "rather than ORM objects, or call its cache_clear() after the work."
              if LRU_CACHE_ROOT in named else "")
    also = f" And {session}" if _held_by_sessions(facts) else ""
    return ((f"Fix: ORM objects outlive the work, kept by what holds them: {named}; drop "
             "them when the work is done, or keep only the values you need (plain rows "
             "of the columns you use, select(Model.a, Model.b)) instead of the loaded "
             f"objects.{cached}{also}"), {"orm_at_end": orm})


@rule(Section.FIX)
def fix_query_line(facts: Facts) -> tuple[str, dict] | None:
    top = top_query(facts)
    if top is None or top.objects < STREAM_BATCH_ROWS:
        return None
    each = top.total / top.objects
    return ((f"Fix at {top.where}: its {top.objects:,} instances take {fmt_bytes(each)} each "
             f"with their rows and identity keys; stream them "
             f"(.yield_per({STREAM_BATCH_ROWS}) or execution_options(yield_per=...)) and keep "
             "only what you need, or select only the columns you use (load_only(), or "
             "select(Model.a, Model.b) for plain rows)."),
            {"bytes_per_instance": each})


# -- context ----------------------------------------------------------------------------
def children_sentence(children: tuple[ChildProcess, ...]) -> str:
    """What the followed child processes held, in one sentence."""
    methods: dict[str, int] = {}
    for child in children:
        method = str(child.start_method or "?")
        methods[method] = methods.get(method, 0) + 1
    held = summed([child.categories.get(PEAK, {}) for child in children])
    how = ", ".join(f"{method} x{count}" for method, count in sorted(methods.items()))
    peaks = [child.peak_rss or 0 for child in children]
    rss = f"{fmt_bytes(sum(peaks))} RSS summed (largest {fmt_bytes(max(peaks))})"
    sampled = sum(1 for child in children if not child.categories.get(PEAK))
    if sampled == len(children):  # forked and untraced: no census in them
        return (f"{len(children)} child processes were followed ({how}); at their own peaks "
                f"they held {rss}. Their objects were not counted: a forked child is "
                "only sampled for RSS (a census there would count all it inherited from "
                "its parent); `--trace-depth N` traces them. The figures above are the "
                "main process's, the processes table has each one.")
    unmeasured = (f"; {sampled} of them forked and only sampled for RSS" if sampled else "")
    return (f"{len(children)} child processes were followed ({how}); at their own peaks they "
            f"held {fmt_bytes(sum(held.values()))} of Python objects ({_named(held)}) and "
            f"{rss}{unmeasured}; the figures above are the main process's, the processes "
            "table has each one.")


@rule(Section.CONTEXT)
def followed_children(facts: Facts) -> str | None:
    children = facts.record.processes.children
    return children_sentence(children) if children else None


@rule(Section.CONTEXT)
def child_processes_rss(facts: Facts) -> tuple[str, dict] | None:
    """Children sampled for RSS only: not followed, or followed but gone before they
    reported (a worker the OOM killer took)."""
    processes = facts.record.processes
    followed = {str(child.pid) for child in processes.children}
    peaks = sorted((rss for pid, rss in processes.children_peak_rss.items()
                    if pid not in followed), reverse=True)
    if not peaks:
        return None
    many = len(peaks) > 1
    if followed:
        who = ("child processes not measured in themselves (killed before they reported, or "
               "not multiprocessing children)" if many else "child process not measured in "
               "itself (killed before it reported, or not a multiprocessing child)")
        after = "only their RSS was sampled." if many else "only its RSS was sampled."
    else:
        who = "child processes (not followed)" if many else "child process (not followed)"
        after = "the figures above are the parent's."
    text = (f"{len(peaks)} {who} peaked at {fmt_bytes(peaks[0])} RSS at most "
            f"({fmt_bytes(sum(peaks))} summed); {after}" if many else
            f"A {who} peaked at {fmt_bytes(peaks[0])} RSS; {after}")
    return text, {"largest": peaks[0], "summed": sum(peaks)}


@rule(Section.CONTEXT)
def model_not_linear(facts: Facts) -> str | None:
    model = facts.record.measurement.model
    if not facts.summary.model_rejected or facts.summary.explained_share is None:
        return None
    rows_used = model.rows[-1] if model and model.rows else 0
    return (f"Memory did not grow in proportion to the rows here (streaming or paging): "
            f"the calibration runs were not linear in rows, or a per-row model would "
            f"predict more live memory than RSS ever held, so the categories are those "
            f"measured at {rows_used:,} rows, unscaled.")


def measured_basis(record: Record, summary: Summary) -> str:
    """How the categories were measured, in a few words."""
    how = record.measurement
    model_rows = how.model.rows if how.model else ()
    if summary.model_rejected:
        return f"traced at {model_rows[-1] if model_rows else 0:,} rows, unscaled"
    if how.method is Method.SCALED_TRACE:
        return f"traced at {how.traced_rows or 0:,} rows and scaled x{summary.scale:.1f}"
    if how.method is Method.CALIBRATED:
        return ("traced at " + ", ".join(f"{r:,}" for r in model_rows)
                + " rows, fitted as fixed + per-row cost")
    if how.method is Method.CENSUS:
        peak = record.breakdowns.get(PEAK)
        at = f" at RSS {fmt_bytes(peak.rss)}" if peak is not None and peak.rss else ""
        scaled = f", extended x{summary.scale:.2f} to the peak" if summary.scale != 1 else ""
        return f"a census of live objects{at}{scaled}, untraced"
    return "traced at full size"


def _imported_text(record: Record, moment: str = PEAK, of: str = "it") -> str:
    """What of other_python at `moment` is imported code, as a census counted it: ", X of
    `of` the code of the N modules imported during the work", or "" (traced, or none)."""
    at = record.breakdowns.get(moment)
    if at is None or not at.imported_code or not at.imported_modules:
        return ""
    modules = "module" if at.imported_modules == 1 else "modules"
    return (f", {fmt_bytes(at.imported_code)} of {of} the code of the "
            f"{at.imported_modules:,} {modules} imported during the work")


@rule(Section.CONTEXT)
def explained_share(facts: Facts) -> tuple[str, dict] | None:
    s = facts.summary
    if s.explained_share is None:
        return None
    other = facts.peak_categories.get(OTHER_PYTHON, 0)
    traced = s.traced_peak_snapshot or 1
    text = (f"The categories ({measured_basis(facts.record, s)}) explain "
            f"{s.explained_share:.0%} of the RSS growth at peak ({other / traced:.0%} of "
            f"traced bytes fell in other_python{_imported_text(facts.record)})")
    figures = {"explained_share": s.explained_share, "other_python_share": other / traced}
    parts = s.parts_peak
    if parts is None or parts.named_share is None:
        return (text + "; the allocators' own figures were not read at the peak, so the "
                "rest is not split."), figures
    figures["named_share"] = parts.named_share
    return (f"{text}; with the allocators' figures at the peak, measured parts name "
            f"{parts.named_share:.0%} of it: beside the categories, "
            f"{parts_text(parts)}."), figures
