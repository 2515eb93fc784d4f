"""What RSS keeps after the work with long TEXT values (run with --text-bytes 650).

The post's workload; with addresses over 512 bytes CPython takes them from glibc's
malloc, not pymalloc, and ten threads allocate from several malloc arenas. After every
object is freed, glibc keeps much of that memory. Every run ends with a malloc_trim(0)
probe, so "after gc.collect()" against "after malloc_trim(0)" on the timeline is the
effect of an application calling malloc_trim after the work.
"""

from sqldiag_scenarios.leak_repro import run  # noqa: F401 - the same workload
