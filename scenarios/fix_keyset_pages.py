"""Fix: keyset pagination, 1,000 rows a page in short Sessions (WHERE id > last ORDER BY id)."""

from multiprocessing.dummy import Pool

PAGE = 1000


def run(ctx):
    def paginate(worker: int):
        seen, last_id = 0, 0
        while True:
            with ctx.Session() as session:
                page = (session.query(ctx.User).filter(ctx.User.id > last_id)
                        .order_by(ctx.User.id).limit(PAGE).all())
            if not page:
                break
            for user in page:
                if worker == 0:
                    ctx.digest.add(user)
            seen += len(page)
            last_id = page[-1].id
        ctx.mark(f"worker {worker} paged {seen} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(paginate, range(ctx.workers))
