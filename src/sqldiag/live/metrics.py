"""Metrics for a fleet: each process's categories, statements and RSS, for Prometheus (and
OpenTelemetry when its SDK is configured in the process).

Every process that installed sqldiag with metrics (and every child forked from it: the
workers of a pre-fork server) runs a refresher: a census every `interval` seconds, or
less often when a census would cost more than 1.5% of a core, its figures written to
`<socket dir>/metrics-<port>/<pid>.json`. The process that holds the port (the first to
call install() with it; the parent of forked workers) serves them all at
http://127.0.0.1:PORT/metrics, one series per process (label `pid`), read
when Prometheus scrapes; RSS and USS are read at the scrape itself. Nothing is sent
anywhere: Prometheus (or an OpenTelemetry collector) comes to fetch it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqldiag.live.paths import alive, private_dir
from sqldiag.live.snapshot import LiveState
from sqldiag.record.store import write_atomic

MAX_CPU_SHARE = 0.015  # of one core spent on censuses, at most (2% is the promise)
TOP_QUERIES = 10  # statements exported per process (labels must stay few)
FIRST_REFRESH = 1.0  # s after install, so that a scrape soon after start has figures


def figures(state: LiveState) -> dict:
    """This process's figures now (a census: the program's threads wait meanwhile)."""
    from sqldiag.capture.probes import allocator

    taken = state.census()
    _, rss, uss = state.sample()
    queries = []
    for key, (categories, objects) in taken.queries.items():
        if key is None:
            continue
        stats = state.ledger.stats.get(key)
        site = key[1]
        queries.append({"site": f"{site.file}:{site.line}" if site else "unknown",
                        "function": site.function if site else "",
                        "bytes": sum(categories.values()), "objects": objects,
                        "executions": stats.executions if stats else 0})
    queries.sort(key=lambda q: -q["bytes"])
    glibc = allocator.mallinfo() or {}
    return {"pid": os.getpid(), "time": time.time(), "rss": rss, "uss": uss,
            "categories": dict(taken.categories), "objects": taken.objects,
            "census_seconds": taken.seconds, "queries": queries[:TOP_QUERIES],
            "glibc_free": glibc.get("free_bytes")}


class Refresher:
    """Refreshes this process's figures in the background and writes them for the
    process that serves the metrics."""

    def __init__(self, state: LiveState, folder: Path, interval: float) -> None:
        self.state, self.folder, self.interval = state, folder, interval
        self.latest: dict | None = None
        self.after_refresh: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqldiag-metrics",
                                        daemon=True)

    def start(self) -> None:
        private_dir(self.folder)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            (self.folder / f"{os.getpid()}.json").unlink()
        except OSError:
            pass

    def refresh(self) -> dict:
        self.latest = figures(self.state)
        write_atomic(self.folder / f"{os.getpid()}.json",
                     json.dumps(self.latest).encode("utf-8"))
        return self.latest

    def _loop(self) -> None:
        from sqldiag.capture.probes.sampler import leave_signals_to_the_main_thread

        leave_signals_to_the_main_thread()
        wait = min(FIRST_REFRESH, self.interval)
        while not self._stop.wait(wait):
            try:
                latest = self.refresh()
            except Exception:  # noqa: BLE001 - a failed census must not end the metrics of a service
                wait = self.interval
                continue
            wait = max(self.interval, latest["census_seconds"] / MAX_CPU_SHARE)
            try:
                self.after_refresh()
            except OSError:
                pass


def read_fleet(folder: Path) -> list[dict]:
    """The latest figures of every live process that writes to `folder`; files of
    processes that are gone are removed."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if not alive(pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue  # being replaced: the next scrape has it
        if isinstance(data, dict):
            out.append(data)
    return out


