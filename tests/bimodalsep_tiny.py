"""Tiny BiModalSep files with the official key layout (tests, benchmarks).

Nothing is downloaded: a RoBERTa stand-in folder (``clap_tiny.roberta_folder``), a LAION-CLAP
HTSAT-base-layout checkpoint with tiny widths, and a separator checkpoint in the official
container (``{"state_dict": {"module." + key: tensor}, "epoch": ...}``, the frozen CLAP copy
inside, with the ``text_branch.embeddings.position_ids`` transformers 4.30 saved). The tiny
separator keeps every key name of the full-size one (7 levels, one residual layer and one
attention block per conditioned level); only widths shrink, and the STFT (n_fft 254, hop 64)
gives 8190-sample chunks with a 128 x 128 spectrogram, the smallest that 7 halvings allow.
"""

from __future__ import annotations

from pathlib import Path

from tests import clap_tiny

TINY_CLAP = {**clap_tiny.TINY_HTSAT, "joint_dim": 16}
TINY_ARCH = {"ngf": 4, "out_channels": 4, "heads": 2, "n_fft": 254, "hop": 64, "clap": TINY_CLAP}
# the same architecture as a Hydra override value
TINY_ARCH_OVERRIDE = ("{ngf:4,out_channels:4,heads:2,n_fft:254,hop:64,clap:{embed_dim:8,depths:[2,2,2,2],"
                      "num_heads:[1,1,2,2],num_classes:5,joint_dim:16}}")  # fmt: skip


def randomise(net, seed: int) -> None:
    """Random BatchNorm statistics, LayerNorm biases, synthesizer scale and bias (which
    initialisation leaves at 0 / 1), so a round trip exercises every tensor."""
    import torch

    clap_tiny.randomise_statistics(net, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        syn = net.net_synthesizer
        syn.scale.copy_(1.0 + 0.5 * torch.randn(syn.scale.shape, generator=g))
        syn.bias.copy_(0.1 * torch.randn(1, generator=g))


def build_files(folder: Path, arch: dict | None = None, seed: int = 0) -> dict:
    """``{"roberta", "clap", "separator"}`` paths and ``state`` (the separator's state dict,
    unprefixed, CLAP copy included) for ``arch`` (default :data:`TINY_ARCH`)."""
    import torch

    from systems.bimodalsep import BiModalSep, LaionClapMusicAudioset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = dict(arch or TINY_ARCH)
    roberta = clap_tiny.roberta_folder(folder / "roberta-base")
    emb = LaionClapMusicAudioset(arch=arch["clap"])
    torch.manual_seed(seed)
    clap = emb.build(roberta)
    clap_tiny.randomise_statistics(clap, seed)
    n_pos = clap.text_branch.config.max_position_embeddings
    clap_state = {**clap.state_dict(), "text_branch.embeddings.position_ids": torch.arange(n_pos)[None]}
    clap_path = folder / "music_audioset_epoch_15_esc_90.14.pt"
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in clap_state.items()}}, clap_path)

    net = BiModalSep(arch=arch)._build(clap, emb.embed_dim, int(clap.text_branch.config.hidden_size))
    randomise(net, seed)
    state = dict(net.state_dict())
    state["net_clap.model.model.text_branch.embeddings.position_ids"] = torch.arange(n_pos)[None]
    sep_path = write_separator(folder / "model_weights.pth.tar", state)
    return {"roberta": roberta, "clap": clap_path, "separator": sep_path, "state": state}


def write_separator(path: Path, state: dict, prefix: str = "module.") -> Path:
    import torch

    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "epoch": 42}, path)
    return Path(path)
