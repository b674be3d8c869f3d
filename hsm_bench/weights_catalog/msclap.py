"""Checkpoints of the msclap family (see hsm_bench.weights)."""

from hsm_bench.weights import WeightSpec, register  # noqa: F401
