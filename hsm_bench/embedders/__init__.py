"""Audio (and text) encoders shared by model-based metrics; reached through hsm_bench.registry.EMBEDDERS."""
