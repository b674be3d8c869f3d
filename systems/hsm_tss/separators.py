"""HSM-TSS's two non-autoregressive separation stages (paper III-C, III-D, IV-C).

* Global stage H1: (G_mix, T_task, T_cap) -> G_hat. A 6-layer NAR transformer over the
  concatenation of the mixture's Q-Audio feature (one token), the task tokens and the caption
  tokens; G_hat is read at the mixture token. Trained with 1 - cos + L1 (eq. 5-7).
* Local stage H2: (S_mix, G_hat, T_task, T_cap) -> S_hat. A 12-layer, 8-head, 768-wide NAR
  transformer over the conditioning tokens [G_hat, T_task, T_cap] followed by the 512 AudioMAE
  patch tokens of the mixture; S_hat is read at the patch tokens. Trained with L1 (eq. 8).
  The single-stage variant has no G_hat token.

Stated: depths, the local stage's heads and width, what each stage is conditioned on.
Assumed (docs/hsm_tss.md): conditioning by concatenation into one bidirectional sequence (the
paper says the conditioning inputs are "concatenated"), a learned type embedding per input
kind, learned positions for the patches (the caption states carry T5's own), linear maps in
and out, the global stage's width 768, 8 heads and FFN 3072 (not stated), FFN 4x width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from systems.hsm_tss.layers import Transformer, padding_mask

GLOBAL_DEFAULT = {"dim": 768, "depth": 6, "heads": 8, "ffn": 3072}
LOCAL_DEFAULT = {"dim": 768, "depth": 12, "heads": 8, "ffn": 3072}


def _settings(default: dict, cfg: dict, what: str) -> dict:
    unknown = set(cfg) - set(default)
    if unknown:
        raise ValueError(f"unknown {what} settings: {', '.join(sorted(unknown))}")
    return {**default, **cfg}


class GlobalSeparator(nn.Module):
    AUDIO, TASK, CAPTION = range(3)

    def __init__(self, g_dim: int, t_dim: int, **cfg):
        super().__init__()
        self.cfg = _settings(GLOBAL_DEFAULT, cfg, "global stage")
        dim = self.cfg["dim"]
        self.in_audio = nn.Linear(g_dim, dim)
        self.in_text = nn.Linear(t_dim, dim)
        self.type_embed = nn.Embedding(3, dim)
        self.transformer = Transformer(dim, self.cfg["depth"], self.cfg["heads"], self.cfg["ffn"])
        self.out = nn.Linear(dim, g_dim)

    def forward(self, g_mix, task, task_valid, caption, caption_valid) -> torch.Tensor:
        """``g_mix [B, g_dim]``, task ``[B, L, t_dim]``, caption ``[B, N, t_dim]`` -> G_hat ``[B, g_dim]``."""
        b = g_mix.shape[0]
        t = self.type_embed.weight
        x = torch.cat([self.in_audio(g_mix)[:, None] + t[self.AUDIO], self.in_text(task) + t[self.TASK],
                       self.in_text(caption) + t[self.CAPTION]], dim=1)  # fmt: skip
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), task_valid, caption_valid], dim=1)
        h, _ = self.transformer(x, padding_mask(valid))
        return self.out(h[:, 0])

    @staticmethod
    def loss(pred, target, lambda_sim: float = 1.0, lambda_l1: float = 1.0) -> torch.Tensor:
        """Eq. 5-7: lambda1 (1 - cos) + lambda2 L1, the L1 averaged over the feature's elements."""
        sim = 1 - F.cosine_similarity(pred, target, dim=-1)
        return (lambda_sim * sim + lambda_l1 * (pred - target).abs().mean(-1)).mean()


class LocalSeparator(nn.Module):
    PATCH, GLOBAL, TASK, CAPTION = range(4)

    def __init__(self, s_dim: int, t_dim: int, g_dim: int | None, n_patches: int = 512, **cfg):
        super().__init__()
        self.cfg = _settings(LOCAL_DEFAULT, cfg, "local stage")
        dim = self.cfg["dim"]
        self.n_patches = n_patches
        self.in_patch = nn.Linear(s_dim, dim)
        self.patch_pos = nn.Parameter(torch.randn(n_patches, dim) * 0.02)
        self.in_global = nn.Linear(g_dim, dim) if g_dim else None  # None: the single-stage variant
        self.in_text = nn.Linear(t_dim, dim)
        self.type_embed = nn.Embedding(4, dim)
        self.transformer = Transformer(dim, self.cfg["depth"], self.cfg["heads"], self.cfg["ffn"])
        self.out = nn.Linear(dim, s_dim)

    def forward(self, s_mix, g_hat, task, task_valid, caption, caption_valid, attention: bool = False):
        """``s_mix [B, P, s_dim]`` -> ``(S_hat [B, P, s_dim], attention or None)``.

        ``attention``: the last layer's attention from the patch tokens to the conditioning
        tokens, ``[B, heads, n_cond, P]`` (rows: G_hat if present, task tokens, caption
        tokens; padded rows are zero), for the paper's Fig. 6."""
        b, p, _ = s_mix.shape
        if p != self.n_patches:
            raise ValueError(f"local stage built for {self.n_patches} patches, got {p}")
        t = self.type_embed.weight
        cond, valid = [], []
        if self.in_global is not None:
            if g_hat is None:
                raise ValueError("the hierarchical local stage needs the predicted global feature")
            cond.append(self.in_global(g_hat)[:, None] + t[self.GLOBAL])
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=s_mix.device))
        cond += [self.in_text(task) + t[self.TASK], self.in_text(caption) + t[self.CAPTION]]
        valid += [task_valid, caption_valid]
        cond, valid = torch.cat(cond, 1), torch.cat(valid, 1)
        n_cond = cond.shape[1]
        x = torch.cat([cond, self.in_patch(s_mix) + self.patch_pos + t[self.PATCH]], dim=1)
        valid = torch.cat([valid, torch.ones(b, p, dtype=torch.bool, device=x.device)], dim=1)
        h, w = self.transformer(x, padding_mask(valid), last_weights=attention)
        maps = None
        if attention:
            maps = w[:, :, n_cond:, :n_cond].transpose(2, 3) * valid[:, None, :n_cond, None]
        return self.out(h[:, n_cond:]), maps

    @staticmethod
    def loss(pred, target) -> torch.Tensor:
        """Eq. 8, the L1 distance averaged over patches and channels."""
        return (pred - target).abs().mean()
