"""The tracing probe keeps the largest traced high it saw, whichever thread saw it."""

from __future__ import annotations

import time
import tracemalloc

from sqldiag.probes.tracing import HIGH, TracingProbe


def test_a_stale_high_never_replaces_a_larger_one():
    """One thread reads a traced total that passes the check, then waits for the lock
    while another snapshots a high and the workload frees it: the late snapshot must
    not replace the larger one (it did, and a child's peak came out at a third of its
    size)."""
    probe = TracingProbe(depth=4, min_bytes=0)
    probe.start()
    try:
        probe.watching = True
        big = [str(i) * 10 for i in range(50_000)]
        seen_with_big = tracemalloc.get_traced_memory()[0]
        probe.consider_high(seen_with_big, 1.0)
        del big
        time.sleep(0.2)  # past any wait the first snapshot's cost asks for
        probe.consider_high(seen_with_big * 2, 2.0)  # read before the lock was free
        probe.watching = False
    finally:
        probe.stop()
    peak = probe.peak_moment()
    assert peak is not None and peak.label == HIGH and peak.t == 1.0
    assert peak.breakdown.total > 50_000 * 40


def test_highs_are_taken_at_fine_steps_while_free():
    """Within the free allowance a rise is snapshotted every 5%, so the kept high is
    within 5% of the largest value the probe was shown."""
    probe = TracingProbe(depth=4, min_bytes=0)
    probe.start()
    kept = []
    try:
        probe.watching = True
        for _ in range(40):
            kept.append(bytes(20_000))
            probe.consider_high(tracemalloc.get_traced_memory()[0], 0.0)
        top = tracemalloc.get_traced_memory()[0]
        probe.watching = False
    finally:
        probe.stop()
    peak = probe.peak_moment()
    assert peak is not None and peak.traced >= top / 1.05
