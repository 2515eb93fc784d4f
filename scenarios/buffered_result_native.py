"""Cause: Core partitions(1000) without stream_results: a client-side cursor holds the
whole result in the driver's C memory (libpq's PGresult, libmysqlclient's MYSQL_RES)
while Python sees 1,000 rows at a time. native_memory, not a Python category, holds the
peak on PostgreSQL; fix_core_partitions streams it from a server-side cursor."""

from multiprocessing.dummy import Pool

from sqlalchemy import select

BATCH = 1000


def run(ctx):
    def read(worker: int):
        seen = 0
        with ctx.engine.connect() as conn:
            result = conn.execute(select(ctx.table))  # buffered by the driver, whole
            for partition in result.partitions(BATCH):
                for row in partition:
                    if worker == 0:
                        ctx.digest.add(row)
                    seen += 1
                if seen == BATCH:
                    ctx.mark(f"worker {worker} read its first {BATCH} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(read, range(ctx.workers))
