"""The post's workload: a thread pool, each worker runs session.query(User).all().

multiprocessing.dummy.Pool(workers); each task opens a Session, loads every user, takes
len(), closes the Session and returns the list, as the original code does. pool.map
keeps every task's list until all are done, so the peak holds the whole result set once
per worker.
"""

from multiprocessing.dummy import Pool


def run(ctx):
    def query_all(worker: int):
        session = ctx.Session()
        users = session.query(ctx.User).all()
        count = len(users)  # the original printed len(users)
        session.close()
        ctx.mark(f"worker {worker} query done ({count} rows)")
        return users

    pool = Pool(ctx.workers)
    try:
        results = pool.map(query_all, range(ctx.workers))
    finally:
        pool.close()
        pool.join()
    ctx.digest.add_all(results[0])
    return results
