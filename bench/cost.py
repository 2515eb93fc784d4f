"""What diagnosing costs on the post's workload, side by side in one invocation.

    python bench/cost.py [--url URL] [--rows 100000] [--workers 10] [--skip-full]

Runs, on the same database and table: the post's code bare; `sqldiag scenario
leak_repro` (the default); `sqldiag ... --trace full`; and the post's code under
`memray run --trace-python-allocators` when memray is installed. Each command runs in
its own child; its wall time and peak RSS (the largest of the command and the children
it waited for, from wait4's rusage) are printed with ratios to bare. Also printed: the
default run's predicted peak against the bare run's measured one, and the cost of the
analysis step (raw traces to categories) in the --trace full run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from sqldiag.record.store import load_record
from sqldiag.workload.database import resolve_url
from sqldiag.workload.schema import build_schema
from sqldiag.workload.seeding import ensure_seeded

HERE = Path(__file__).resolve().parent
MB = 1 << 20


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of the command's process tree, stdout); a command
    that fails ends the benchmark."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    out = proc.stdout.read()  # type: ignore[union-attr]
    # wait4's rusage covers the command and the children it waited for (sqldiag's passes)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd[:6])} ...")
    return wall, usage.ru_maxrss * 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--skip-full", action="store_true", help="skip the --trace full run")
    args = parser.parse_args()
    url = resolve_url(args.url)
    engine = create_engine(url)
    ensure_seeded(engine, build_schema("users"), args.rows, None)
    engine.dispose()
    plain_url = url.render_as_string(hide_password=False)
    post = [str(HERE / "post_workload.py"), plain_url, "users", str(args.workers)]
    sqldiag = [sys.executable, "-m", "sqldiag", "scenario", "leak_repro", "--url", plain_url,
               "--rows", str(args.rows), "--workers", str(args.workers), "--json"]

    rows: list[tuple[str, float, int]] = []
    wall, _, out = measure([sys.executable, *post])
    bare = json.loads(out)
    rows.append(("bare (the post's code)", bare["wall_s"], bare["peak_rss"]))
    records = {}
    with tempfile.TemporaryDirectory() as reports:
        runs = [("sqldiag (default)", [])]
        if not args.skip_full:
            runs.append(("sqldiag --trace full", ["--trace", "full"]))
        for name, extra in runs:
            wall, peak, out = measure([*sqldiag, *extra, "--reports-dir", reports])
            printed = json.loads(out)
            records[name] = (load_record(printed["run_dir"]), printed["summary"])
            rows.append((name, wall, peak))
        if importlib.util.find_spec("memray"):
            capture = Path(reports) / "post.bin"
            wall, peak, _ = measure([sys.executable, "-m", "memray", "run", "--quiet",
                                     "--trace-python-allocators", "-o", str(capture), *post])
            rows.append(("memray --trace-python-allocators", wall, peak))

    print(f"leak_repro, {args.rows:,} rows x {args.workers} workers on "
          f"{url.get_backend_name()} ({records['sqldiag (default)'][0].database.server_version})")
    print(f"{'run':<34} {'wall s':>8} {'x bare':>7} {'peak RSS MB':>12} {'x bare':>7}")
    for name, w, p in rows:
        print(f"{name:<34} {w:8.1f} {w / bare['wall_s']:7.2f} {p / MB:12.0f} "
              f"{p / bare['peak_rss']:7.2f}")
    default = records["sqldiag (default)"][1]
    predicted = default.get("predicted_peak_rss")
    if predicted:
        print(f"default run: predicted peak RSS {predicted / MB:.0f} MB from the calibration "
              f"model; its bare pass measured {default['peak_rss'] / MB:.0f} MB "
              f"({predicted / default['peak_rss'] - 1:+.1%}); the post's code alone "
              f"{bare['peak_rss'] / MB:.0f} MB ({predicted / bare['peak_rss'] - 1:+.1%})")
    full = records.get("sqldiag --trace full")
    cost = full[0].measurement.analysis if full else None
    if cost is not None:
        print(f"analysis step of --trace full: {cost.traces:,} traces reduced to categories "
              f"in {cost.seconds:.1f} s; RSS {(cost.rss_before or 0) / MB:.0f} MB before, "
              f"{(cost.rss_after or 0) / MB:.0f} MB after")


if __name__ == "__main__":
    main()
