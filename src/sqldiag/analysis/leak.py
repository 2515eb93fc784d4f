"""Leak or peak: growth per repeated run, after gc.collect(), of traced bytes by category
and of live objects by type. "Leak" only when growth persists over the later runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from sqldiag.record.categories import TRACED
from sqldiag.record.codec import JsonValue
from sqldiag.record.parts import Iteration
from sqldiag.units import fmt_bytes

# A run must add at least this much, every time after the first, to count as growth.
MIN_GROWTH_BYTES = 64 << 10
MIN_GROWTH_OBJECTS = 100


def _steps(values: list[int]) -> list[int]:
    return [b - a for a, b in pairwise(values)]


@dataclass(frozen=True)
class LeakVerdict(JsonValue):
    """Whether the live heap kept growing over repeated runs, and what grew per run."""

    leak: bool
    line: str
    per_run: int = 0
    categories: dict[str, int] = field(default_factory=dict)  # bytes per run
    types: dict[str, int] = field(default_factory=dict)  # objects per run
    runs: int = 0


def leak_verdict(iterations: tuple[Iteration, ...]) -> LeakVerdict:
    """The first run warms caches (compiled SQL, pools) and is not judged: growth must
    show in every step from run 2 to run N."""
    totals = [it.traced for it in iterations if it.traced is not None]
    if len(totals) < 3:
        return LeakVerdict(False, "repeat the workload at least 3 times to judge growth")
    steps = _steps(totals[1:])
    growing = all(step >= MIN_GROWTH_BYTES for step in steps)
    per_run = sum(steps) / len(steps)
    categories = {}
    for category in TRACED:
        series = [it.categories.get(category, 0) for it in iterations[1:]]
        cat_steps = _steps(series)
        if cat_steps and all(step > 0 for step in cat_steps):
            categories[category] = int(sum(cat_steps) / len(cat_steps))
    types = {}
    names = set().union(*(it.types for it in iterations[1:]))
    for name in names:
        series = [it.types.get(name, 0) for it in iterations[1:]]
        type_steps = _steps(series)
        if type_steps and all(step >= MIN_GROWTH_OBJECTS for step in type_steps):
            types[name] = int(sum(type_steps) / len(type_steps))
    top_types = sorted(types.items(), key=lambda kv: kv[1], reverse=True)[:5]
    top_cats = sorted(categories.items(), key=lambda kv: kv[1], reverse=True)[:3]
    if growing:
        line = (f"LEAK: over {len(totals)} runs the live heap after gc.collect() grew by "
                f"{fmt_bytes(per_run)} every run after the first ("
                + ", ".join(f"{c} +{fmt_bytes(b)}" for c, b in top_cats) + "; objects: "
                + ", ".join(f"{n} +{c:,}" for n, c in top_types) + ").")
    else:
        line = (f"No leak: over {len(totals)} runs the live heap after gc.collect() did not "
                f"keep growing (change per run after the first: "
                f"{', '.join(fmt_bytes(s) for s in steps)}); memory is a peak, not a leak.")
    return LeakVerdict(leak=growing, line=line, per_run=int(per_run), categories=categories,
                       types=dict(top_types), runs=len(totals))
