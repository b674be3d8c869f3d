"""Checkpoints of the laion_clap family (see hsm_bench.weights).

LAION-CLAP (LAION-AI/CLAP, CC0-1.0): the original ``.pt`` checkpoints on the Hub repository
``lukewys/laion_clap`` (``{"state_dict": {"module." + key: tensor}, ...}``), whose RoBERTa
text branch needs the ``roberta-base`` config and tokenizer, and the transformers
conversions (``ClapModel`` folders). ``extra["allow_patterns"]`` lists the files of a Hub
repository worth fetching. Only the HTSAT-base checkpoint's size is known (the AudioSep /
DCASE 2024 query-encoder checkpoint); sha256 values are pinned by the first download.
"""

from hsm_bench.weights import WeightSpec, register

_HF_FILES = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
             "merges.txt", "special_tokens_map.json", "model.safetensors"]  # fmt: skip

register(
    WeightSpec(
        name="laion-clap-music-speech-audioset",
        description="LAION-CLAP HTSAT-base + RoBERTa, music_speech_audioset_epoch_15_esc_89.98.pt (AudioSep's query encoder)",
        source="hf://lukewys/laion_clap/music_speech_audioset_epoch_15_esc_89.98.pt",
        filename="music_speech_audioset_epoch_15_esc_89.98.pt",
        licence="CC0-1.0",
        size=2352471003,
    )
)
register(
    WeightSpec(
        name="laion-clap-630k-audioset",
        description="LAION-CLAP HTSAT-tiny + RoBERTa, 630k-audioset-best.pt (the laion_clap pip default)",
        source="hf://lukewys/laion_clap/630k-audioset-best.pt",
        filename="630k-audioset-best.pt",
        licence="CC0-1.0",
    )
)
register(
    WeightSpec(
        name="roberta-base",
        description="RoBERTa base config + tokenizer (LAION-CLAP text branch; weights come from the CLAP checkpoint)",
        source="hf://FacebookAI/roberta-base",
        filename="roberta-base",
        licence="MIT",
        extra={"allow_patterns": _HF_FILES},
    )
)
register(
    WeightSpec(
        name="laion-clap-hf-htsat-unfused",
        description="transformers ClapModel laion/clap-htsat-unfused (= 630k-audioset-best)",
        source="hf://laion/clap-htsat-unfused",
        filename="clap-htsat-unfused",
        licence="Apache-2.0",
        extra={"allow_patterns": _HF_FILES},
    )
)
register(
    WeightSpec(
        name="laion-clap-hf-larger-music-speech",
        description="transformers ClapModel laion/larger_clap_music_and_speech (HTSAT-base conversion)",
        source="hf://laion/larger_clap_music_and_speech",
        filename="larger_clap_music_and_speech",
        licence="Apache-2.0",
        extra={"allow_patterns": _HF_FILES},
    )
)
