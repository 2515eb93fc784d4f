"""The calibration fit: traced bytes per category as fixed + per-row cost.

The full-size workload runs bare; tracing runs at three small sizes with the same number
of workers (a run whose peak lies off the line is run once more: off_the_line). For
each moment (peak, end) and category, a least-squares line through the
three points gives a fixed cost and a cost per row (record.parts.CalibrationModel
predicts the full size from it); a run whose peak caught a category at another moment
of the work is left out of that category's line (_on_the_moment). Linearity is kept as
how far the points lie from their line. What the allocators add to the traced bytes,
and native memory (C memory in use that is no Python object: attribution.overhead; at
the peak, its high over the run's snapshots, which glibc keeps once it is freed), get
lines too: the predicted peak is of RSS, not of live Python bytes only. The fit is how
the calibration runs are reduced for the record, as snapshots are reduced to
breakdowns: the runs' own breakdowns are not kept.
"""

from __future__ import annotations

from sqldiag.capture.results import PassResult
from sqldiag.record.categories import STATEMENT_CACHE, TRACED
from sqldiag.record.parts import MODEL_MAX_RESIDUAL, CalibrationModel
from sqldiag.record.phases import MOMENTS, PEAK


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var
    return mean_y - slope * mean_x, slope


# A category's bytes per row at a calibration run this many times above or below those
# at the largest run: that run's peak came at another moment of the work (at 400 rows
# the traced high came mid-load, before the workers' result lists existed: result_lists
# 1.1 bytes a row, against 83-87 from 800 to 4,800 rows, and a line through it gave 124
# a row, 12 MB at 100,000 rows against 8.3).
OFF_MOMENT_FACTOR = 2.0
# ... for a category that grows with the rows (the largest run's bytes at least twice the
# smallest's: not a fixed cost such as other_python's imports) and holds at least this
# share of the largest run's traced bytes (result_lists: 0.7%)
MATERIAL_SHARE = 0.001
# ... and only when the runs left agree on its bytes per row within this factor: a
# fixed cost's noise (other_python at peak: 84.6 to 484 bytes a row) must not become a
# slope through two runs
ON_MOMENT_AGREEMENT = 1.25


def _on_the_moment(rows: list[float], ys: list[float], total: float) -> list[int]:
    """The runs a category's line goes through: all but those whose bytes per row lie
    OFF_MOMENT_FACTOR away from the largest run's, when two or more runs remain that
    agree (ON_MOMENT_AGREEMENT)."""
    largest = max(range(len(rows)), key=rows.__getitem__)
    per_row = ys[largest] / rows[largest]
    grows = ys[largest] >= 2 * max(min(ys), 1.0)
    if per_row <= 0 or not grows or ys[largest] < MATERIAL_SHARE * total:
        return list(range(len(rows)))
    kept = [i for i, (r, y) in enumerate(zip(rows, ys))
            if per_row / OFF_MOMENT_FACTOR <= y / r <= per_row * OFF_MOMENT_FACTOR]
    rates = [ys[i] / rows[i] for i in kept]
    if len(kept) < 2 or max(rates) > ON_MOMENT_AGREEMENT * min(rates):
        return list(range(len(rows)))
    return kept


def _fit_category(rows: list[float], ys: list[float], total: float) -> tuple[float, float]:
    """(intercept, slope) of a category's line, through the runs on its moment (see
    _on_the_moment); `total`: the largest run's traced bytes."""
    kept = _on_the_moment(rows, ys, total)
    return _fit([rows[i] for i in kept], [ys[i] for i in kept])


# Native memory grows with the rows when the largest calibration run holds the most, at
# least this many bytes and this share above the smallest run
NATIVE_GROWTH_BYTES = 512 << 10
NATIVE_GROWTH_SHARE = 0.5


