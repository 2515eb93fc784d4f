"""What the statement ledger (which query, which line) costs each execution.

    python bench/ledger_cost.py [--url URL] [--executions 20000] [--rounds 5]

Many small statements are the ledger's worst case: its work is per execution (a frame
walk to the program's line and a dict update in before_cursor_execute, a row count in
after_cursor_execute), not per row. One process runs the same workload with and without
a started QueryLedger, alternating, `rounds` times each: ORM selects of one row by key
(`session.execute(select(Item).where(Item.id == ?))`) and Core selects of one value.
Prints the fastest round of each (the least disturbed by the rest of the machine) and
the ledger's share.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import Integer, String, create_engine, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqldiag.capture.probes.queries import QueryLedger

ROWS = 1000


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "ledger_cost_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


def orm_lookups(engine, executions: int) -> None:
    with Session(engine) as session:
        for n in range(executions):
            session.execute(select(Item).where(Item.id == n % ROWS + 1)).scalar_one()
            session.expunge_all()


def core_lookups(engine, executions: int) -> None:
    with engine.connect() as conn:
        for n in range(executions):
            conn.execute(text("SELECT label FROM ledger_cost_items WHERE id = :i"),
                         {"i": n % ROWS + 1}).scalar_one()


def timed(work, engine, executions: int, ledger: bool) -> float:
    started = QueryLedger() if ledger else None
    if started is not None:
        started.start()
    try:
        began = time.perf_counter()
        work(engine, executions)
        return time.perf_counter() - began
    finally:
        if started is not None:
            started.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="sqlite:///ledger_cost.sqlite3")
    parser.add_argument("--executions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    engine = create_engine(args.url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item), [{"id": i, "label": f"item {i}"} for i in range(1, ROWS + 1)])
    print(f"{args.executions:,} executions each, {args.rounds} rounds, on "
          f"{engine.url.render_as_string(hide_password=True)}")
    for name, work in (("ORM select by key", orm_lookups), ("Core select", core_lookups)):
        work(engine, 500)  # compiled and cached, connections pooled
        bare, ledger = [], []
        for _ in range(args.rounds):
            bare.append(timed(work, engine, args.executions, ledger=False))
            ledger.append(timed(work, engine, args.executions, ledger=True))
        b, led = min(bare), min(ledger)
        print(f"{name:20} bare {b:6.2f} s ({b / args.executions * 1e6:5.1f} us each)   "
              f"with ledger {led:6.2f} s   +{(led / b - 1) * 100:4.1f}% "
              f"({(led - b) / args.executions * 1e6:4.1f} us an execution)")
    Base.metadata.drop_all(engine)
    engine.dispose()


if __name__ == "__main__":
    main()
