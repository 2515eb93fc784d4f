"""A user's application: two queries in two functions of a module of its own.

usage: two_queries.py once|threads|loop DB_FILE ROWS

load_items() loads every row through the ORM and the caller keeps them; few_labels()
reads a hundred values through Core. `threads` runs load_items in ten threads, `loop`
runs it five times on fifth-size slices, accumulating the results. Both queries filter
on secret-looking values, which must appear in no output of sqldiag's.
"""

import sys
import threading
import time

from sqlalchemy import Integer, String, Text, create_engine, insert, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)


def load_items(engine, low=0, high=None):
    with Session(engine) as session:
        query = session.query(Item).filter(Item.label != "hunter2-s3cret-bound", Item.id > low)
        return (query.filter(Item.id <= high) if high else query).all()


def few_labels(engine):
    with engine.connect() as conn:
        sql = "SELECT label FROM items WHERE id <= 100 AND label != 'pw-l1teral-s3cret'"
        return [row[0] for row in conn.execute(text(sql))]


def main() -> None:
    mode, path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = create_engine("sqlite:///" + path)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item), [{"id": i, "label": f"item {i}", "body": "x" * 80 + str(i)}
                                    for i in range(1, rows + 1)])
    kept = []
    if mode == "once":
        kept.append(load_items(engine))
    elif mode == "threads":
        threads = [threading.Thread(target=lambda: kept.append(load_items(engine)))
                   for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        step = rows // 5
        for low in range(0, rows, step):
            kept.append(load_items(engine, low, low + step))
    labels = few_labels(engine)
    time.sleep(0.3)  # works on them a moment (a census at an RSS high sees them)
    print(mode, sum(map(len, kept)), len(labels))


if __name__ == "__main__":
    main()
