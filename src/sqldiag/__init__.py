"""sqldiag: explain where a Python database workload's memory goes."""

# The stage package of the same name first: importing it (or any module in it) later
# would make `sqldiag.capture` that package, not the function below, and a second
# `sqldiag.capture(...)` in a process would fail. Its __init__ is empty.
import sqldiag.capture as _capture_stage  # noqa: F401
from sqldiag._version import __version__

__all__ = ["__version__", "capture", "install", "uninstall"]


def capture(name: str = "capture", **kwargs):
    """`with sqldiag.capture(name=...) as run:` measures the block; see sqldiag.api."""
    from sqldiag.api import Capture

    return Capture(name=name, **kwargs)


def install(**kwargs):
    """Let `sqldiag snapshot PID` ask this running process for snapshots; with
    `metrics_port=N`, serve Prometheus metrics on 127.0.0.1:N; see sqldiag.live."""
    from sqldiag.live.install import install as installing

    return installing(**kwargs)


def uninstall() -> None:
    """Undo install(): the socket is removed, metrics stop."""
    from sqldiag.live.install import uninstall as uninstalling

    uninstalling()
