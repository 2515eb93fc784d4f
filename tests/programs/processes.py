"""A user's program: worker processes each load a table through the ORM.

usage: processes.py pool-fork|pool-spawn|executor-spawn|executor-forkserver DB_FILE
Exits 3 after printing what the workers loaded, so tests can check the exit code.
"""

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import Integer, String, Text, create_engine, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

ROWS = 2000


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)


def started(barrier):
    barrier.wait(timeout=60)  # both workers run before any task: each one measures a load


def load(n):
    engine = create_engine("sqlite:///" + sys.argv[2])
    with Session(engine) as session:
        items = session.query(Item).all()
        time.sleep(0.3)  # works on them a moment (a census at an RSS high sees them)
        return n, len(items), sum(len(item.body) for item in items)


if __name__ == "__main__":
    how, method = sys.argv[1].split("-")
    engine = create_engine("sqlite:///" + sys.argv[2])
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item), [{"id": i, "label": f"item {i}", "body": "x" * 80 + str(i)}
                                    for i in range(ROWS)])
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(2)
    if how == "pool":
        with context.Pool(2, initializer=started, initargs=(barrier,)) as pool:
            results = pool.map(load, range(4), chunksize=1)
    else:
        with ProcessPoolExecutor(2, mp_context=context, initializer=started,
                                 initargs=(barrier,)) as executor:
            results = list(executor.map(load, range(4)))
    print(how, method, sorted(results))
    sys.exit(3)
