"""The category vocabulary shared by records, reports and diffs (see DESIGN.md)."""

DRIVER_ROWS = "driver_rows"
SQLALCHEMY_ROWS = "sqlalchemy_rows"
ORM_OBJECTS = "orm_objects"
IDENTITY_MAP = "identity_map"
RESULT_LISTS = "result_lists"
STATEMENT_CACHE = "statement_cache"
OTHER_PYTHON = "other_python"
PYTHON_UNATTRIBUTED = "python_unattributed"
NATIVE_MEMORY = "native_memory"
ALLOCATOR_OVERHEAD = "allocator_overhead"
ALLOCATOR_FREE = "allocator_free"
MAPPED_FILES = "mapped_files"
UNACCOUNTED = "unaccounted"

# Categories of traced Python memory, in report order.
TRACED = (DRIVER_ROWS, SQLALCHEMY_ROWS, ORM_OBJECTS, IDENTITY_MAP, RESULT_LISTS,
          STATEMENT_CACHE, OTHER_PYTHON)
# The rest of RSS's growth, from the allocators' own figures (analysis.rss_parts).
UNTRACED = (PYTHON_UNATTRIBUTED, NATIVE_MEMORY, ALLOCATOR_OVERHEAD, ALLOCATOR_FREE,
            MAPPED_FILES, UNACCOUNTED)
ALL = TRACED + UNTRACED
# What is in use (not free, not unknown): Python objects and C memory.
IN_USE = TRACED + (PYTHON_UNATTRIBUTED, NATIVE_MEMORY)

DESCRIPTIONS = {
    DRIVER_ROWS: "rows as the DB-API driver materialised them, and their values",
    SQLALCHEMY_ROWS: "SQLAlchemy Core Row objects and result buffers",
    ORM_OBJECTS: "mapped instances, their __dict__ and InstanceState",
    IDENTITY_MAP: "the Session's identity map: keys and its dict",
    RESULT_LISTS: "lists that hold a whole result (.all(), pool results)",
    STATEMENT_CACHE: "compiled SQL and other per-engine caches",
    OTHER_PYTHON: "traced Python memory that fits no other category",
    PYTHON_UNATTRIBUTED: "pymalloc's blocks in use beyond what the categories count "
                         "(Python memory missed at that moment, C extensions' buffers)",
    NATIVE_MEMORY: "C memory in use that is not a Python object: driver buffers "
                   "(libpq, libmysqlclient), SQLite's page cache, glibc's chunk headers",
    ALLOCATOR_OVERHEAD: "pymalloc's own: pool headers, size-class rounding, arena alignment",
    ALLOCATOR_FREE: "free memory the allocators keep in RSS: pymalloc's free blocks and "
                    "pools, glibc's free chunks",
    MAPPED_FILES: "pages of libraries and other mapped files that came into RSS (modules "
                  "imported during the work)",
    UNACCOUNTED: "RSS growth no measurement names (stacks, libraries, measuring error)",
}


def summed(breakdowns: list[dict[str, int]]) -> dict[str, int]:
    """Bytes per traced category added over several breakdowns (e.g. processes' peaks)."""
    return {name: sum(int(b.get(name) or 0) for b in breakdowns) for name in TRACED}


def row_scale(category: str, scale: float) -> float:
    """The factor that takes `category`'s bytes from a run on fewer rows to full size:
    `scale` (full rows / traced rows), except for statement_cache, which holds each
    compiled statement once whatever the row count."""
    return 1.0 if category == STATEMENT_CACHE else scale


# Holders of kept-alive memory (kept-alive-by), in the order shared bytes are charged.
HOLDER_RESULT = "result held by its caller"
HOLDER_POOL = "pool results not yet fetched"
HOLDER_DRIVER = "driver buffers"
HOLDER_IDENTITY = "Session identity maps"
HOLDER_CACHE = "compiled-SQL caches"
# what a root's name ends with when it is a function functools.lru_cache wraps
LRU_CACHE_ROOT = "(its lru_cache)"
HOLDER_ORDER = (HOLDER_RESULT, HOLDER_POOL, HOLDER_DRIVER, HOLDER_IDENTITY, HOLDER_CACHE)


def holder_scale(holder: str, scale: float) -> float:
    """As row_scale, for a holder: compiled-SQL caches do not grow with rows."""
    return 1.0 if holder == HOLDER_CACHE else scale
