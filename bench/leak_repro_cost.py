"""What sqldiag costs on the post's workload: bare run against `sqldiag scenario leak_repro`.

    python bench/leak_repro_cost.py [--url URL] [--rows 100000] [--workers 10]

Each command runs in its own child; its wall time and peak RSS (the largest of the
command and its own children, from wait4's rusage) are printed with the ratio to bare.
sqldiag's figure is the whole command: its bare pass, its traced pass and the analysis.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from sqldiag.database import resolve_url
from sqldiag.schema import build_schema
from sqldiag.seeding import ensure_seeded

HERE = Path(__file__).resolve().parent


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of the command's process tree, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
    args = parser.parse_args()
    url = resolve_url(args.url)
    engine = create_engine(url)
    ensure_seeded(engine, build_schema("users"), args.rows, None)
    engine.dispose()
    plain_url = url.render_as_string(hide_password=False)

    rows = []
    wall, _, out = measure([sys.executable, str(HERE / "post_workload.py"), plain_url, "users",
                            str(args.workers)])
    bare = json.loads(out)
    rows.append(("bare (the post's code)", bare["wall_s"], bare["peak_rss"], wall))
    with tempfile.TemporaryDirectory() as reports:
        wall, peak, out = measure([sys.executable, "-m", "sqldiag", "scenario", "leak_repro",
                                   "--url", plain_url, "--rows", str(args.rows), "--workers",
                                   str(args.workers), "--json", "--reports-dir", reports])
    summary = json.loads(out)["summary"]
    rows.append(("sqldiag scenario leak_repro", wall, peak, wall))

    print(f"leak_repro, {args.rows:,} rows x {args.workers} workers on {url.get_backend_name()}")
    print(f"{'run':<30} {'wall s':>8} {'x bare':>7} {'peak RSS MB':>12} {'x bare':>7}")
    for name, w, p, _total in rows:
        print(f"{name:<30} {w:8.1f} {w / bare['wall_s']:7.2f} {p / 2**20:12.0f} "
              f"{p / bare['peak_rss']:7.2f}")
    print(f"sqldiag's bare pass measured peak RSS {summary['peak_rss'] / 2**20:.0f} MB "
          f"(bare run: {bare['peak_rss'] / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
