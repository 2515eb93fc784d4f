"""Names of the phases a pass marks on its timeline, and of the moments a record keeps
breakdowns for: one home for them, shared by capture, analysis and the reports."""

from __future__ import annotations

READY = "ready"  # probes started, before the workload
WORKLOAD_START = "workload start"
WORKLOAD_END = "workload end"  # the workload returned; its results are still held
AFTER_GC = "after gc.collect()"  # results dropped and collected
AFTER_TRIM = "after malloc_trim(0)"  # bare passes only: glibc asked to give memory back

# Breakdowns a record keeps: at the traced peak, at the workload's end with its results
# still held, and after the work.
PEAK, AT_WORKLOAD_END, END = "peak", "workload_end", "end"
MOMENTS = (PEAK, END)  # the two a summary and the categories are given for
