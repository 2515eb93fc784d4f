"""Select only the columns you need: ORM with load_only(id, name), results kept.

The checksum covers id and name only, so it differs from the full-row scenarios by
design; compare it with other load_only runs.
"""

from multiprocessing.dummy import Pool

from sqlalchemy.orm import load_only


def run(ctx):
    def query_all(worker: int):
        with ctx.Session() as session:
            users = session.query(ctx.User).options(
                load_only(ctx.User.id, ctx.User.name)).all()
        ctx.mark(f"worker {worker} query done ({len(users)} rows)")
        return [(u.id, u.name) for u in users]

    with Pool(ctx.workers) as pool:
        results = pool.map(query_all, range(ctx.workers))
    ctx.digest.add_all(results[0])
    return results
