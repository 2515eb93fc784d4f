"""Fix: Core select() with stream_results and partitions(1000); no ORM objects at all."""

from multiprocessing.dummy import Pool

from sqlalchemy import select

BATCH = 1000


def run(ctx):
    def stream(worker: int):
        seen = 0
        with ctx.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=BATCH).execute(
                select(ctx.table))
            for partition in result.partitions(BATCH):
                for row in partition:
                    if worker == 0:
                        ctx.digest.add(row)
                    seen += 1
        ctx.mark(f"worker {worker} streamed {seen} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(stream, range(ctx.workers))
