"""Checkpoints of the audio_flamingo family (see hsm_bench.weights).

Audio Flamingo 3 (NVIDIA, licence "NVIDIA OneWay Noncommercial"; Qwen2.5-7B backbone under
its own licence) in the transformers layout: the Hub repository ``nvidia/audio-flamingo-3-hf``
(config, processor, tokenizer, chat template and sharded safetensors, about 16 GB).
``extra["allow_patterns"]`` lists the files worth fetching. No sha256 is published; the
AFSim metric records a digest of the weight shards (see
:func:`hsm_bench.embedders.audio_flamingo.folder_digest`).

The 2048-d Audio Flamingo 1 / 2 checkpoints the HSM-TSS paper describes are not listed:
hsm-bench has no loader for their Flamingo cross-attention layout yet (see
``AudioFlamingo1`` / ``AudioFlamingo2`` in :mod:`hsm_bench.embedders.audio_flamingo`).
"""

from hsm_bench.weights import WeightSpec, register

AF3_FILES = ["config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
             "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
             "added_tokens.json", "chat_template.jinja", "chat_template.json", "model.safetensors.index.json",
             "*.safetensors"]  # fmt: skip

register(
    WeightSpec(
        name="audio-flamingo-3-hf",
        description="Audio Flamingo 3 (Whisper-style encoder + Qwen2.5-7B), transformers conversion",
        source="hf://nvidia/audio-flamingo-3-hf",
        filename="audio-flamingo-3-hf",
        licence="NVIDIA OneWay Noncommercial (model card); Qwen2.5 licence for the LLM",
        used_by=("afsim", "embedder:audio-flamingo-3"),
        extra={"allow_patterns": AF3_FILES},
    )
)
