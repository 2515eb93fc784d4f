"""sqldiag: explain where a Python database workload's memory goes."""

__version__ = "0.1.0"
