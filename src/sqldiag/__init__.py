"""sqldiag: explain where a Python database workload's memory goes."""

__version__ = "0.1.0"


def capture(name: str = "capture", **kwargs):
    """`with sqldiag.capture(name=...) as run:` measures the block; see sqldiag.capture."""
    from sqldiag.capture import Capture

    return Capture(name=name, **kwargs)