class FleetCollector:
    """A prometheus_client collector of every process's figures in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterator:
        import psutil
        from prometheus_client.core import GaugeMetricFamily

        rss = GaugeMetricFamily("sqldiag_rss_bytes", "Resident set size, read at the scrape",
                                labels=["pid"])
        uss = GaugeMetricFamily("sqldiag_uss_bytes", "Unique set size (pages of this "
                                "process alone), read at the scrape", labels=["pid"])
        categories = GaugeMetricFamily(
            "sqldiag_category_bytes", "Bytes held by category at the last census",
            labels=["pid", "category"])
        queries = GaugeMetricFamily(
            "sqldiag_query_bytes", "Bytes held by the results of a statement, by the "
            "line that ran it, at the last census", labels=["pid", "site", "function"])
        glibc = GaugeMetricFamily("sqldiag_glibc_free_bytes", "Free bytes glibc holds "
                                  "(mallinfo2) at the last census", labels=["pid"])
        seconds = GaugeMetricFamily("sqldiag_census_seconds", "CPU seconds of the last "
                                    "census", labels=["pid"])
        objects = GaugeMetricFamily("sqldiag_census_objects", "gc-tracked objects at the "
                                    "last census", labels=["pid"])
        refreshed = GaugeMetricFamily("sqldiag_census_timestamp_seconds", "When the last "
                                      "census was taken (Unix time)", labels=["pid"])
        for data in read_fleet(self.folder):
            pid = str(data.get("pid", ""))
            try:
                memory = psutil.Process(int(pid)).memory_full_info()
                rss.add_metric([pid], memory.rss)
                if getattr(memory, "uss", None) is not None:
                    uss.add_metric([pid], memory.uss)
            except (psutil.Error, ValueError):
                continue
            for category, size in sorted(data.get("categories", {}).items()):
                categories.add_metric([pid, str(category)], size)
            for query in data.get("queries", []):
                queries.add_metric([pid, str(query.get("site")), str(query.get("function"))],
                                   query.get("bytes", 0))
            if data.get("glibc_free") is not None:
                glibc.add_metric([pid], data["glibc_free"])
            seconds.add_metric([pid], data.get("census_seconds", 0.0))
            objects.add_metric([pid], data.get("objects", 0))
            refreshed.add_metric([pid], data.get("time", 0.0))
        yield from (rss, uss, categories, queries, glibc, seconds, objects, refreshed)


def serve(folder: Path, port: int, host: str):
    """Serve the fleet's metrics on host:port (a thread of prometheus_client's own);
    returns the HTTP server, to shut it down."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(folder))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def opentelemetry_configured() -> bool:
    """Whether the process configured an OpenTelemetry MeterProvider of the SDK (the
    API alone, or no provider set, records nothing)."""
    try:
        from opentelemetry import metrics
    except ImportError:
        return False
    provider = metrics.get_meter_provider()
    return type(provider).__name__ not in ("ProxyMeterProvider", "NoOpMeterProvider",
                                           "_ProxyMeterProvider", "_NoOpMeterProvider")


_observed = False


def observe_with_opentelemetry(latest: Callable[[], dict | None]) -> None:
    """Report the latest figures (of this process: `latest()` is asked at each export,
    also in a forked child) through the process's OpenTelemetry meter, once."""
    global _observed
    if _observed:
        return
    _observed = True
    from opentelemetry import metrics

    meter = metrics.get_meter("sqldiag")

    def by_category(options) -> Iterator:
        figures = latest() or {}
        for category, size in figures.get("categories", {}).items():
            yield metrics.Observation(size, {"pid": os.getpid(), "category": category})

    def resident(options) -> Iterator:
        figures = latest() or {}
        if "rss" in figures:
            yield metrics.Observation(figures["rss"], {"pid": os.getpid()})

    meter.create_observable_gauge("sqldiag.category.bytes", callbacks=[by_category],
                                  unit="By", description="Bytes held by category")
    meter.create_observable_gauge("sqldiag.rss.bytes", callbacks=[resident], unit="By",
                                  description="Resident set size at the last census")
