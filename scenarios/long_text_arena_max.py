"""Long TEXT values with MALLOC_ARENA_MAX=2: fewer malloc arenas (run with --text-bytes 650)."""

from sqldiag_scenarios.leak_repro import run  # noqa: F401 - the same workload

ENV = {"MALLOC_ARENA_MAX": "2"}
