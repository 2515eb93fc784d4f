"""The post's workload with no sqldiag at all: the bare baseline for the benchmarks.

    python bench/post_workload.py URL TABLE WORKERS

Prints one JSON line: wall time of the workload and this process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from multiprocessing.dummy import Pool

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from sqldiag.workload.schema import build_schema


def main() -> None:
    url, table, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = create_engine(url, pool_size=workers)
    Session = sessionmaker(engine)
    User = build_schema(table).User

    def query_all(_):
        session = Session()
        users = session.query(User).all()
        len(users)
        session.close()
        return users

    started = time.perf_counter()
    pool = Pool(workers)
    results = pool.map(query_all, range(workers))
    wall = time.perf_counter() - started
    rows = sum(len(r) for r in results)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_rss": peak_kb * 1024, "rows": rows}))


if __name__ == "__main__":
    main()
