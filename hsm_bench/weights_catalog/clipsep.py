"""Checkpoints of CLIPSep (see hsm_bench.weights and systems/clipsep.py).

CLIPSep-NIT (Dong et al., ICLR 2023; sony/CLIPSep, MIT) is published once, on Google Drive
(``clipsep/README.md``, "Pretrained model"): the experiment folder ``infer.py -o`` reads,
holding ``train-args.json`` and ``checkpoints/best_model.pt`` (a ``torch.save`` of the
``DataParallel`` model's state dict, so every key starts with ``module.``). The registered
file is ``best_model.pt``; a ``train-args.json`` beside it or one folder up (the experiment
layout) is read and checked against the system's parameters. ``--weights clipsep-nit=DIR``
also takes the experiment folder itself. No digest is published.

Queries go through OpenAI CLIP ViT-B/32's text tower, read from the transformers folder
``openai/clip-vit-base-patch32`` (the repository also holds TensorFlow and Flax copies:
``allow_patterns`` keeps the PyTorch weights, the config and the tokenizer).
"""

from hsm_bench.weights import WeightSpec, register

_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
          "special_tokens_map.json", "model.safetensors", "pytorch_model.bin"]  # fmt: skip

register(
    WeightSpec(
        name="clipsep-nit",
        description="CLIPSep-NIT separator (VGGSound), the experiment folder's checkpoints/best_model.pt "
        "(its train-args.json, beside the file or one folder up, is checked when present)",
        source="https://drive.google.com/file/d/1pYQ05BClqT6Z-OSkngDKsQ2PJRF70oQL/view?usp=share_link",
        filename="best_model.pt",
        licence="MIT",
        manual="Google Drive",
    )
)
register(
    WeightSpec(
        name="clip-vit-base-patch32",
        description="OpenAI CLIP ViT-B/32 (transformers CLIPModel; CLIPSep uses its text tower)",
        source="hf://openai/clip-vit-base-patch32",
        filename="clip-vit-base-patch32",
        licence="MIT",
        extra={"allow_patterns": _FILES},
    )
)
