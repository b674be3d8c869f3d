"""Tiny HSM-TSS models built here: a random T5 folder and random checkpoints of both variants,
every stage present at small widths (the paper's architecture is tested for its shapes
separately). Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

TINY_CODEC = {"kind": "tfcodec", "arch": {"channels": [4, 4, 8, 8], "tcm_channels": 16, "latent_dim": 16,
                                          "n_codebooks": 4, "codebook_size": 32}}  # fmt: skip


def tiny_t5(folder: Path, d_model: int = 32) -> Path:
    from systems.hsm_tss.text import local_t5_folder

    if not (folder / "config.json").is_file():
        local_t5_folder(folder, d_model=d_model, layers=1, heads=4, d_ff=64)
    return folder


def tiny_arch(variant: str, text_folder: Path, **overrides) -> dict:
    from systems.hsm_tss.model import architecture
    from systems.hsm_tss.text import TextEncoder

    text = TextEncoder.from_folder(text_folder)
    small = {"dim": 32, "depth": 1, "heads": 4, "ffn": 64}
    sections = {
        "audiomae": {"embed_dim": 32, "depth": 1, "num_heads": 4},
        "text": {"d_model": text.d_model, "vocab_size": text.vocab_size},
        "qaudio": {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "proj_dim": 16},
        "global": dict(small),
        "local": dict(small),
        "acoustic": dict(small),
        "codec": TINY_CODEC,
    }
    sections.update(overrides)
    return architecture(variant, **sections)


def tiny_model(arch: dict, seed: int = 0):
    """A random :class:`HsmTssModel` of ``arch``, its weights set by ``seed`` alone."""
    import torch

    from systems.hsm_tss.model import HsmTssModel

    torch.manual_seed(seed)
    return HsmTssModel(arch)


def sharpened(model):
    """Random initialisation leaves the codec's output near silence (its inverse power law turns
    the small values of a random decoder into ~1e-6): scaled up here so that the tests compare
    audible outputs (peaks ~0.4) with meaningful tolerances."""
    import torch

    with torch.no_grad():
        if model.codec is not None:
            model.codec.out_conv.weight.mul_(30.0)
    return model


def tiny_checkpoints(root: Path, seed: int = 0) -> dict[str, Path]:
    """``{"t5": folder, "hsm-tss": folder, "hsm-tss-single": folder}`` under ``root``."""
    import torch

    from systems.hsm_tss.checkpoint import save_checkpoint
    from systems.hsm_tss.model import HsmTssModel

    root = Path(root)
    t5 = tiny_t5(root / "t5")
    out = {"t5": t5}
    for name, variant in (("hsm-tss", "hierarchical"), ("hsm-tss-single", "single")):
        folder = root / name
        if not folder.exists():
            torch.manual_seed(seed)
            model = sharpened(HsmTssModel(tiny_arch(variant, t5)))
            save_checkpoint(model, folder, info={"random_init_seed": seed, "trained": False, "sharpened": True})
        out[name] = folder
    return out
