"""sqldiag in a running service: `sqldiag.install()`, then `sqldiag snapshot PID` (a
record and HTML report of what the process holds now) and Prometheus metrics."""
