"""The post's workload on real processes: multiprocessing.Pool instead of threads.

Each child process (fork) loads every user with session.query(User).all() and sends the
rows back as plain tuples (pickled; mapped instances of a class defined at run time do
not pickle); the parent holds all of them, as the threaded version holds its lists. The
timeline carries the children's RSS, summed, next to the parent's.
"""

import multiprocessing

_ctx = None  # set before the pool forks; children inherit it


def _query_all(worker: int):
    _ctx.engine.dispose(close=False)  # never share the parent's connections after fork
    session = _ctx.Session()
    users = session.query(_ctx.User).all()
    rows = [(u.id, u.name, u.sex, u.address, u.age) for u in users]
    session.close()
    return worker, rows


def run(ctx):
    global _ctx
    _ctx = ctx
    results = []
    with multiprocessing.get_context("fork").Pool(ctx.workers) as pool:
        for worker, users in pool.imap_unordered(_query_all, range(ctx.workers)):
            ctx.mark(f"worker {worker} result received ({len(users)} rows)")
            results.append(users)
    ctx.digest.add_all(results[0])
    return results
