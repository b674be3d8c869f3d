"""Metric implementations, reached through hsm_bench.registry.METRICS."""
