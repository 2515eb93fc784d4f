"""The post's workload: a thread pool, each worker runs session.query(User).all()."""

from multiprocessing.dummy import Pool


def run(ctx):
    def query_all(worker: int):
        session = ctx.Session()
        users = session.query(ctx.User).all()
        print_len = len(users)  # the original printed len(); we only take it
        session.close()
        ctx.mark(f"worker {worker} query done ({print_len} rows)")
        return users

    pool = Pool(ctx.workers)
    try:
        return pool.map(query_all, range(ctx.workers))
    finally:
        pool.close()
        pool.join()
