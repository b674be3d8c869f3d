"""The HSM-TSS network: every stage of the paper's Fig. 2, built from one architecture dict.

    mixture -> fbank -> AudioMAE -> S_mix ─┬──────────────> local stage -> S_hat -> acoustic decoder -> codec -> audio
                                           └> Q-Audio -> G_mix -> global stage -> G_hat ┘
    caption -> FLAN-T5 -> (Q-Audio text branch) -> T_cap;  task -> T5 vocabulary -> T_task

The single-stage variant ("Ours single", paper V-A) has no Q-Audio and no global stage: the
local stage is conditioned on the task tokens and FLAN-T5's caption states alone.

The architecture dict (``ARCHITECTURE`` is the paper's model) is what a checkpoint's
``config.json`` holds; ``HsmTssModel(arch)`` rebuilds the exact module tree, so a checkpoint
loads strictly. The frozen FLAN-T5 encoder is not part of it (weights ``flan-t5-base``), nor
are EnCodec or DAC when one of them is the codec: their folders are named in the dict.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from systems.hsm_tss import acoustic, qaudio, separators

VARIANTS = ("hierarchical", "single")

ARCHITECTURE: dict = {
    "variant": "hierarchical",
    "sample_rate": 16000,
    "audiomae": {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0, "feature": "last"},
    "text": {"d_model": 768, "vocab_size": 32128, "weights": "flan-t5-base"},
    "qaudio": dict(qaudio.DEFAULT),
    "global": dict(separators.GLOBAL_DEFAULT),
    "local": dict(separators.LOCAL_DEFAULT),
    "acoustic": dict(acoustic.DEFAULT),
    "codec": {"kind": "tfcodec"},
}
TOP_KEYS = set(ARCHITECTURE)


def architecture(variant: str = "hierarchical", **overrides) -> dict:
    """The paper's architecture for ``variant``, with sections replaced or updated by ``overrides``
    (``audiomae={"depth": 2}`` updates that section; used for small test models)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: one of {', '.join(VARIANTS)}")
    arch = copy.deepcopy(ARCHITECTURE)
    arch["variant"] = variant
    for key, value in overrides.items():
        if key not in TOP_KEYS:
            raise ValueError(f"unknown architecture section {key!r}: one of {', '.join(sorted(TOP_KEYS))}")
        if isinstance(value, dict) and key != "codec":
            arch[key].update(value)
        else:
            arch[key] = copy.deepcopy(value)
    if variant == "single":
        arch.pop("qaudio"), arch.pop("global")
    return arch


