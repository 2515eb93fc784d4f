"""The category vocabulary shared by records, reports and diffs (see DESIGN.md)."""

DRIVER_ROWS = "driver_rows"
SQLALCHEMY_ROWS = "sqlalchemy_rows"
ORM_OBJECTS = "orm_objects"
IDENTITY_MAP = "identity_map"
RESULT_LISTS = "result_lists"
STATEMENT_CACHE = "statement_cache"
OTHER_PYTHON = "other_python"
ALLOCATOR_FREE = "allocator_free"

# Categories of traced Python memory, in report order.
TRACED = (DRIVER_ROWS, SQLALCHEMY_ROWS, ORM_OBJECTS, IDENTITY_MAP, RESULT_LISTS,
          STATEMENT_CACHE, OTHER_PYTHON)
ALL = TRACED + (ALLOCATOR_FREE,)

DESCRIPTIONS = {
    DRIVER_ROWS: "rows as the DB-API driver materialised them, and their values",
    SQLALCHEMY_ROWS: "SQLAlchemy Core Row objects and result buffers",
    ORM_OBJECTS: "mapped instances, their __dict__ and InstanceState",
    IDENTITY_MAP: "the Session's identity map: keys and its dict",
    RESULT_LISTS: "lists that hold a whole result (.all(), pool results)",
    STATEMENT_CACHE: "compiled SQL and other per-engine caches",
    OTHER_PYTHON: "traced Python memory that fits no other category",
    ALLOCATOR_FREE: "RSS the allocator holds that no live object uses",
}


def summed(breakdowns: list[dict]) -> dict[str, int]:
    """Bytes per traced category added over several breakdowns (e.g. processes' peaks)."""
    return {name: sum(int(b.get(name) or 0) for b in breakdowns) for name in TRACED}
