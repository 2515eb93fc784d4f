"""The RSS watcher in its own process: the timeline it samples has no hole at its start."""

from __future__ import annotations

from sqldiag.capture.probes.sampler import WatcherSampler


def test_the_watcher_has_sampled_once_start_returns():
    """Starting the watcher's Python takes 0.1-0.2 s on a busy machine: a workload begun
    as soon as start() returned went unsampled that long (a 174 ms hole in CI)."""
    sampler = WatcherSampler(period=0.05)
    sampler.start()
    started = sampler.now()
    sampler.stop()
    assert sampler.samples, "the watcher had written nothing when start() returned"
    first = min(sample.t for sample in sampler.samples)
    assert first <= started and sampler.samples[0].rss > 0