class HsmTssModel(nn.Module):
    def __init__(self, arch: dict):
        super().__init__()
        from systems.hsm_tss.audiomae import AudioMAEEncoder
        from systems.hsm_tss.codecs import build_codec

        unknown = set(arch) - TOP_KEYS
        if unknown or arch.get("variant") not in VARIANTS:
            raise ValueError(f"not an HSM-TSS architecture: variant {arch.get('variant')!r}, "
                             f"unknown sections {sorted(unknown)}")  # fmt: skip
        self.arch = copy.deepcopy(arch)
        self.variant = arch["variant"]
        self.sample_rate = int(arch["sample_rate"])
        self.audiomae = AudioMAEEncoder(**arch["audiomae"])
        s_dim = int(arch["audiomae"]["embed_dim"])
        t_dim = int(arch["text"]["d_model"])
        n_patches = self.audiomae.grid[0] * self.audiomae.grid[1]
        if self.variant == "hierarchical":
            self.qaudio = qaudio.QAudio(s_dim, t_dim, int(arch["text"]["vocab_size"]), **arch["qaudio"])
            g_dim = self.qaudio.cfg["hidden"]
            self.global_sep = separators.GlobalSeparator(g_dim, g_dim, **arch["global"])
            cond_dim = g_dim  # the caption reaches the separators through Q-Audio's text branch
        else:
            self.qaudio = self.global_sep = None
            g_dim, cond_dim = None, t_dim
        self.task_in = nn.Linear(t_dim, cond_dim) if cond_dim != t_dim else nn.Identity()
        self.local_sep = separators.LocalSeparator(s_dim, cond_dim, g_dim, n_patches=n_patches, **arch["local"])
        codec_cfg = dict(arch["codec"])
        if codec_cfg.get("kind") == "tfcodec" and codec_cfg.get("weights"):
            raise ValueError("a TF-Codec inside an HSM-TSS checkpoint takes its weights from the checkpoint: its codec "
                             "section names no weights (systems/hsm_tss/convert.py copies official ones in)")  # fmt: skip
        codec = build_codec(codec_cfg)
        # TF-Codec's weights belong to the checkpoint (HSM-TSS retrains it): its network is the
        # submodule ``codec``; EnCodec and DAC come from their own folders, outside the state dict
        self._token_codec = codec
        self.codec = codec.model if codec_cfg.get("kind") == "tfcodec" else None
        c = self.token_codec
        self.acoustic = acoustic.AcousticDecoder(s_dim, c.n_codebooks, c.codebook_size, n_prefix=n_patches,
                                                 **arch["acoustic"])  # fmt: skip
        self.freeze_frozen()

    @property
    def token_codec(self):
        if self.codec is not None:  # the wrapper moves its inputs to where the network is
            self._token_codec.device = next(self.codec.parameters()).device
        return self._token_codec

    def freeze_frozen(self) -> None:
        """AudioMAE and the codec are frozen in every stage of the paper's training."""
        self.audiomae.requires_grad_(False)
        if self.codec is not None:
            self.codec.requires_grad_(False)

    # -- the stages ---------------------------------------------------------------------------
    def local_features(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """S ``[B, 512, 768]`` of 16-kHz audio ``[B, T]`` (each item's first ``lengths`` samples)."""
        from systems.hsm_tss.fbank import audiomae_input

        return self.audiomae(audiomae_input(wave, lengths).to(wave.device))

    def global_features(self, s: torch.Tensor) -> torch.Tensor:
        if self.qaudio is None:
            raise RuntimeError("the single-stage variant has no global features")
        return self.qaudio.audio_features(s)

    def condition(self, captions: torch.Tensor, caption_valid: torch.Tensor, tasks: torch.Tensor):
        """FLAN-T5 caption states and task embeddings -> the separators' text inputs."""
        if self.qaudio is not None:
            captions = self.qaudio.text_features(captions, caption_valid) * caption_valid[..., None]
        return self.task_in(tasks), captions

    def separate_features(self, s_mix, tasks, task_valid, captions, caption_valid, attention: bool = False) -> dict:
        """H1 and H2: ``{"s_hat", "g_mix", "g_hat", "attention"}`` (the global ones None for the
        single-stage variant)."""
        task, caption = self.condition(captions, caption_valid, tasks)
        g_mix = g_hat = None
        if self.variant == "hierarchical":
            g_mix = self.global_features(s_mix)
            g_hat = self.global_sep(g_mix, task, task_valid, caption, caption_valid)
        s_hat, maps = self.local_sep(s_mix, g_hat, task, task_valid, caption, caption_valid, attention=attention)
        return {"s_hat": s_hat, "g_mix": g_mix, "g_hat": g_hat, "attention": maps}

    def n_frames(self, n_samples: int) -> int:
        """Codec frames covering ``n_samples`` at the model's rate."""
        c = self.token_codec
        return max(1, math.ceil(n_samples * c.frame_rate / self.sample_rate - 1e-9))

    def acoustic_tokens(self, s_hat: torch.Tensor, n_frames: int, **generation) -> torch.Tensor:
        return self.acoustic.generate(s_hat, n_frames, **generation)

    def decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, F, K]`` -> audio ``[B, T]`` at the model's rate."""
        c = self.token_codec
        wave = c.decode(codes)
        if c.sample_rate != self.sample_rate:
            from hsm_bench.audio.resample import resample

            rows = [resample(w.detach().float().cpu().numpy(), c.sample_rate, self.sample_rate) for w in wave]
            wave = torch.stack([torch.from_numpy(r.copy()) for r in rows]).to(codes.device)
        return wave
