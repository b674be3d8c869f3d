"""hsm-bench's own HSM-TSS checkpoint format: a folder, since no official one exists.

    <folder>/config.json        {"format": "hsm-bench/hsm-tss", "format_version": 1,
                                 "architecture": {...},          # systems/hsm_tss/model.py
                                 "weights": "model.safetensors",
                                 "weights_sha256": "<sha256 of model.safetensors>",
                                 "info": {...}}                  # free-form provenance (who, what data, steps)
    <folder>/model.safetensors  every tensor of HsmTssModel's state dict, float32 (or float16: below)

Loading checks the format, the digest and every key and shape (strict: a missing, extra or
misshapen tensor is named in the one-line error), then rebuilds the model from the
architecture. Saving writes into a temporary folder beside the target and renames it, so an
interrupted save leaves no half-written checkpoint. The float32 round trip is bit exact.

Storage dtype: ``save_checkpoint(..., dtype=torch.float16)`` stores the floating tensors as
float16 (half the size: the demo preset ships that form, training/preset.py) and the config
records ``"dtype": "float16"``; integer tensors keep their dtype. ``load_checkpoint`` casts them
back to float32, so a loaded model always computes in float32 (with the weights rounded to
float16 once). Without ``dtype`` the file is float32 and the config says nothing (format 1 as before).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from hsm_bench.hashing import sha256_file
from hsm_bench.weights import CheckpointError

FORMAT = "hsm-bench/hsm-tss"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def save_checkpoint(model, folder: str | Path, info: dict | None = None, overwrite: bool = False,
                    dtype: torch.dtype | None = None) -> Path:  # fmt: skip
    """Write ``model`` (an HsmTssModel) to ``folder``; ``dtype``: float32 (default) or float16 storage."""
    from safetensors.torch import save_file

    names = {v: k for k, v in STORAGE_DTYPES.items()}
    if dtype is not None and dtype not in names:
        raise ValueError(f"dtype {dtype}: a checkpoint stores float32 or float16")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; choose another folder or pass overwrite=True")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:  # float16 overflows at 65504: such a tensor cannot be stored in it
                raise ValueError(f"{bad[0]} is not finite in {names[dtype]} ({len(bad)} tensor(s)); save in float32")
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": model.arch,
                  "weights": WEIGHTS, "weights_sha256": sha256_file(tmp / WEIGHTS), "info": info or {},
                  **({"dtype": names[dtype]} if dtype is not None else {})}  # fmt: skip
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | Path) -> dict:
    """The checkpoint's ``config.json``, checked; CheckpointError in one line otherwise."""
    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(f"{folder} is a file: an HSM-TSS checkpoint is a folder holding {CONFIG} and {WEIGHTS}")
    path = folder / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not an HSM-TSS checkpoint: no {CONFIG}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an HSM-TSS checkpoint config (format {FORMAT!r} expected)")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {config.get('format_version')!r}, this hsm-bench reads "
                              f"{FORMAT_VERSION}")  # fmt: skip
    if not isinstance(config.get("architecture"), dict):
        raise CheckpointError(f"{path}: no architecture")
    if config.get("dtype", "float32") not in STORAGE_DTYPES:
        raise CheckpointError(f"{path}: storage dtype {config.get('dtype')!r}, this hsm-bench reads "
                              f"{' or '.join(STORAGE_DTYPES)}")  # fmt: skip
    return config


def weights_path(folder: str | Path) -> Path:
    return Path(folder) / read_config(folder).get("weights", WEIGHTS)


def load_checkpoint(folder: str | Path, variant: str | None = None, verify: bool = True):
    """``(HsmTssModel in eval mode, config)`` from ``folder``; ``variant`` (when given) must match."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from hsm_bench.weights import check_state_dict
    from systems.hsm_tss.model import HsmTssModel

    folder = Path(folder)
    config = read_config(folder)
    arch = config["architecture"]
    if variant and arch.get("variant") != variant:
        raise CheckpointError(f"{folder} holds the {arch.get('variant')!r} HSM-TSS variant, {variant!r} was asked for")
    path = folder / config.get("weights", WEIGHTS)
    if not path.is_file():
        raise CheckpointError(f"{folder} is incomplete: {path.name} is missing")
    if verify and config.get("weights_sha256") and sha256_file(path) != config["weights_sha256"]:
        raise CheckpointError(f"{path} does not match the sha256 in {CONFIG}: the file changed or is truncated")
    try:
        model = HsmTssModel(arch)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{folder / CONFIG}: the architecture cannot be built ({exc})") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    state = check_state_dict(model, state, f"HSM-TSS ({arch.get('variant')})", str(path))
    # the model computes in float32 whatever the storage dtype
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def random_checkpoint(folder: str | Path, arch: dict, seed: int = 0, info: dict | None = None) -> Path:
    """A checkpoint of ``arch`` with random weights (tests, timing): not a trained model."""
    from systems.hsm_tss.model import HsmTssModel

    torch.manual_seed(seed)
    model = HsmTssModel(arch)
    return save_checkpoint(model, folder, info={"random_init_seed": seed, "trained": False, **(info or {})})
