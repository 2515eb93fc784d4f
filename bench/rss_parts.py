"""Explain all of RSS, on every driver: the measured parts of the peak and of what stays.

    python bench/rss_parts.py [--rows 100000] [--workers 10] [--only sqlite,psycopg2,...]

In one invocation, `sqldiag scenario leak_repro` in its default mode at full size on
SQLite, MariaDB through PyMySQL and mysqlclient, and PostgreSQL through psycopg 3 and
psycopg2; then `buffered_result_native` (a client-side cursor's whole result in the
driver's C memory) on both PostgreSQL drivers. For each run: the RSS growth at the peak
and after the work, the share of it that measured parts name (everything but
`unaccounted`), each part, and the predicted peak (start + the live objects the
calibration predicts + what the allocators add to them + native memory, both predicted by
the calibration runs too; native memory at its high, which glibc keeps once it is freed)
against the measured one. Servers are those of the README
(127.0.0.1, user root, database test); a driver that is not installed is skipped with
the reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sqldiag.record.store import load_record

MB = 1 << 20
URLS = {
    "sqlite": "sqlite:///{cache}/bench-rss-parts.sqlite3",
    "pymysql": "mysql+pymysql://root@127.0.0.1:3306/test",
    "mysqlclient": "mysql+mysqldb://root@127.0.0.1:3306/test",
    "psycopg": "postgresql+psycopg://root@127.0.0.1:5432/test",
    "psycopg2": "postgresql+psycopg2://root@127.0.0.1:5432/test",
}
MODULES = {"pymysql": "pymysql", "mysqlclient": "MySQLdb", "psycopg": "psycopg",
           "psycopg2": "psycopg2"}
NATIVE_ON = ("psycopg", "psycopg2")


def _installed(driver: str) -> bool:
    module = MODULES.get(driver)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _run(scenario: str, url: str, rows: int, workers: int, reports: Path) -> dict | None:
    command = [sys.executable, "-m", "sqldiag", "scenario", scenario, "--url", url,
               "--rows", str(rows), "--workers", str(workers), "--json",
               "--reports-dir", str(reports)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  {scenario} on {url}: exit {done.returncode}: "
              f"{done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout[done.stdout.index("{"):])


def _mb(value: int | None) -> str:
    return f"{value / MB:,.0f}" if value is not None else "n/a"


def _row(label: str, out: dict) -> str:
    s = out["summary"]
    peak, end = s["parts_peak"], s["parts_end"]
    named = (f"{1 - peak['rest'] / peak['growth']:.1%}" if peak and peak["growth"] > 0
             else "n/a")
    named_end = (f"{1 - end['rest'] / end['growth']:.1%}" if end and end["growth"] > 0
                 else "n/a")
    error = f"{s['model_error'] * 100:+.1f}%" if s.get("model_error") is not None else "n/a"
    parts = (f"{_mb(peak['python_objects'])} | {_mb(peak['python_unattributed'])} | "
             f"{_mb(peak['native'])} | {_mb(peak['overhead'])} | "
             f"{_mb(peak['pymalloc_free'] + peak['glibc_free'])} | "
             f"{_mb(peak['mapped_files'])} | {_mb(peak['rest'])}"
             if peak else "n/a | n/a | n/a | n/a | n/a | n/a | n/a")
    return (f"| {label} | {_mb(s['peak_rss'] - s['start_rss'])} | {named} | {parts} | "
            f"{_mb(end['growth']) if end else 'n/a'} | {named_end} | "
            f"{_mb(s.get('predicted_overhead'))} | {_mb(s.get('predicted_native'))} | {error} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--only", help="comma-separated drivers (default: all five)")
    parser.add_argument("--reports", default="reports/bench-rss-parts")
    args = parser.parse_args()
    from sqldiag.cache import cache_dir

    wanted = args.only.split(",") if args.only else list(URLS)
    reports = Path(args.reports)
    print(f"Python {sys.version.split()[0]}; {args.rows:,} rows x {args.workers} workers; "
          "MB of RSS growth above the start")
    header = ("| run | peak growth | named at peak | Python objects | Python, no category | "
              "native in use | pymalloc overhead | free | mapped files | unaccounted | growth after the "
              "work | named after | predicted overhead | predicted native | predicted peak vs measured |")
    lines = [header, "| --- " * (header.count("|") - 1) + "|"]
    runs = [("leak_repro", d) for d in wanted] + \
        [("buffered_result_native", d) for d in wanted if d in NATIVE_ON]
    for scenario, driver in runs:
        if not _installed(driver):
            print(f"  skipped {driver}: its module {MODULES[driver]} is not installed")
            continue
        url = URLS[driver].format(cache=cache_dir())
        print(f"  {scenario} on {driver} ...", flush=True)
        out = _run(scenario, url, args.rows, args.workers, reports)
        if out is None:
            continue
        lines.append(_row(f"{scenario}, {driver}", out))
        record = load_record(Path(out["run_dir"]))
        high = record.allocator.at_high
        if high is not None:
            print(f"    allocators read at the peak at {high.rss / MB:,.0f} MB RSS "
                  f"({high.t:.1f} s); run folder {out['run_dir']}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
