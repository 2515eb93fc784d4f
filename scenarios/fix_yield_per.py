"""Fix: stream ORM objects with yield_per(1000) on a server-side cursor; keep none.

execution_options(stream_results=True) asks the driver for a server-side cursor
(PyMySQL's SSCursor, psycopg's named cursor); yield_per(1000) builds 1,000 objects at a
time and the Session forgets each batch. Peak memory no longer follows the row count.
"""

from multiprocessing.dummy import Pool

BATCH = 1000


def run(ctx):
    def stream(worker: int):
        seen = 0
        with ctx.Session() as session:
            query = (session.query(ctx.User).execution_options(stream_results=True)
                     .yield_per(BATCH))
            for user in query:
                if worker == 0:
                    ctx.digest.add(user)
                seen += 1
        ctx.mark(f"worker {worker} streamed {seen} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(stream, range(ctx.workers))
