"""Start an HSM-TSS checkpoint from the official AudioMAE and TF-Codec files.

HSM-TSS's public parts are AudioMAE (its local-semantic encoder, frozen in every stage) and
TF-Codec (its token space; the paper fine-tunes it on general audio from the speech model).
This writes a checkpoint in hsm-bench's format (systems/hsm_tss/checkpoint.py) whose
``audiomae.*`` tensors come from an official AudioMAE file (the pretrain ``.pth``, a
fine-tuned ``.pth``, or the timm port's ``model.safetensors``) and whose ``codec.*`` tensors
come from the official ``tfcodec_6k_514000.ckpt``; Q-Audio, the two NAR stages and the
acoustic decoder are randomly initialised and listed in ``info.untrained``: the starting point
of ``hsm-bench train``, not a separation model.

    hsm-bench convert-weights --audiomae pretrained.pth --tfcodec tfcodec_6k_514000.ckpt --out hsm-tss-init
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hsm_bench.errors import ConfigError
from hsm_bench.hashing import sha256_file
from hsm_bench.weights import CheckpointError


def _architecture(variant: str, arch_file: str | Path | None, text_folder: str | Path | None) -> dict:
    from systems.hsm_tss.model import architecture

    if arch_file:
        try:
            arch = json.loads(Path(arch_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--arch {arch_file}: cannot read it as JSON ({exc})") from None
        if not isinstance(arch, dict):
            raise ConfigError(f"--arch {arch_file}: expected a JSON object of architecture sections")
        arch = architecture(variant, **{k: v for k, v in arch.items() if k != "variant"})
    else:
        arch = architecture(variant)
    if text_folder:  # the FLAN-T5 the model will be trained with: its sizes
        try:
            t5 = json.loads((Path(text_folder) / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--text {text_folder}: no readable config.json ({exc})") from None
        arch["text"].update(d_model=int(t5["d_model"]), vocab_size=int(t5["vocab_size"]))
    return arch


def convert(out: str | Path, audiomae: str | Path | None = None, tfcodec: str | Path | None = None,
            variant: str = "hierarchical", arch_file: str | Path | None = None, text_folder: str | Path | None = None,
            seed: int = 0) -> Path:  # fmt: skip
    """Write the starting checkpoint to ``out``; CheckpointError (one line) for a file that does not fit."""
    from systems.hsm_tss.audiomae import read_audiomae_checkpoint
    from systems.hsm_tss.checkpoint import save_checkpoint
    from systems.hsm_tss.model import HsmTssModel
    from systems.hsm_tss.tfcodec import read_tfcodec_checkpoint

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} exists: choose a new folder for the checkpoint")
    arch = _architecture(variant, arch_file, text_folder)
    if tfcodec and arch["codec"].get("kind") != "tfcodec":
        raise ConfigError(f"--tfcodec given but the architecture's codec is {arch['codec'].get('kind')!r}")
    torch.manual_seed(seed)
    try:
        model = HsmTssModel(arch)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the architecture cannot be built: {exc}") from None
    sources, untrained = {}, ["qaudio", "global_sep", "local_sep", "acoustic"] if variant == "hierarchical" else \
        ["local_sep", "acoustic"]  # fmt: skip
    if audiomae:
        model.audiomae.load_state_dict(read_audiomae_checkpoint(audiomae, model.audiomae), strict=True)
        sources["audiomae"] = {"file": str(audiomae), "sha256": _digest(audiomae)}
    else:
        untrained.insert(0, "audiomae")
    if model.codec is not None:
        if tfcodec:
            model.codec.load_state_dict(read_tfcodec_checkpoint(tfcodec, model.codec), strict=True)
            sources["codec"] = {"file": str(tfcodec), "sha256": _digest(tfcodec)}
        else:
            untrained.append("codec")
    info = {"converted_from": sources, "untrained": untrained, "trained": False, "random_init_seed": seed,
            "note": "a starting point for `hsm-bench train`: the untrained stages are random"}  # fmt: skip
    return save_checkpoint(model, out, info=info)


def _digest(path: str | Path) -> str | None:
    p = Path(path)
    if p.is_dir():  # a Hub folder: the weight file inside it
        files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin"))
        return sha256_file(files[0]) if files else None
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist")
    return sha256_file(p)
