"""The built-in scenarios of sqldiag, one workload per file."""
