"""A user's asyncio program: three AsyncSessions load a table at once and keep the lists.

usage: async_load.py ASYNC_URL ROWS      (e.g. postgresql+asyncpg://root@127.0.0.1/test)
"""

import asyncio
import sys

from sqlalchemy import Integer, String, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "sqldiag_test_async_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)


async def main(url: str, rows: int) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(insert(Item), [{"id": i, "label": f"item {i}",
                                           "body": "x" * 80 + str(i)} for i in range(1, rows + 1)])

    async def load() -> list[Item]:
        async with AsyncSession(engine) as session:
            return list((await session.execute(select(Item))).scalars().all())

    kept = await asyncio.gather(*(load() for _ in range(3)))
    # a while with the lists, as a service would use them: a census, spaced out on a slow
    # machine, finds them alive (a program that drops them at once may end between two)
    await asyncio.sleep(0.3)
    print("loaded", [len(items) for items in kept], sum(len(i.body) for i in kept[0]))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
