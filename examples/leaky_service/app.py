"""A small Flask service with the original report's bug, for `sqldiag snapshot` and metrics.

    GET /users?page=N   a page of 1,000 users, as JSON

The bug: one Session per process, made at import and never closed, and each page's ORM
result kept in a module-level dict "to save a query next time", never evicted. Every
user any request loaded stays alive, in that dict and the Session's identity map: memory
climbs with each new page served and never comes back. SQLDIAG_FIX=1 runs the fix: a
Session per request, closed when the request ends, and nothing of it kept.

    python app.py --seed 100000            # the table, in sqlite (or DATABASE_URL)
    python app.py --port 8000              # serve (threaded); gunicorn works too:
    gunicorn -w 2 -b 127.0.0.1:8000 'app:create_app()'

sqldiag.install() is the one line that opts in: `sqldiag snapshot PID` then asks the
process what it holds, and with SQLDIAG_METRICS_PORT set it serves Prometheus metrics.
"""

from __future__ import annotations

import argparse
import os

from flask import Flask, jsonify, request
from sqlalchemy import Integer, String, create_engine, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqldiag

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///leaky_service.db")
PAGE = 1000


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "service_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))


engine = create_engine(DATABASE_URL)
FIXED = os.environ.get("SQLDIAG_FIX") == "1"
_shared_session = None if FIXED else Session(engine)  # the bug: never closed
_pages: dict[int, list[User]] = {}  # the bug: whole ORM results, never evicted


def _query(session: Session, page: int) -> list[User]:
    return session.query(User).filter(User.id > page * PAGE).order_by(User.id) \
        .limit(PAGE).all()


def page_of_users(page: int) -> list[dict]:
    """The users of one page, as dicts."""
    if FIXED:
        with Session(engine) as session:
            users = _query(session, page)
    else:
        users = _pages.get(page)
        if users is None:
            users = _pages[page] = _query(_shared_session, page)
    return [{"id": u.id, "name": u.name, "email": u.email} for u in users]


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/users")
    def users():
        return jsonify(page_of_users(int(request.args.get("page", 0))))

    @app.get("/health")
    def health():
        return "ok"

    port = os.environ.get("SQLDIAG_METRICS_PORT")
    # the opt-in: snapshots on demand, and metrics when a port is given
    sqldiag.install(metrics_port=int(port) if port else None,
                    metrics_interval=float(os.environ.get("SQLDIAG_METRICS_INTERVAL", "60")))
    return app


def seed(rows: int) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        for start in range(0, rows, 10_000):
            conn.execute(insert(User), [{"name": f"user {i}", "email": f"user{i}@example.com"}
                                        for i in range(start, min(rows, start + 10_000))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, metavar="ROWS", help="create the table and exit")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.seed:
        seed(args.seed)
        return
    create_app().run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
