"""A user's service for the live tests: it loads a table into a module-level cache (the
original report's bug) and keeps serving until its stdin closes.

usage: live_service.py DB_FILE ROWS [--install] [--metrics PORT] [--forks N] [--grow]
       [--exit]

--install calls sqldiag.install() (with --metrics, serving Prometheus metrics on PORT,
refreshed every 0.3 s); --forks N forks N workers after that, each loading the table
too; --grow loads it again each time a line arrives on stdin; --exit leaves once loaded
(for `sqldiag run` of the same work). Prints "ready PID [WORKER_PID...]" once loaded.
"""

import os
import sys

from sqlalchemy import Integer, String, create_engine, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))


CACHE: list = []  # never emptied: the service's memory problem
SESSIONS: list[Session] = []  # never closed, one per load


def load_customers(engine) -> None:
    SESSIONS.append(Session(engine))
    CACHE.append(SESSIONS[-1].query(Customer).filter(Customer.name != "s3cret-literal").all())


def seed(engine, rows: int) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Customer), [{"name": f"customer {i}", "email": f"c{i}@example.com"}
                                        for i in range(rows)])


def main() -> int:
    path, rows, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    engine = create_engine(f"sqlite:///{path}")
    seed(engine, rows)
    if "--install" in flags or "--metrics" in flags:
        import sqldiag

        port = int(flags[flags.index("--metrics") + 1]) if "--metrics" in flags else None
        sqldiag.install(metrics_port=port, metrics_interval=0.3)
    workers = []
    if "--forks" in flags:
        for _ in range(int(flags[flags.index("--forks") + 1])):
            pid = os.fork()
            if pid == 0:
                engine.dispose(close=False)
                load_customers(engine)
                sys.stdin.read()  # until the test closes it
                os._exit(0)
            workers.append(pid)
    else:
        load_customers(engine)
    print("ready", os.getpid(), *workers, flush=True)
    if "--exit" in flags:
        return 0
    for _line in sys.stdin:
        if "--grow" in flags:
            load_customers(engine)
        print("loaded", flush=True)
    for pid in workers:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
