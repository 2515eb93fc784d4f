"""The tracing probe keeps the largest traced high it saw, whichever thread saw it."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from sqldiag.capture.probes.tracing import HIGH, TracingProbe


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


def test_stop_waits_for_a_snapshot_in_progress_and_none_starts_after():
    """A high snapshotted by the sampler thread drops its rivals' raw traces; stop()
    reduced those same raw traces without waiting, and a repeat pass failed half the
    time with "object of type 'NoneType' has no len()"."""
    import threading

    probe = TracingProbe(depth=4, min_bytes=0)
    probe.start()
    kept = [str(i) * 10 for i in range(20_000)]
    probe.watching = True
    assert probe.snapshot(HIGH, 1.0, new_high=True)
    probe._lock.acquire()  # the sampler thread is inside snapshot()
    stopping = threading.Thread(target=probe.stop)
    stopping.start()
    stopping.join(0.3)
    assert stopping.is_alive(), "stop() must wait for the snapshot in progress"
    probe._lock.release()
    stopping.join(10)
    assert not stopping.is_alive()
    assert not probe.snapshot(HIGH, 2.0, new_high=True)  # tracing is over
    assert all(m.breakdown is not None for m in probe.moments)
    assert len(kept) == 20_000


def test_snapshots_keep_the_high_of_native_memory_freed_before_the_traced_high():
    """A driver's C buffer (libpq's whole result) alive at a smaller traced high and
    freed by the largest: the largest snapshot does not see it, but glibc keeps what it
    took for the peak, so the probe keeps the high of native memory over its snapshots."""
    import ctypes
    import ctypes.util

    from sqldiag.capture.probes.allocator import glibc_in_use

    if glibc_in_use() is None:
        pytest.skip("needs glibc 2.33+ (mallinfo2)")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 24 << 20
    probe = TracingProbe(depth=4, min_bytes=0, overhead=True)
    probe.start()
    try:
        probe.watching = True
        probe.snapshot("before", 0.0)
        before = probe.native_high_in_use
        buffer = libc.malloc(size)  # untraced: C memory, not a Python object
        ctypes.memset(buffer, 1, size)
        probe.snapshot(HIGH, 1.0, new_high=True)
        libc.free(buffer)
        kept = [bytes(100) for _ in range(100_000)]  # the largest traced high comes after
        probe.snapshot(HIGH, 2.0, new_high=True)
        probe.watching = False
    finally:
        probe.stop()
    assert before is not None and kept
    assert probe.peak_moment().t == 2.0
    assert size * 0.95 <= probe.native_high_in_use - before <= size * 1.05
