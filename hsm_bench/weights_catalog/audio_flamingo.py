"""Checkpoints of the audio_flamingo family (see hsm_bench.weights).

Audio Flamingo 3 (NVIDIA, licence "NVIDIA OneWay Noncommercial"; Qwen2.5-7B backbone under
its own licence) in the transformers layout: the Hub repository ``nvidia/audio-flamingo-3-hf``
(config, processor, tokenizer, chat template and sharded safetensors, about 16 GB).
``extra["allow_patterns"]`` lists the files worth fetching. No sha256 is published; the
AFSim metric records a digest of the weight shards (:func:`hsm_bench.weights.path_sha256`).

Audio Flamingo 1 (the 2048-d model of the HSM-TSS paper; code MIT, weights under the
OPT-IML licence, non-commercial) needs three downloads: the foundation checkpoint
``foundation.pt`` of ``nvidia/audio-flamingo`` (the GitHub branch ``legacy_audio_flamingo_1``
also ships it in five parts, ``checkpoints/foundation_part{1..5}.pt``, with a script that
merges them into ``foundation.pt``; point ``--weights`` at the merged file), the
OPT-IML-MAX-1.3B folder it is built on, and MS-CLAP's ``clapcap_weights_2023.pth``
(registered with the msclap family). Audio Flamingo 2 is not listed: no loader yet.
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
        extra={"allow_patterns": AF3_FILES},
    )
)

register(
    WeightSpec(
        name="audio-flamingo-1-foundation",
        description="Audio Flamingo 1 foundation model: audio transformer + gated cross-attention over OPT-IML-MAX-1.3B",
        source="hf://nvidia/audio-flamingo/foundation.pt",
        filename="foundation.pt",
        licence="OPT-IML licence (non-commercial research); code MIT",
    )
)
register(
    WeightSpec(
        name="opt-iml-max-1_3b",
        description="OPT-IML-MAX-1.3B (config, tokenizer, weights): the LM Audio Flamingo 1 extends",
        source="hf://facebook/opt-iml-max-1.3b",
        filename="opt-iml-max-1.3b",
        licence="OPT-IML licence (non-commercial research)",
        extra={"allow_patterns": ["config.json", "generation_config.json", "tokenizer_config.json", "vocab.json",
                                  "merges.txt", "special_tokens_map.json", "tokenizer.json", "pytorch_model.bin",
                                  "*.safetensors", "*.safetensors.index.json"]},  # fmt: skip
    )
)
