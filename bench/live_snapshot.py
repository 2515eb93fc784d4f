"""A running service at full size: what `sqldiag snapshot` and install() cost it.

    python bench/live_snapshot.py [--rows 1000000] [--snapshots 3] [--idle 300]
                                  [--queries 20000] [--url URL] [--skip-run]

The service (bench/live_service_app.py) holds --rows ORM objects in a module cache
(SQLite file, seeded once) and has a thread standing for request handling. Printed:

  snapshot    for each of --snapshots snapshots: the command's wall time (start to
              report written), the process's own figures (seconds from request to
              record, census CPU, the longest wait its threads had, as sqldiag measured
              it) and the longest wait of the service's request thread, measured by
              the service itself
  categories  the snapshot's categories against `sqldiag run` of the same work (the
              service loading the same rows and leaving), each with its difference
  idle        CPU share of a warm service (install() after its load) over --idle
              seconds with install(metrics_port, metrics_interval=10), no request
              thread, from its first census on
              (censuses are spaced to 1.5% of a core); and of the same service without
              install()
  requests    --queries small ORM queries (a Session each) bare, after install() and
              after install(queries=False): the request path's cost; on the SQLite
              file, and on --url too when given (its first 1,000 rows, seeded)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select

HERE = Path(__file__).resolve().parent
APP = HERE / "live_service_app.py"
MB = 1 << 20
CATEGORIES = ("orm_objects", "identity_map", "driver_rows", "result_lists", "other_python")


def seed(path: Path | str, rows: int) -> None:
    sys.path.insert(0, str(HERE))
    from live_service_app import Base, Customer

    engine = create_engine(str(path) if "://" in str(path) else f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(Customer)).scalar()
    if have == rows:
        return
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(0, rows, 50_000):
            conn.execute(insert(Customer), [
                {"name": f"customer {i}", "email": f"customer{i}@example.com"}
                for i in range(start, min(rows, start + 50_000))])


class Service:
    def __init__(self, db: Path, *flags: str, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, str(APP), str(db), *flags],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        ready = self.proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit(f"the service did not start: {ready}")
        self.pid = int(ready[1])

    def ask(self, command: str) -> float:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def quit(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def sqldiag(*args: str, env: dict, cwd: Path) -> tuple[float, dict]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sqldiag", args[0], "--json", *args[1:]], env=env,
                          cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"sqldiag {args[0]} failed: {done.stderr.strip()}")
    return wall, json.loads(done.stdout[done.stdout.index("{"):])


def first_census(port: int) -> float:
    """The CPU seconds of the service's first census, once it is on /metrics."""
    import urllib.request

    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
            for line in page.read().decode().splitlines():
                if line.startswith("sqldiag_census_seconds{"):
                    return float(line.rsplit(" ", 1)[1])
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--idle", type=float, default=300.0)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--url", help="also time the request path on this database")
    parser.add_argument("--skip-run", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sqldiag-live-bench-"))
    db = Path(tempfile.gettempdir()) / f"sqldiag-live-bench-{args.rows}.sqlite3"
    print(f"seeding {args.rows:,} rows in {db} (kept for the next run)...", flush=True)
    seed(db, args.rows)
    env = dict(os.environ, SQLDIAG_SOCKET_DIR=str(work / "sockets"))

    service = Service(db, "--install", env=env)
    snapshot = None
    try:
        service.ask("gap")
        for n in range(1, args.snapshots + 1):
            wall, snapshot = sqldiag("snapshot", str(service.pid), env=env, cwd=work)
            gap = service.ask("gap")
            live = snapshot["snapshot"]
            print(f"snapshot {n}: {wall:.2f} s for the command; in the process "
                  f"{live['seconds']:.2f} s, census {live['census_s']:.2f} s CPU, threads "
                  f"waited at most {live['paused_s'] * 1000:.0f} ms (sqldiag's meter), "
                  f"the request thread at most {gap:.0f} ms (its own)", flush=True)
        objects = snapshot["queries"][0]["objects"] if snapshot["queries"] else 0
        print(f"  ORM objects alive: {objects:,}; peak RSS "
              f"{snapshot['summary']['peak_rss'] / MB:,.0f} MB")
    finally:
        service.quit()

    if not args.skip_run:
        _, ran = sqldiag("run", "--name", "same-work", str(APP), str(db), "--exit", env=env,
                         cwd=work)
        live_peak, run_peak = snapshot["categories"]["peak"], ran["categories"]["peak"]
        print("categories: snapshot against `sqldiag run` of the same work")
        for category in CATEGORIES:
            a, b = live_peak.get(category, 0), run_peak.get(category, 0)
            diff = f"{100 * (a - b) / b:+.1f}%" if b else "n/a"
            print(f"  {category:16} {a / MB:9.1f} MB {b / MB:9.1f} MB  {diff}")
        total_a = sum(live_peak.get(c, 0) for c in CATEGORIES[:-1])
        total_b = sum(run_peak.get(c, 0) for c in CATEGORIES[:-1])
        print(f"  {'row categories':16} {total_a / MB:9.1f} MB {total_b / MB:9.1f} MB  "
              f"{100 * (total_a - total_b) / total_b:+.1f}%")

    if args.idle > 0:
        port = free_port()
        idle = Service(db, "--metrics", str(port), "--interval", "10", "--no-requests",
                       "--install-late", env=env)
        try:
            first = first_census(port)
            before, started = idle.ask("cpu"), time.monotonic()
            time.sleep(args.idle)
            spent, elapsed = idle.ask("cpu") - before, time.monotonic() - started
        finally:
            idle.quit()
        print(f"idle: install(metrics_port, metrics_interval=10) with {args.rows:,} objects "
              f"held, after its first census ({first:.2f} s CPU): {spent:.2f} s CPU in "
              f"{elapsed:.0f} s = {100 * spent / elapsed:.2f}% of a core", flush=True)
        bare = Service(db, "--no-requests", env=env)
        try:
            before, started = bare.ask("cpu"), time.monotonic()
            time.sleep(min(args.idle, 30))
            spent, elapsed = bare.ask("cpu") - before, time.monotonic() - started
        finally:
            bare.quit()
        print(f"      the same service without install(): {100 * spent / elapsed:.2f}% "
              "of a core")

    if args.queries:
        targets = [("SQLite file", str(db))]
        if args.url:
            seed(args.url, 1000)
            targets.append((args.url.split("://")[0], args.url))
        for where, target in targets:
            request_path(where, target, args.queries, env)


def request_path(where: str, target: str, count: int, env: dict) -> None:
    """The same small queries bare and installed, alternated, three times each; the
    fastest of each is compared (the others had more of the machine's noise)."""
    variants = {"bare": (), "install()": ("--install",),
                "install(queries=False)": ("--install", "--no-queries")}
    timings: dict[str, list[float]] = {}
    for _ in range(3):
        for label, flags in variants.items():
            done = subprocess.run([sys.executable, str(APP), target, *flags, "--queries",
                                   str(count)], env=env, capture_output=True, text=True,
                                  check=True)
            timings.setdefault(label, []).append(float(done.stdout))
    bare = min(timings["bare"])
    figures = ", ".join(
        f"{label} {min(t):.2f} s ({100 * (min(t) / bare - 1):+.1f}%, "
        f"{1e6 * (min(t) - bare) / count:+.1f} us per query)"
        for label, t in timings.items() if label != "bare")
    print(f"requests on {where}: {count:,} ORM queries, a Session each: bare {bare:.2f} s; "
          f"{figures}", flush=True)

if __name__ == "__main__":
    main()
