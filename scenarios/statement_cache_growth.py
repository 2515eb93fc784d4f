"""Statement-cache growth: distinct SQL strings (changing IN-list lengths and literals).

Each query has a different IN-list length and an inlined literal, so each compiles to new
SQL and lands in the engine's compiled cache (an LRU of 500 entries by default).
--option queries=N sets how many distinct statements (default 400).
"""

from sqlalchemy import literal_column, select


def run(ctx):
    queries = int(ctx.options.get("queries", 400))
    with ctx.engine.connect() as conn:
        for n in range(1, queries + 1):
            ids = list(range(1, (n % 50) + 2))
            statement = (select(ctx.table.c.id, literal_column(f"'{n}'").label("tag"))
                         .where(ctx.table.c.id.in_(ids)))
            conn.execute(statement).all()
            if n % 100 == 0:
                ctx.mark(f"{n} distinct statements")
