"""The original report's code as a user would save it: no sqldiag in it.

    python bench/original_report.py URL [WORKERS]

With SQLDIAG_BENCH_CAPTURE=DIR set (bench/run_cost.py does), main() runs inside
`sqldiag.capture()` and a last line of JSON gives its figures. Ten threads (multiprocessing.dummy.Pool) each open a Session and run
session.query(User).all() on the `users` table; the results are kept until the end.
"""

import os
import sys
from multiprocessing.dummy import Pool

from sqlalchemy import Column, Integer, String, Text, create_engine
from sqlalchemy.orm import declarative_base, sessionmaker

Base = declarative_base()


class User(Base):
    __tablename__ = "users"
    id = Column(Integer, primary_key=True)
    name = Column(String(255))
    sex = Column(String(255))
    address = Column(Text)
    age = Column(Integer)


def main() -> None:
    url = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    engine = create_engine(url, pool_size=workers)
    Session = sessionmaker(bind=engine)

    def query_all(_):
        session = Session()
        users = session.query(User).all()
        session.close()
        return users

    with Pool(workers) as pool:
        results = pool.map(query_all, range(workers))
    print(f"{sum(len(r) for r in results):,} users loaded by {workers} workers")


if __name__ == "__main__":
    if os.environ.get("SQLDIAG_BENCH_CAPTURE"):
        import json

        import sqldiag
        from sqldiag.record.codec import encode

        with sqldiag.capture(name="original_report",
                             reports_dir=os.environ["SQLDIAG_BENCH_CAPTURE"]) as run:
            main()
        print(json.dumps({"run_dir": str(run.run_dir), "summary": encode(run.analysis.summary),
                          "categories": run.analysis.categories,
                          "queries": encode(run.analysis.queries)}))
    else:
        main()
