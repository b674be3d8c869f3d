"""Transformer blocks shared by HSM-TSS's separators and acoustic decoder.

The paper gives depth, heads and width of each transformer (section IV-C) but not the block
layout; these are pre-LayerNorm blocks (LayerNorm before attention and before the GELU MLP,
residual around each, a final LayerNorm), the layout that trains stably at these depths
without warm-up tricks (an assumption, see docs/hsm_tss.md). Attention is written out so
that a block can return its attention weights (the local stage's last-layer map, paper
Fig. 6) and keep a key/value cache (the acoustic decoder's token-by-token decoding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of every layer for the positions decoded so far, preallocated to
    ``max_len`` so that a decoding step writes one position instead of concatenating."""

    def __init__(self, n_layers: int, batch: int, heads: int, head_dim: int, max_len: int, device, dtype):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.length = 0  # positions filled, the same for every layer once a step is complete
        self.max_len = max_len


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [B, N, D]``; ``mask`` broadcastable to ``[B, heads, N, keys]``, True = may attend.
        With ``cache``, ``x`` holds the new positions only; their keys and values are stored at
        ``cache.length`` onwards and attention covers every cached position (the caller
        advances ``cache.length`` once all layers ran)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            s = cache.length
            if s + n > cache.max_len:
                raise RuntimeError(f"KV cache holds {cache.max_len} positions, {s + n} asked")
            cache.k[layer][:, :, s : s + n] = k
            cache.v[layer][:, :, s : s + n] = v
            k, v = cache.k[layer][:, :, : s + n], cache.v[layer][:, :, : s + n]
            if causal and n > 1:  # a prefix written in one go: causal within it
                mask = _causal(n, s + n, x.device) if mask is None else mask & _causal(n, s + n, x.device)
            causal = False  # one new position attends to everything cached
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if causal:
                mask = _causal(n, k.shape[2], x.device) if mask is None else mask & _causal(n, k.shape[2], x.device)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
            if causal and mask is not None:  # sdpa takes one or the other
                raise ValueError("pass a causal mask or a padding mask, not both")
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), weights


def _causal(n_new: int, n_total: int, device) -> torch.Tensor:
    """``[n_new, n_total]``: new position i (absolute n_total - n_new + i) sees keys up to itself."""
    rows = torch.arange(n_total - n_new, n_total, device=device)[:, None]
    return torch.arange(n_total, device=device)[None, :] <= rows


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, x, mask=None, causal=False, cache=None, layer=0, need_weights=False):
        a, weights = self.attn(self.norm1(x), mask, causal, cache, layer, need_weights)
        x = x + a
        return x + self.mlp(self.norm2(x)), weights


class Transformer(nn.Module):
    """``depth`` pre-LN blocks and a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, ffn: int):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.blocks = nn.ModuleList(Block(dim, heads, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, mask=None, causal=False, cache=None, last_weights=False):
        """``(output, last layer's attention [B, heads, N, keys] or None)``."""
        weights = None
        for i, block in enumerate(self.blocks):
            x, weights = block(x, mask, causal, cache, i, need_weights=last_weights and i == len(self.blocks) - 1)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x), weights

    def new_cache(self, batch: int, max_len: int, device, dtype=torch.float32) -> KVCache:
        return KVCache(len(self.blocks), batch, self.heads, self.dim // self.heads, max_len, device, dtype)


def padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool of valid keys -> ``[B, 1, 1, N]`` attention mask (every query sees them)."""
    return valid[:, None, None, :].bool()


def sinusoid(n: int, dim: int) -> torch.Tensor:
    """``[n, dim]`` sine/cosine positions (Vaswani et al. 2017), fixed, so a checkpoint does not
    carry them and any length up to the configured maximum is available."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    out = torch.zeros(n, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out.float()
