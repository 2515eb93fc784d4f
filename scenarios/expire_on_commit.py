"""expire_on_commit: after commit() the Session expires every loaded object's attributes.

Each worker loads every user, keeps the list, and commits (expire_on_commit=True, the
default): each object's __dict__ loses its loaded values, so the strings the driver made
become garbage while the objects stay. --option expire=0 keeps the values, to compare.
The objects are still alive (the list holds them); touching an attribute would reload it.
"""

from multiprocessing.dummy import Pool

from sqlalchemy.orm import sessionmaker


def run(ctx):
    expire = ctx.options.get("expire", "1") != "0"
    make_session = sessionmaker(ctx.engine, expire_on_commit=expire)

    def work(worker: int):
        session = make_session()
        users = session.query(ctx.User).all()
        if worker == 0:
            ctx.digest.add_all(users)
        session.commit()
        ctx.mark(f"worker {worker} committed ({len(users)} objects, expire={expire})")
        return users

    with Pool(ctx.workers) as pool:
        return pool.map(work, range(ctx.workers))
