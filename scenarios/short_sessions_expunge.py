"""Fix: one Session per worker, but expunge_all() after every page of 1,000 users.

A worker that keeps one Session for a long job can still keep memory flat: after each
page it processes, session.expunge_all() empties the identity map, and the page's objects
become garbage as soon as the worker drops them.
"""

from multiprocessing.dummy import Pool

PAGE = 1000


def run(ctx):
    def work(worker: int):
        seen, last_id = 0, 0
        with ctx.Session() as session:
            while True:
                page = (session.query(ctx.User).filter(ctx.User.id > last_id)
                        .order_by(ctx.User.id).limit(PAGE).all())
                if not page:
                    break
                for user in page:
                    if worker == 0:
                        ctx.digest.add(user)
                seen += len(page)
                last_id = page[-1].id
                session.expunge_all()
        ctx.mark(f"worker {worker} processed {seen} rows")
        return seen

    with Pool(ctx.workers) as pool:
        return pool.map(work, range(ctx.workers))
