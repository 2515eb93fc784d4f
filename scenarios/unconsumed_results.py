"""Results left unconsumed and connections left checked out, one per worker.

Each worker executes select(users), reads one row and keeps the Result and its
Connection open: the driver's buffered rows stay alive (PyMySQL buffers the whole
result; sqlite3 and server-side cursors hold less) until the connection is closed.
"""

from multiprocessing.dummy import Pool

from sqlalchemy import select


def run(ctx):
    def open_and_leave(worker: int):
        conn = ctx.engine.connect()
        result = conn.execute(select(ctx.table))
        first = result.fetchone()
        ctx.mark(f"worker {worker} left its result open")
        return conn, result, first

    with Pool(ctx.workers) as pool:
        return pool.map(open_and_leave, range(ctx.workers))
