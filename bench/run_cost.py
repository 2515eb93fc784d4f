"""Your own program at full size: what `sqldiag run` and `capture()` cost and report.

    python bench/run_cost.py [--url URL] [--rows 100000] [--workers 10] [--skip-memray]
                             [--skip-scenario]

On the original report's code saved as a script (bench/original_report.py), in one
invocation: the script bare; `sqldiag run` on it; the same code inside
`sqldiag.capture()`; the same code as a pytest test marked with a budget
(bench/pytest_original_report.py); `memray run --trace-python-allocators` on it (when memray is
installed); and `sqldiag scenario leak_repro` on the same table, whose categories the
program's are compared with. Wall time and peak RSS of each command's process tree
(wait4's rusage: the largest process) are printed with ratios to bare, then the
reported peak against the bare script's, the share of the peak's growth the categories
explain, each category against the scenario's, and the share of each that the
statement table charges to the script's query line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

from cost import measure  # the bench folder is sys.path[0] when run as a script
from sqlalchemy import create_engine

from sqldiag.record.categories import TRACED
from sqldiag.record.store import load_record
from sqldiag.workload.database import resolve_url
from sqldiag.workload.schema import build_schema
from sqldiag.workload.seeding import ensure_seeded

HERE = Path(__file__).resolve().parent
MB = 1 << 20
ROW_CATEGORIES = ("driver_rows", "orm_objects", "identity_map", "result_lists")


def last_json(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def _censuses(run_dir: Path) -> str:
    """What the censuses of a saved run cost the program."""
    taken = load_record(run_dir).measurement.censuses
    return (f"{len(taken)} censuses paused the program {sum(c.seconds for c in taken):.2f} s "
            f"in all; the largest listed {max((c.objects for c in taken), default=0):,} "
            f"objects in {max((c.seconds for c in taken), default=0):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--skip-memray", action="store_true")
    parser.add_argument("--skip-scenario", action="store_true")
    args = parser.parse_args()
    url = resolve_url(args.url)
    engine = create_engine(url)
    ensure_seeded(engine, build_schema("users"), args.rows, None)
    engine.dispose()
    plain_url = url.render_as_string(hide_password=False)
    script = [str(HERE / "original_report.py"), plain_url, str(args.workers)]
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as reports:
        wall, peak, _ = measure([sys.executable, *script])
        bare = (wall, peak)
        rows.append(("bare script", wall, peak))
        wall, peak, out = measure([sys.executable, "-m", "sqldiag", "run", "--json",
                                   "--reports-dir", reports, *script])
        run = last_json(out)
        rows.append(("sqldiag run", wall, peak))
        env = dict(os.environ, SQLDIAG_BENCH_CAPTURE=reports)
        wall, peak, out = measure([sys.executable, *script], env=env)
        captured = json.loads(out.splitlines()[-1])
        rows.append(("capture() around the same code", wall, peak))
        env = dict(os.environ, SQLDIAG_BENCH_URL=plain_url,
                   SQLDIAG_BENCH_WORKERS=str(args.workers))
        in_pytest = Path(reports) / "pytest"
        wall, peak, _ = measure([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 str(HERE / "pytest_original_report.py"),
                                 "--sqldiag-reports", str(in_pytest)], env=env)
        rows.append(("pytest test marked with a budget", wall, peak))
        _, _, out = measure([sys.executable, "-m", "sqldiag", "report", "--json",
                             str(next(in_pytest.iterdir()))])
        tested = json.loads(out)
        if not args.skip_memray and importlib.util.find_spec("memray"):
            wall, peak, _ = measure([sys.executable, "-m", "memray", "run", "--quiet",
                                        "--trace-python-allocators", "-o",
                                        str(Path(reports) / "post.bin"), *script])
            rows.append(("memray --trace-python-allocators", wall, peak))
        paused = {"sqldiag run": _censuses(Path(run["run_dir"])),
                  "capture()": _censuses(Path(captured["run_dir"])),
                  "pytest plugin": _censuses(next(in_pytest.iterdir()))}
        scenario = None
        if not args.skip_scenario:
            wall, peak, out = measure([sys.executable, "-m", "sqldiag", "scenario",
                                             "leak_repro", "--url", plain_url, "--rows",
                                             str(args.rows), "--workers", str(args.workers),
                                             "--json", "--reports-dir", reports])
            scenario = json.loads(out)
            rows.append(("sqldiag scenario leak_repro", wall, peak))

    print(f"the original report's code as a script, {args.rows:,} rows x {args.workers} "
          f"workers on {url.get_backend_name()}")
    print(f"{'run':<34} {'wall s':>8} {'x bare':>7} {'peak RSS MB':>12} {'x bare':>7}")
    for name, w, p in rows:
        print(f"{name:<34} {w:8.1f} {w / bare[0]:7.2f} {p / MB:12.0f} {p / bare[1]:7.2f}")
    for name, figures in (("sqldiag run", run), ("capture()", captured),
                          ("pytest plugin", tested)):
        summary = figures["summary"]
        growth = summary["peak_rss"] - summary["start_rss"]
        traced = sum(v for k, v in figures["categories"]["peak"].items() if k in TRACED)
        parts = summary.get("parts_peak")
        named = (f"; measured parts name {1 - parts['rest'] / parts['growth']:.0%} of it "
                 f"(Python objects outside the categories {parts['python_unattributed'] / MB:.0f}"
                 f" MB, native {parts['native'] / MB:.0f} MB, free "
                 f"{(parts['pymalloc_free'] + parts['glibc_free']) / MB:.0f} MB)"
                 if parts and parts["growth"] > 0 else "")
        print(f"{name}: reported peak {summary['peak_rss'] / MB:.0f} MB "
              f"({summary['peak_rss'] / bare[1] - 1:+.1%} against the bare script's "
              f"{bare[1] / MB:.0f} MB); categories explain {traced / growth:.0%} of the "
              f"peak's growth (extended x{summary['scale']:.2f} from the census that found the "
              f"most alive){named}")
        if name in paused:
            print("   " + paused[name])
        top = (figures.get("queries") or [None])[0]
        if top:
            mine = figures["categories"]["peak"]
            print(f"   by query: {top['file']}:{top['line']} in {top['function']} "
                  f"({top['executions']} executions) holds " + ", ".join(
                      f"{top['categories'].get(c, 0) / mine[c]:.0%} of {c}"
                      for c in ROW_CATEGORIES if mine.get(c)))
        if scenario:
            theirs = scenario["categories"]["peak"]
            mine = figures["categories"]["peak"]
            print("   against scenario leak_repro: " + ", ".join(
                f"{c} {mine[c] / MB:.0f}/{theirs[c] / MB:.0f} MB "
                f"({mine[c] / theirs[c] - 1:+.0%})" for c in ROW_CATEGORIES if theirs.get(c)))


if __name__ == "__main__":
    main()
