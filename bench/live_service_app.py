"""The service the live bench asks: a cache of ORM objects that only grows, and a thread
standing for request handling that notes how long it was kept waiting.

usage: live_service_app.py DB_FILE|URL [--install] [--no-queries]
                           [--metrics PORT --interval S] [--exit] [--queries N]
                           [--no-requests] [--install-late]

Loads every customer of DB_FILE into a module cache (one Session, kept), then, unless
--exit, answers lines on stdin (--no-requests: without the request thread, idle): `gap` prints the longest wait of the request thread since
the last `gap` (ms), `cpu` prints this process's CPU seconds so far, `quit` leaves.
--install-late loads before install() (a warm service).
--queries N instead times N small ORM queries (a Session each, as a request would) and
prints their wall seconds, then leaves. --no-queries: install(queries=False).
"""

import os
import sys
import threading
import time

from sqlalchemy import Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "sqldiag_live_customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))


CACHE: list = []
LONGEST = [0.0]
TICK = 0.001


def load_all(engine) -> None:
    session = Session(engine)
    CACHE.append(session)
    CACHE.append(session.query(Customer).all())


def request_thread() -> None:
    """Stands for a worker thread serving requests: a little work every millisecond."""
    last = time.perf_counter()
    while True:
        time.sleep(TICK)
        sum(range(200))
        now = time.perf_counter()
        LONGEST[0] = max(LONGEST[0], now - last - TICK)
        last = now


def timed_queries(engine, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        with Session(engine) as session:
            session.get(Customer, 1 + i % 1000)
    return time.perf_counter() - started


def main() -> int:
    path, flags = sys.argv[1], sys.argv[2:]
    engine = create_engine(path if "://" in path else f"sqlite:///{path}")
    if "--install-late" in flags:  # a warm service: install() once its cache is loaded
        load_all(engine)
    if "--install" in flags or "--metrics" in flags:
        import sqldiag

        port = int(flags[flags.index("--metrics") + 1]) if "--metrics" in flags else None
        interval = float(flags[flags.index("--interval") + 1]) if "--interval" in flags else 60
        sqldiag.install(metrics_port=port, metrics_interval=interval,
                        queries="--no-queries" not in flags)
    if "--queries" in flags:
        count = int(flags[flags.index("--queries") + 1])
        timed_queries(engine, 200)  # warm the caches
        print(f"{timed_queries(engine, count):.4f}", flush=True)
        return 0
    if "--install-late" not in flags:
        load_all(engine)
    if "--exit" in flags:
        return 0
    if "--no-requests" not in flags:
        threading.Thread(target=request_thread, daemon=True).start()
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "gap":
            print(f"{LONGEST[0] * 1000:.1f}", flush=True)
            LONGEST[0] = 0.0
        elif command == "cpu":
            times = os.times()
            print(f"{times.user + times.system:.3f}", flush=True)
        elif command == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