def fit_if_growing(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """A line through the points where they grow with the rows (the largest run's the
    most, NATIVE_GROWTH_BYTES and NATIVE_GROWTH_SHARE above the smallest's: a driver's
    buffered result); else their mean as a fixed cost. Native memory at the calibration
    sizes is mostly fixed (connections, SQLite's page cache, which a full-size table
    caps), and a slope fitted to its noise of a few hundred KB would be multiplied by the
    full row count. The points need not rise one by one: at its high, native memory is
    the results that a run's workers held at once, and a small run's workers, done in
    milliseconds each, overlap more in one run than in the next (psycopg 3, 400, 800 and
    1,200 rows x 10: 0.96, 0.62 and 2.68 MB), where at full size they all do."""
    rise = ys[-1] - ys[0]
    growing = ys[-1] >= max(ys) and rise >= NATIVE_GROWTH_BYTES \
        and rise >= NATIVE_GROWTH_SHARE * ys[0]
    return _fit(xs, ys) if growing else (sum(ys) / len(ys), 0.0)


def _residuals(rows: list[float], totals: list[float]) -> list[float | None]:
    """How far each point lies from the line through all, relative to its own total
    (None for a point with nothing traced)."""
    fixed, per_row = _fit(rows, totals)
    return [abs(t - (fixed + per_row * r)) / t if t else None for r, t in zip(rows, totals)]


def _peak_residuals(calibrations: list[PassResult]) -> list[float | None] | None:
    """_residuals of the calibration runs' peaks (None unless three or more have one)."""
    peaks = [c.breakdowns.get(PEAK) for c in calibrations]
    if len(peaks) < 3 or any(p is None for p in peaks):
        return None
    return _residuals([float(c.rows) for c in calibrations],
                      [float(p.total) for p in peaks])  # type: ignore[union-attr]


def peak_linearity(calibrations: list[PassResult]) -> float:
    """The worst residual of the runs' peaks (the model's linearity at peak), infinite
    when it cannot be told."""
    found = [r for r in _peak_residuals(calibrations) or () if r is not None]
    return max(found, default=float("inf"))


def off_the_line(calibrations: list[PassResult]) -> int | None:
    """The index of the calibration run whose peak lies furthest from the line, when it
    lies further than MODEL_MAX_RESIDUAL (a model that would be rejected); else None.
    A peak is the most traced at any moment of ten workers: how many of them held their
    rows at once varies from run to run, and one run of three off its line by 3.01%
    cost a whole run its model."""
    residuals = [r or 0.0 for r in _peak_residuals(calibrations) or ()]
    if not residuals:
        return None
    worst = max(range(len(residuals)), key=residuals.__getitem__)
    return worst if residuals[worst] > MODEL_MAX_RESIDUAL else None


def fit_model(calibrations: tuple[PassResult, ...]) -> CalibrationModel | None:
    """The model fitted from calibration pass results, or None when none could be."""
    usable = [c for c in calibrations if c.breakdowns]
    rows = [float(c.rows) for c in usable]
    fits: dict[str, dict[str, tuple[float, ...]]] = {}
    linearity: dict[str, float | None] = {}
    overhead: dict[str, tuple[float, float]] = {}
    native: dict[str, tuple[float, float]] = {}
    for moment in MOMENTS:
        points = [c.breakdowns.get(moment) for c in usable]
        if len(points) < 2 or any(p is None for p in points):
            continue
        fits[moment] = {}
        totals = [float(p.total) for p in points]  # type: ignore[union-attr]
        largest = totals[max(range(len(rows)), key=rows.__getitem__)]
        for category in TRACED:
            ys = [float(p.category(category)) for p in points]  # type: ignore[union-attr]
            if category == STATEMENT_CACHE:
                fits[moment][category] = (max(ys), 0.0)  # compiled once, not per row
            else:
                fits[moment][category] = _fit_category(rows, ys, largest)
        residuals = [r for r in _residuals(rows, totals) if r is not None]
        linearity[moment] = round(max(residuals), 4) if len(rows) > 2 and residuals else None
        added = [p.allocation_overhead for p in points]  # type: ignore[union-attr]
        if all(a is not None for a in added):
            overhead[moment] = _fit(rows, [float(a) for a in added])  # type: ignore[arg-type]
        c_memory = [p.native for p in points]  # type: ignore[union-attr]
        if all(c is not None for c in c_memory):
            native[moment] = fit_if_growing(rows, [float(c) for c in c_memory])  # type: ignore[arg-type]
    if not fits:
        return None
    return CalibrationModel(rows=tuple(int(r) for r in rows), fits=fits, linearity=linearity,
                            overhead=overhead, native=native)
