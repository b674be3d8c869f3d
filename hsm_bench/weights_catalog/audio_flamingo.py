"""Checkpoints of the audio_flamingo family (see hsm_bench.weights)."""

from hsm_bench.weights import WeightSpec, register  # noqa: F401
