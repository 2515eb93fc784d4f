"""A true leak: one long-lived Session loads a new slice of users every step, never closed.

The identity map keeps every object it ever loaded (strong references once the objects
are modified or while they are referenced; here the Session's own list keeps them), so
memory grows with every step. --option steps=N sets how many slices (default 10).
"""


def run(ctx):
    steps = int(ctx.options.get("steps", 10))
    per_step = max(1, ctx.rows // steps)
    session = ctx.Session()
    kept = []  # what an application's long-lived cache or session-scoped list would hold
    for step in range(steps):
        low = step * per_step
        batch = (session.query(ctx.User).filter(ctx.User.id > low,
                                                ctx.User.id <= low + per_step).all())
        kept.extend(batch)
        ctx.mark(f"step {step}: {len(session.identity_map)} objects in the identity map")
    ctx.digest.add_all(kept)
    return session, kept
