"""The catalogue at full size: the post's workload and its fixes, side by side.

    python bench/catalogue.py [--url URL] [--rows 100000] [--workers 10]
                              [--streaming-rows 400000]

Runs `sqldiag compare` on the leak and its fixes at --rows, then the streaming fixes
again at --streaming-rows to show that their peak does not follow the row count, and
prints both tables (markdown).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

MB = 1 << 20
MAIN = ["leak_repro", "core_all", "fix_yield_per", "fix_core_partitions", "fix_keyset_pages"]
STREAMING = ["fix_yield_per", "fix_core_partitions", "fix_keyset_pages"]


def compare(url: str | None, rows: int, workers: int, scenarios: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as reports:
        cmd = [sys.executable, "-m", "sqldiag", "compare", *scenarios, "--rows", str(rows),
               "--workers", str(workers), "--json", "--no-census", "--reports-dir", reports]
        if url:
            cmd += ["--url", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.strip().splitlines()[-1])
        return json.loads(proc.stdout)["rows"]


def table(rows: list[dict], title: str) -> None:
    print(f"\n{title}\n")
    print("| scenario | start RSS | peak RSS | end RSS | after trim | wall s | rows/s | "
          "same rows | orm_objects | driver_rows |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['scenario']} | {r['start_rss'] / MB:.0f} MB | {r['peak_rss'] / MB:.0f} MB | "
              f"{r['end_rss'] / MB:.0f} MB | {r['trim_rss'] / MB:.0f} MB | {r['wall_s']:.1f} | "
              f"{r['rows_per_s']:,.0f} | {r['same_rows']} | "
              f"{r['peak'].get('orm_objects', 0) / MB:.0f} MB | "
              f"{r['peak'].get('driver_rows', 0) / MB:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--streaming-rows", type=int, default=400_000)
    args = parser.parse_args()
    where = args.url or "the embedded SQLite file"
    table(compare(args.url, args.rows, args.workers, MAIN),
          f"{args.rows:,} rows x {args.workers} workers on {where}")
    table(compare(args.url, args.streaming_rows, args.workers, STREAMING),
          f"streaming fixes at {args.streaming_rows:,} rows x {args.workers} workers")


if __name__ == "__main__":
    main()
