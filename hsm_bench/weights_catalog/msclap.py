"""Checkpoints of the msclap family (see hsm_bench.weights).

MS-CLAP (microsoft/CLAP, model card licence MS-PL): ``{"model": state_dict}`` files on the
Hub repository ``microsoft/msclap``; the text encoders are the plain Hub models ``gpt2``
(2023) and ``bert-base-uncased`` (2022), of which hsm-bench uses the config and the
tokenizer (the checkpoint carries the text-encoder weights too). ``extra["allow_patterns"]``
lists the files of a Hub repository worth fetching (the repositories also hold TF, Flax,
ONNX and Rust copies). No sha256 is published: the first download pins it in the lock file.
"""

from hsm_bench.weights import WeightSpec, register

_TOKENIZER_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                    "vocab.txt", "special_tokens_map.json", "generation_config.json"]  # fmt: skip

register(
    WeightSpec(
        name="msclap-2023",
        description="MS-CLAP 2023 (HTSAT audio encoder + GPT-2 text encoder)",
        source="hf://microsoft/msclap/CLAP_weights_2023.pth",
        filename="CLAP_weights_2023.pth",
        licence="MS-PL",
    )
)
register(
    WeightSpec(
        name="msclap-2022",
        description="MS-CLAP 2022 (Cnn14 audio encoder + BERT text encoder)",
        source="hf://microsoft/msclap/CLAP_weights_2022.pth",
        filename="CLAP_weights_2022.pth",
        licence="MS-PL",
    )
)
register(
    WeightSpec(
        name="msclap-clapcap-2023",
        description="MS-CLAP clapcap 2023 (captioner); Audio Flamingo 1 uses its HTSAT audio encoder (clap.*)",
        source="hf://microsoft/msclap/clapcap_weights_2023.pth",
        filename="clapcap_weights_2023.pth",
        licence="MS-PL",
    )
)
register(
    WeightSpec(
        name="gpt2",
        description="GPT-2 config + tokenizer (MS-CLAP 2023 text encoder; weights come from the CLAP checkpoint)",
        source="hf://openai-community/gpt2",
        filename="gpt2",
        licence="MIT",
        extra={"allow_patterns": [*_TOKENIZER_FILES, "model.safetensors"]},
    )
)
register(
    WeightSpec(
        name="bert-base-uncased",
        description="BERT base uncased config + tokenizer (MS-CLAP 2022 text encoder)",
        source="hf://google-bert/bert-base-uncased",
        filename="bert-base-uncased",
        licence="Apache-2.0",
        extra={"allow_patterns": [*_TOKENIZER_FILES, "model.safetensors"]},
    )
)
