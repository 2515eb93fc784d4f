"""Diagnose the example service, bug and fix, the way its operator would.

    python demo.py [--fix] [--requests 400] [--pages 100] [--workers 2]

Seeds the table (100,000 users in leaky_service.db) once, starts the service under
gunicorn (--preload, --workers N) with sqldiag.install(metrics_port=...), drives it with
load.py, then reads the fleet's metrics once and takes a snapshot of each worker with
`sqldiag snapshot PID` (record and report under ./reports). With --fix the service runs
SQLDIAG_FIX=1. Prints per worker: RSS, orm_objects and identity_map from the metrics,
and the snapshot's top statement with the line that ran it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MB = 1 << 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def metrics(port: int) -> dict[tuple[str, str], float]:
    """(metric{labels}, pid) -> value, from the fleet's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out = {}
    for line in text.decode().splitlines():
        match = re.match(r'^(sqldiag_\w+)\{(.*)\} (\S+)$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            key = match.group(1) + (f"[{labels['category']}]" if "category" in labels else "")
            out[(key, labels.get("pid", ""))] = float(match.group(3))
    return out


def fresh_metrics(port: int, since: float, workers: int) -> dict:
    """The metrics once every worker's census is newer than `since` (censuses come every
    2 s here, or less often where one would cost more than 1.5% of a core)."""
    deadline = time.monotonic() + 120
    while True:
        figures = metrics(port)
        stamps = [v for (key, _), v in figures.items()
                  if key == "sqldiag_census_timestamp_seconds"]
        # the workers and the master, which has a series too
        if sum(stamp > since for stamp in stamps) > workers or time.monotonic() > deadline:
            return figures
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (HERE / "leaky_service.db").exists():
        subprocess.run([sys.executable, "app.py", "--seed", "100000"], cwd=HERE, check=True)
    http, port = free_port(), free_port()
    env = dict(os.environ, SQLDIAG_METRICS_PORT=str(port), SQLDIAG_METRICS_INTERVAL="2",
               SQLDIAG_FIX="1" if args.fix else "0")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--preload", "-w",
                               str(args.workers), "-b", f"127.0.0.1:{http}", "app:create_app()"],
                              cwd=HERE, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{http}/health")
        subprocess.run([sys.executable, "load.py", f"http://127.0.0.1:{http}", "--requests",
                        str(args.requests), "--pages", str(args.pages)], cwd=HERE, check=True)
        figures = fresh_metrics(port, since=time.time(), workers=args.workers)
        pids = sorted({pid for (_, pid) in figures if pid != str(server.pid)})
        print(f"{'fixed' if args.fix else 'leaky'} service, {args.requests} requests over "
              f"{args.pages} pages of 1,000 users; gunicorn master {server.pid}")
        for pid in pids:
            done = subprocess.run([sys.executable, "-m", "sqldiag", "snapshot", pid, "--json"],
                                  cwd=HERE, capture_output=True, text=True, check=True)
            snap = json.loads(done.stdout)
            top = snap["queries"][0] if snap["queries"] else None
            held = (f"{top['file']}:{top['line']} in {top['function']} holds "
                    f"{sum(top['categories'].values()) / MB:.0f} MB ({top['objects']:,} "
                    "instances)") if top and top["objects"] else "no statement holds rows"
            kept = snap["kept_alive"]
            if kept:
                held += f", {kept[0]['holder']} ({kept[0]['bytes'] / MB:.0f} MB)"
            print(f"  worker {pid}: RSS {figures[('sqldiag_rss_bytes', pid)] / MB:.0f} MB, "
                  f"orm_objects {figures[('sqldiag_category_bytes[orm_objects]', pid)] / MB:.1f}"
                  f" MB, identity_map "
                  f"{figures[('sqldiag_category_bytes[identity_map]', pid)] / MB:.1f} MB "
                  f"(metrics)\n    snapshot in {snap['snapshot']['seconds']:.2f} s: {held}\n"
                  f"    report {Path(snap['run_dir']).relative_to(HERE)}/report.html")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
