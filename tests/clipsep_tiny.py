"""Tiny local stand-ins for the CLIPSep weights (tests only; nothing is downloaded).

* :func:`experiment`: a CLIPSep-NIT experiment folder as ``train.py`` leaves it
  (``train-args.json`` + ``checkpoints/best_model.pt``, the DataParallel state dict with its
  ``module.`` keys), for a small U-Net whose key names follow the full-size scheme;
* :func:`clip_folder`: a transformers ``CLIPModel`` folder (text and vision towers, tiny widths,
  the 512-d projection CLIPSep's query network takes) with a CLIP tokenizer built here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY = {"channels": 4, "layers": 5, "ngf": 4}
TINY_OVERRIDES = [f"system.params.{k}={v}" for k, v in TINY.items()]
# the entries of the published experiment's train-args.json that infer.py reads (train.py defaults)
TRAIN_ARGS = {"audio_len": 65535, "audio_rate": 16000, "n_fft": 1024, "hop_len": 256, "win_len": 1024, "img_size": 224,
              "fps": 1, "n_mix": 2, "fusion": "late", "channels": 32, "layers": 7, "frames": 3, "stride_frames": 1,
              "binary_mask": True, "loss": "bce", "weighted_loss": True, "log_freq": True, "image_model": "clipsepnit",
              "train_mode": "image", "reg_coef": 0, "reg2_coef": 0.1, "reg2_epsilon": 0.25}  # fmt: skip


def separator_state(seed: int = 0, **arch) -> dict[str, torch.Tensor]:
    """A random state dict with the official ``module.`` keys (BatchNorm statistics random too)."""
    from systems.clipsep_net import CLIPSepNIT, DataParallelKeys, randomise

    return DataParallelKeys(randomise(CLIPSepNIT(**{**TINY, **arch}), seed)).state_dict()


def write_checkpoint(path: Path, state: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def experiment(root: Path, state: dict | None = None, train_args: dict | None = None, **arch) -> Path:
    """``root/train-args.json`` and ``root/checkpoints/best_model.pt``; ``train_args=None`` writes
    the published entries with ``arch``'s widths, ``{}`` writes no file."""
    root = Path(root)
    write_checkpoint(root / "checkpoints" / "best_model.pt", state if state is not None else separator_state(**arch))
    if train_args is None:
        size = {**TINY, **arch}
        train_args = {**TRAIN_ARGS, "channels": size["channels"], "layers": size["layers"]}
    if train_args:
        (root / "train-args.json").write_text(json.dumps(train_args))
    return root


def clip_folder(path: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    from systems.clipsep_text import byte_level_tokenizer

    path = Path(path)
    tok = byte_level_tokenizer()
    text = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}  # fmt: skip
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def build_files(root: Path) -> dict[str, Path]:
    root = Path(root)
    return {"experiment": experiment(root / "clipsep_nit"), "clip": clip_folder(root / "clip-vit-base-patch32")}
