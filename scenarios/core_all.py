"""Core instead of ORM on the same rows: connection.execute(select(users)).all(), kept.

The same shape as the post (a thread pool, whole results held) but Row objects instead
of mapped instances: no InstanceState, no identity map.
"""

from multiprocessing.dummy import Pool

from sqlalchemy import select


def run(ctx):
    def query_all(worker: int):
        with ctx.engine.connect() as conn:
            rows = conn.execute(select(ctx.table)).all()
        ctx.mark(f"worker {worker} query done ({len(rows)} rows)")
        return rows

    with Pool(ctx.workers) as pool:
        results = pool.map(query_all, range(ctx.workers))
    ctx.digest.add_all(results[0])
    return results
