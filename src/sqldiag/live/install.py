"""`sqldiag.install()`: let a running service be asked for snapshots, and export metrics.

What it costs: at install, one listing of the live objects (the baseline of
other_python); then a thread waiting in accept() on a Unix socket (no CPU while nobody
asks) and the ledger of ORM runs: at the start of each ORM query's loading, its statement and
the program's line that runs it (a walk up the stack; no Engine event listener, whose
dispatch would cost every statement; see bench/live_snapshot.py for what it costs a
query; `queries=False` leaves it out). With metrics, a census every `metrics_interval` seconds, spaced so that
censuses take at most 2% of one core. No network listener unless `metrics_port` is
given, and then on 127.0.0.1 unless `metrics_host` says otherwise.

A child forked from the process (a pre-fork server's worker) gets its own socket and,
with metrics, its own series, served by the installing process.
"""

from __future__ import annotations

import atexit
import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sqldiag.live.paths import socket_dir, socket_path
from sqldiag.live.server import SnapshotServer
from sqldiag.live.snapshot import LiveState


@dataclass
class MetricsSettings:
    port: int | None
    host: str
    interval: float
    folder: Path
    opentelemetry: bool


class Installation:
    """sqldiag live in this process: its socket, and its metrics if asked for."""

    def __init__(self, state: LiveState, socket_folder: Path,
                 metrics: MetricsSettings | None) -> None:
        self.state = state
        self.socket_folder = socket_folder
        self.metrics = metrics
        self.pid = os.getpid()
        self.server = SnapshotServer(state, socket_folder / f"{self.pid}.sock")
        self.refresher = None
        self.http = None

    @property
    def socket(self) -> Path:
        return self.server.path

    def start(self) -> None:
        self.server.start()
        if self.metrics is None:
            return
        from sqldiag.live import metrics as exporting

        self.refresher = exporting.Refresher(self.state, self.metrics.folder,
                                             self.metrics.interval)
        self.refresher.start()
        if self.metrics.opentelemetry:
            exporting.observe_with_opentelemetry(_latest_figures)
        self.refresher.after_refresh = self._serve_metrics
        self._serve_metrics()

    def _serve_metrics(self) -> None:
        """Serve every process's metrics on the port, if no other process does: with
        pre-fork workers that each call install(), the first to bind serves them all
        and another takes over when it ends (at its next refresh)."""
        if self.http is not None or self.metrics is None or self.metrics.port is None:
            return
        from sqldiag.live import metrics as exporting

        try:
            self.http = exporting.serve(self.metrics.folder, self.metrics.port,
                                        self.metrics.host)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise

    def forget_in_child(self) -> None:
        """In a forked child: close the copies of the parent's listening sockets (the
        port would stay taken by a child that never answers on it)."""
        if self.http is not None:
            self.http.socket.close()
        self.server.close_copy()

    def stop(self) -> None:
        if self.http is not None:
            if os.getpid() == self.pid:
                self.http.shutdown()
            self.http.server_close()
        self.http = None
        if self.refresher is not None:
            self.refresher.stop()
        self.server.stop()
        if os.getpid() == self.pid:
            self.state.ledger.stop()


_current: Installation | None = None
_lock = threading.Lock()
_fork_hook = False


def install(*, metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
            metrics_interval: float = 60.0, opentelemetry: bool = False,
            queries: bool = True, socket_folder: str | Path | None = None,
            follow_forks: bool = True) -> Installation:
    """Let `sqldiag snapshot PID` ask this process for snapshots; with `metrics_port`,
    serve Prometheus metrics on metrics_host:metrics_port/metrics, refreshed every
    `metrics_interval` seconds; with `opentelemetry`, report the same figures through
    the process's OpenTelemetry MeterProvider (it must be the SDK's, configured before).
    `queries=False` leaves the ledger of ORM runs out: no by-query table, and nothing
    at all runs per query. Calling it again returns the same installation.
    `follow_forks`: children forked later (pre-fork workers) listen too."""
    global _current, _fork_hook
    if metrics_interval <= 0:
        raise ValueError("metrics_interval must be positive")
    with _lock:
        if _current is not None and _current.pid == os.getpid():
            return _current
        folder = socket_dir(override=socket_folder)
        settings = None
        if opentelemetry:
            from sqldiag.live.metrics import opentelemetry_configured

            if not opentelemetry_configured():
                raise RuntimeError("install(opentelemetry=True): no OpenTelemetry SDK "
                                   "MeterProvider is set (opentelemetry.metrics."
                                   "set_meter_provider) in this process")
        if metrics_port is not None or opentelemetry:
            named = metrics_port if metrics_port is not None else f"pid{os.getpid()}"
            settings = MetricsSettings(port=metrics_port, host=metrics_host,
                                       interval=metrics_interval,
                                       folder=folder / f"metrics-{named}",
                                       opentelemetry=opentelemetry)
        installation = Installation(LiveState.begin(queries), folder, settings)
        installation.start()
        _current = installation
        if follow_forks and not _fork_hook:
            os.register_at_fork(after_in_child=_after_fork)
            _fork_hook = True
        atexit.register(uninstall)
        return installation


def uninstall() -> None:
    """Stop listening and serving metrics; the socket is removed."""
    global _current
    with _lock:
        installation, _current = _current, None
    if installation is not None:
        installation.stop()


def _after_fork() -> None:
    """In a forked child: the parent's threads did not come along; listen again, as
    this process, and refresh this process's metrics (the parent serves them)."""
    global _current, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    parent = _current
    if parent is None:
        return
    parent.forget_in_child()
    child = Installation(parent.state.forked(), parent.socket_folder, parent.metrics)
    try:
        child.start()
    except Exception:  # noqa: BLE001
        return  # the child runs on without sqldiag rather than fail to start
    _current = child


def _latest_figures() -> dict | None:
    installation = current()
    refresher = installation.refresher if installation is not None else None
    return refresher.latest if refresher is not None else None


def current() -> Installation | None:
    """The installation of this process, if any."""
    installation = _current
    return installation if installation is not None and installation.pid == os.getpid() \
        else None


__all__ = ["Installation", "current", "install", "socket_path", "uninstall"]
