"""Geometry for inline SVG charts: numbers only; the template draws and escapes text."""

from __future__ import annotations

from dataclasses import dataclass

from sqldiag.record.parts import Record
from sqldiag.units import fmt_bytes


@dataclass
class Timeline:
    width: int
    height: int
    rss_points: str
    traced_points: str
    children_points: str
    phases: list[dict]  # {"x", "name"}
    y_ticks: list[dict]  # {"y", "label"}
    x_ticks: list[dict]  # {"x", "label"}
    pad: int


def timeline(record: Record, width: int = 880, height: int = 300,
             pad: int = 56) -> Timeline | None:
    data = record.timeline
    times, rss = data.t, data.rss
    if len(times) < 2 or not rss:
        return None
    net = data.net_rss()
    traced = data.traced or (None,) * len(rss)
    children = [c or 0 for c in data.children_rss] or [0] * len(rss)
    t_max = max(times[-1], 1e-6)
    y_max = max(max(net), max(children, default=0), 1) * 1.08
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def x(t: float) -> float:
        return round(pad + inner_w * t / t_max, 1)

    def y(v: float) -> float:
        return round(height - pad - inner_h * v / y_max, 1)

    rss_points = " ".join(f"{x(t)},{y(v)}" for t, v in zip(times, net))
    traced_points = " ".join(f"{x(t)},{y(v)}" for t, v in zip(times, traced) if v is not None)
    children_points = " ".join(f"{x(t)},{y(v)}" for t, v in zip(times, children)) \
        if any(children) else ""
    phases = [{"x": x(p.t), "name": p.name} for p in record.phases
              if not p.name.startswith("worker ")]
    y_ticks = [{"y": y(y_max * i / 4), "label": fmt_bytes(y_max * i / 4)} for i in range(5)]
    x_ticks = [{"x": x(t_max * i / 5), "label": f"{t_max * i / 5:.1f} s"} for i in range(6)]
    return Timeline(width, height, rss_points, traced_points, children_points, phases, y_ticks,
                    x_ticks, pad)


def bars(values: dict[str, int], width: int = 360) -> list[dict]:
    """Horizontal bar lengths for a {label: bytes} mapping, largest first."""
    biggest = max(values.values(), default=0) or 1
    return [{"label": k, "value": v, "text": fmt_bytes(v), "w": round(width * v / biggest, 1)}
            for k, v in sorted(values.items(), key=lambda kv: kv[1], reverse=True)]
