"""Probes that measure a running workload."""
