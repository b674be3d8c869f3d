"""Test-set builders, one module per set, reached through hsm_bench.registry.TESTSETS."""
