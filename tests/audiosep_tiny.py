"""Tiny AudioSep files in the official layouts, built locally (tests, benchmarks).

* a ``roberta-base`` stand-in: the local byte-level BPE tokenizer of :mod:`tests.clap_tiny`
  and a one-layer RoBERTa config with roberta-base's 514 positions (AudioSep pads queries to
  512 tokens);
* a LAION-CLAP ``.pt`` (HTSAT-base names, tiny widths; ``{"epoch", "state_dict": {"module." +
  key}}`` with ``text_branch.embeddings.position_ids``, as the published files);
* an AudioSep Lightning ``.ckpt``: ``{"epoch", "global_step", "pytorch-lightning_version",
  "state_dict", "loops", ...}`` whose ``state_dict`` holds ``ss_model.*`` (ResUNet30 with tiny
  widths, random BatchNorm statistics) and ``query_encoder.model.*`` (the CLAP tensors, which
  the official loader writes over the CLAP file's).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests import clap_tiny

TINY_WIDTHS = [4, 4, 6, 8, 10, 12, 12]  # widths change where the full-size ones do (same shortcuts)
TINY_CLAP = {**clap_tiny.TINY_HTSAT, "joint_dim": 16}
TINY_ARCH = {"widths": TINY_WIDTHS, "clap": TINY_CLAP}


def roberta_folder(path: Path, seed: int = 0) -> Path:
    from transformers import RobertaConfig, RobertaModel

    path = Path(path)
    tok = clap_tiny.roberta_tokenizer()
    tok.save_pretrained(str(path))
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, type_vocab_size=1)  # fmt: skip
    RobertaModel(cfg).save_pretrained(str(path))
    return path


def clap_checkpoint(path: Path, text_folder: Path, seed: int = 0) -> Path:
    return clap_tiny.laion_checkpoint(path, text_folder, TINY_CLAP, base=True, seed=seed)


def separator_state(n_fft: int, hop: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``ss_model.*`` tensors of a tiny ResUNet30 with random weights and BatchNorm statistics."""
    from systems.resunet30 import ResUNet30

    torch.manual_seed(seed)
    net = ResUNet30(n_fft, hop, TINY_WIDTHS, TINY_CLAP["joint_dim"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("bn0.weight", "bn1.weight", "bn2.weight")) or name.startswith("film."):
                t.add_(0.1 * torch.randn(t.shape, generator=g))  # BN scales off 1, FiLM biases off 0
    return {"ss_model." + k: v.clone() for k, v in net.state_dict().items()}


def lightning_checkpoint(path: Path, clap_file: Path, n_fft: int = 2048, hop: int = 320, seed: int = 0,
                         query: dict[str, torch.Tensor] | None = None) -> Path:  # fmt: skip
    """The Lightning file: ``ss_model.*`` plus ``query_encoder.model.*`` = the CLAP file's tensors,
    or ``query`` when given (to tell which source the loader keeps)."""
    if query is None:
        clap = torch.load(clap_file, map_location="cpu", weights_only=True)["state_dict"]
        query = {k[len("module.") :]: v for k, v in clap.items()}
    state = {**separator_state(n_fft, hop, seed), **{"query_encoder.model." + k: v for k, v in query.items()}}
    torch.save({"epoch": 0, "global_step": 200000, "pytorch-lightning_version": "2.0.0", "state_dict": state,
                "loops": {"fit_loop": {"state_dict": {}}}, "callbacks": {}, "optimizer_states": [],
                "lr_schedulers": []}, path)  # fmt: skip
    return Path(path)
