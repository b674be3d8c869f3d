"""Flamingo building blocks as Audio Flamingo 1 defines them (NVIDIA/audio-flamingo, branch
``legacy_audio_flamingo_1``, ``inference/src/{helpers,flamingo,flamingo_lm}.py``), re-implemented.

Module and parameter names follow the official ones, so a ``Flamingo.state_dict()`` saved by
the official training code loads key for key:

* :class:`AudioTransformer` (official ``TransformerEncoder``): the per-window CLAP embeddings
  (``[B, L, D]``) are scaled by sqrt(D), get a sinusoidal position table added
  (``position_enc.pos_table``, a saved buffer), a LayerNorm (eps 1e-6), then post-LN
  encoder layers: ``slf_attn.{w_qs,w_ks,w_vs,fc}`` (bias-free) + residual + ``layer_norm``,
  ``pos_ffn.{w_1,w_2}`` (ReLU) + residual + ``layer_norm``. No attention mask: padded
  (all-zero) windows take part in self-attention, as in the official model.
* :class:`GatedCrossAttentionBlock`: ``attn`` (:class:`MaskedCrossAttention`: ``norm``,
  ``to_q``, ``to_kv``, ``to_out``, 8 heads of 64) gated by ``tanh(attn_gate)``, then ``ff``
  (LayerNorm, Linear x4 without bias, GELU, Linear) gated by ``tanh(ff_gate)``, both residual.
* :class:`FlamingoLayer`: ``gated_cross_attn_layer`` then the LM's own ``decoder_layer``; it
  replaces each decoder layer, so the LM keys become ``...layers.{i}.decoder_layer.*``.

Cross-attention mask (``only_attend_immediate_media=False``, as AF1 is built): a text
position may attend to the audio windows ``[0, k * max_window_per_audio)``, k = the number of
``<audio>`` tokens at or before it (at least 1, so positions before the first ``<audio>``
see the first audio too); padded windows (``media_mask`` 0) are masked out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sinusoid_table(n_position: int, d: int) -> torch.Tensor:
    """``[1, n_position, d]``: sin on even, cos on odd channels, angle pos / 10000^(2*(j//2)/d)."""
    pos = np.arange(n_position, dtype=np.float64)[:, None]
    j = np.arange(d)
    table = pos / np.power(10000, 2 * (j // 2) / d)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)[None]


class PositionalEncoding(nn.Module):
    def __init__(self, d: int, n_position: int):
        super().__init__()
        self.register_buffer("pos_table", sinusoid_table(n_position, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_table[:, : x.shape[1]].to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head, self.d_k = n_head, d // n_head
        self.w_qs = nn.Linear(d, d, bias=False)
        self.w_ks = nn.Linear(d, d, bias=False)
        self.w_vs = nn.Linear(d, d, bias=False)
        self.fc = nn.Linear(d, d, bias=False)
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (w(x).view(b, n, self.n_head, self.d_k).transpose(1, 2) for w in (self.w_qs, self.w_ks, self.w_vs))
        attn = torch.matmul(q / self.d_k**0.5, k.transpose(2, 3)).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, -1)
        return self.layer_norm(self.fc(out) + x)


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d: int, d_inner: int):
        super().__init__()
        self.w_1 = nn.Linear(d, d_inner)
        self.w_2 = nn.Linear(d_inner, d)
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.w_2(F.relu(self.w_1(x))) + x)


class EncoderLayer(nn.Module):
    def __init__(self, d: int, d_inner: int, n_head: int):
        super().__init__()
        self.slf_attn = SelfAttention(d, n_head)
        self.pos_ffn = PositionwiseFeedForward(d, d_inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos_ffn(self.slf_attn(x))


class AudioTransformer(nn.Module):
    def __init__(self, d: int, n_layers: int = 3, n_head: int = 8, d_inner: int = 2048, n_position: int = 128):
        super().__init__()
        if d % n_head:
            raise ValueError(f"audio embedding size {d} is not a multiple of {n_head} heads")
        self.d = d
        self.position_enc = PositionalEncoding(d, n_position)
        self.layer_stack = nn.ModuleList(EncoderLayer(d, d_inner, n_head) for _ in range(n_layers))
        self.layer_norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.position_enc(x * self.d**0.5))
        for layer in self.layer_stack:
            x = layer(x)
        return x


def media_attention_mask(media_locations: torch.Tensor, media_mask: torch.Tensor, max_window_per_audio: int) -> torch.Tensor:
    """``[B, T, L]`` bool: which audio windows each text position may attend to."""
    n_windows = media_mask.shape[1]
    seen = media_locations.long().cumsum(dim=1).clamp(min=1)  # <audio> tokens at or before t
    window_end = seen * max_window_per_audio  # [B, T]
    windows = torch.arange(n_windows, device=media_mask.device)
    allowed = windows[None, None, :] < window_end[:, :, None]
    return allowed & media_mask.bool()[:, None, :]


class MaskedCrossAttention(nn.Module):
    def __init__(self, dim: int, dim_audio: int, max_window_per_audio: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.heads, self.scale, self.max_window_per_audio = heads, dim_head**-0.5, max_window_per_audio
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_audio, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, media: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, dim], ``media`` [B, L, dim_audio], ``allowed`` [B, T, L] bool."""
        b, t, _ = x.shape
        h = self.heads
        q = self.to_q(self.norm(x))
        k, v = self.to_kv(media).chunk(2, dim=-1)
        q, k, v = (z.reshape(b, z.shape[1], h, -1).transpose(1, 2) for z in (q, k, v))
        sim = torch.einsum("bhid,bhjd->bhij", q * self.scale, k)
        sim = sim.masked_fill(~allowed[:, None], -torch.finfo(sim.dtype).max)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v).transpose(1, 2).reshape(b, t, -1)
        return self.to_out(out)


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(), nn.Linear(dim * mult, dim, bias=False))


class GatedCrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, dim_audio: int, max_window_per_audio: int, dim_head: int = 64, heads: int = 8, ff_mult: int = 4):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_audio, max_window_per_audio, dim_head, heads)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor, media: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = self.attn(x, media, allowed) * self.attn_gate.tanh() + x
        return self.ff(x) * self.ff_gate.tanh() + x


class FlamingoLayer(nn.Module):
    """A decoder layer with a gated cross-attention block in front; ``condition`` first."""

    def __init__(self, gated_cross_attn_layer: GatedCrossAttentionBlock, decoder_layer: nn.Module):
        super().__init__()
        self.gated_cross_attn_layer = gated_cross_attn_layer
        self.decoder_layer = decoder_layer
        self.media: torch.Tensor | None = None
        self.allowed: torch.Tensor | None = None

    def condition(self, media: torch.Tensor | None, allowed: torch.Tensor | None) -> None:
        self.media, self.allowed = media, allowed

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.media is None or self.allowed is None:
            raise RuntimeError("FlamingoLayer: condition() on the audio before the forward pass")
        hidden_states = self.gated_cross_attn_layer(hidden_states, self.media, self.allowed)
        return self.decoder_layer(hidden_states, *args, **kwargs)
