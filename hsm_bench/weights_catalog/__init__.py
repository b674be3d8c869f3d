"""Every checkpoint hsm-bench knows, one module per model family.

These modules only register :class:`hsm_bench.weights.WeightSpec` entries: no torch, no
model code, so `hsm-bench ls weights` and error messages stay cheap.
"""

from hsm_bench.weights_catalog import audio_flamingo, audiosep, bimodalsep, clipsep, hsm_tss, laion_clap, lass_net, msclap, panns  # noqa: F401
