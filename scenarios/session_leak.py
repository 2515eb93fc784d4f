"""A true leak: a long-lived Session, never closed, keeps every user it ever loaded.

Like a worker that creates one Session at start-up and a module-level cache of what it
loaded: every run loads the next slice of users (rows / 10 per run) into the same Session
and the cache keeps them, so the identity map and the ORM objects grow with every run.
Run it with --repeat 5 to see the growth per run.
"""

_SESSION = None  # created once, never closed: the leak
_CACHE = []  # what the application keeps: every object the Session loaded
_NEXT_ID = [0]


def run(ctx):
    global _SESSION
    if _SESSION is None:
        _SESSION = ctx.Session()
    per_run = max(1, ctx.rows // 10)
    low = _NEXT_ID[0] % ctx.rows
    batch = (_SESSION.query(ctx.User)
             .filter(ctx.User.id > low, ctx.User.id <= low + per_run).all())
    _NEXT_ID[0] += per_run
    _CACHE.extend(batch)
    ctx.digest.add_all(batch)
    ctx.mark(f"{len(_SESSION.identity_map)} objects in the identity map")
