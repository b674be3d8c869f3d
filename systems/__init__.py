"""Separation systems, one module each, reached through ``hsm_bench.registry.SYSTEMS``."""
