"""The calibration model: traced bytes per category as fixed + per-row cost.

The full-size workload runs bare; tracing runs at three small sizes with the same number
of workers. For each moment (peak, end) and category, a least-squares line through the
three points gives a fixed cost and a cost per row; the line predicts the full size.
Linearity is checked by how far the points lie from their line.
"""

from __future__ import annotations

from sqldiag.attribution.categories import STATEMENT_CACHE, TRACED

MOMENTS = ("peak", "end")


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var
    return mean_y - slope * mean_x, slope


def fit_model(calibrations: list[dict]) -> dict:
    """Fit the model from calibration pass results (each with rows and breakdowns).

    Returns {"rows": [...], "fits": {moment: {category: [fixed, per_row]}},
    "linearity": {moment: worst relative residual of the total}}.
    """
    usable = [c for c in calibrations if c.get("breakdowns")]
    rows = [float(c["rows"]) for c in usable]
    fits: dict[str, dict[str, list[float]]] = {}
    linearity: dict[str, float | None] = {}
    for moment in MOMENTS:
        points = [c["breakdowns"].get(moment) for c in usable]
        if len(points) < 2 or any(p is None for p in points):
            continue
        fits[moment] = {}
        for category in TRACED:
            ys = [float(p["categories"].get(category, 0)) for p in points]  # type: ignore[index]
            if category == STATEMENT_CACHE:
                fits[moment][category] = [max(ys), 0.0]  # compiled once, not per row
            else:
                fits[moment][category] = list(_fit(rows, ys))
        totals = [float(p["total"]) for p in points]  # type: ignore[index]
        fixed, per_row = _fit(rows, totals)
        residuals = [abs(t - (fixed + per_row * r)) / t for r, t in zip(rows, totals) if t]
        linearity[moment] = round(max(residuals), 4) if len(rows) > 2 and residuals else None
    return {"rows": [int(r) for r in rows], "fits": fits, "linearity": linearity}


def predict(model: dict, moment: str, rows: int) -> dict[str, int]:
    """Predicted traced bytes per category at `rows` rows (never negative)."""
    fits = model.get("fits", {}).get(moment)
    if not fits:
        return {}
    return {c: max(0, int(fixed + per_row * rows)) for c, (fixed, per_row) in fits.items()}
