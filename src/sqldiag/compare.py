"""Side-by-side figures of several runs of the same database and sizes."""

from __future__ import annotations


def compare_rows(records: list[dict]) -> list[dict]:
    """One row of figures per record; `same_rows` compares each digest with the first."""
    baseline = (records[0].get("digest") or {}) if records else {}
    rows = []
    for record in records:
        summary, params = record["summary"], record["scenario"]["params"]
        wall = record.get("wall_time_s") or 0
        digest = record.get("digest") or {}
        if not digest or not baseline:
            same = "n/a"
        else:
            same = "yes" if digest == baseline else "NO"
        rows.append({
            "scenario": record["scenario"]["name"],
            "peak_rss": summary.get("peak_rss"), "end_rss": summary.get("end_rss"),
            "trim_rss": summary.get("trim_rss"), "start_rss": summary.get("start_rss"),
            "wall_s": wall,
            "rows_per_s": (params.get("rows", 0) * params.get("workers", 1) / wall) if wall else 0,
            "peak": record.get("categories", {}).get("peak", {}),
            "digest": digest, "same_rows": same,
        })
    return rows


def digest_mismatches(rows: list[dict]) -> list[str]:
    return [row["scenario"] for row in rows if row["same_rows"] == "NO"]
