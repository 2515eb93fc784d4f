"""Cause: Core partitions(1000) without stream_results: a client-side cursor holds the
whole result in the driver's C memory (libpq's PGresult, libmysqlclient's MYSQL_RES)
while Python sees 1,000 rows at a time. native_memory, not a Python category, holds the
peak on PostgreSQL; fix_core_partitions streams it from a server-side cursor.

A partition is 1,000 rows, a hundredth of the default table; on a smaller table (the
calibration runs read 400 to 1,200 rows) it stays a hundredth, else a partition would
hold the whole result in Python there and the calibration would predict the full size
from runs where Python, not the driver, holds the rows."""

from multiprocessing.dummy import Pool

from sqlalchemy import select

BATCH = 1000
BATCH_SHARE = 100  # a partition is at most this fraction of the table


def run(ctx):
    batch = max(1, min(BATCH, ctx.rows // BATCH_SHARE))

    def read(worker: int):
        seen = 0
        with ctx.engine.connect() as conn:
            result = conn.execute(select(ctx.table))  # buffered by the driver, whole
            for partition in result.partitions(batch):
                for row in partition:
                    if worker == 0:
                        ctx.digest.add(row)
                    seen += 1
                if seen == batch:
                    ctx.mark(f"worker {worker} read its first {batch} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(read, range(ctx.workers))
