"""sqldiag: explain where a Python database workload's memory goes."""

from sqldiag._version import __version__

__all__ = ["__version__", "capture"]


def capture(name: str = "capture", **kwargs):
    """`with sqldiag.capture(name=...) as run:` measures the block; see sqldiag.api."""
    from sqldiag.api import Capture

    return Capture(name=name, **kwargs)
