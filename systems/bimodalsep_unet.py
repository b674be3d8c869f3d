"""BiModalSep's conditional attention U-Net (``CondAttUNet`` with ``cond_layer=sca``) and its
inner-product synthesizer, with the module names of the official checkpoint.

Layout (``num_downs`` levels, widths from ``ngf``; the released model: ngf 64, 7 levels,
32 output channels, one residual layer and one attention block per conditioned level,
8 heads, conditioning tokens of width 768)::

    bn0 -> outer (1 -> ngf) -> ngf -> 2 ngf -> 4 ngf -> 8 ngf
        -> (num_downs - 5) x "bottom" level (8 ngf, attention after the down path)
        -> innermost level (8 ngf, attention) -> back up, concatenating skips

Every level goes down with a 4x4 stride-2 convolution, BatchNorm, LeakyReLU(0.2) and a
residual block, and up with bilinear x2 (corners aligned), a residual block and a 3x3
convolution (then BatchNorm and ReLU, except at the outer level, whose convolution has a
bias and ends the network). A conditioned level applies ``SCABlock``\\ s at its bottom:
pre-norm self-attention and MLP over the spectrogram positions, then pre-norm
cross-attention from the positions to every conditioning token (no padding mask: the
official model attends to padded tokens too) and MLP. Each ``SCABlock`` also owns a
LayerNorm ``norm1`` it never uses; it is kept for the checkpoint's key set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench.embedders.htsat import Mlp  # fc1 -> GELU -> fc2, the official key names


class ResBlock(nn.Module):
    """``n_layers`` x (3x3 conv + BN, LeakyReLU between layers), residual add, LeakyReLU."""

    def __init__(self, ch: int, n_layers: int):
        super().__init__()
        layers = []
        for i in range(n_layers):
            layer = [nn.Conv2d(ch, ch, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(ch)]
            if i < n_layers - 1:
                layer.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Sequential(*layer))
        self.res_layers = nn.Sequential(*layers) if n_layers else nn.Identity()
        self.n_layers = n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.n_layers:
            return x
        return F.leaky_relu(self.res_layers(x) + x, 0.2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``[B, heads, N, d]`` queries against ``[B, heads, M, d]`` keys and values."""
    return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v


def _heads(x: torch.Tensor, n: int, heads: int) -> torch.Tensor:
    """``[B, L, n * D]`` -> ``n`` x ``[B, heads, L, D / heads]`` (a fused q/k/v projection)."""
    b, length, width = x.shape
    return x.reshape(b, length, n, heads, width // n // heads).permute(2, 0, 3, 1, 4).unbind(0)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads(self.qkv(x), 3, self.heads)
        out = _attend(q, k, v, self.scale)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, cond_dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(cond_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        (q,) = _heads(self.q(x), 1, self.heads)
        k, v = _heads(self.kv(cond), 2, self.heads)
        out = _attend(q, k, v, self.scale)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, H*W, C]


def _grid(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).reshape(like.shape)


class SABlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = _tokens(x)
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return _grid(t, x)


class CABlock(nn.Module):
    def __init__(self, dim: int, cond_dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, cond_dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = _tokens(x)
        t = t + self.attn(self.norm1(t), cond)
        t = t + self.mlp(self.norm2(t))
        return _grid(t, x)


class SCABlock(nn.Module):
    def __init__(self, dim: int, cond_dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)  # unused by the official forward; present in its checkpoints
        self.sa_block = SABlock(dim, heads)
        self.ca_block = CABlock(dim, cond_dim, heads)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.ca_block(self.sa_block(x), cond)


class Level(nn.Module):
    """One U-Net level. ``kind``: "outer" (network input/output), "middle", "bottom"
    (conditioned, with a deeper level inside) or "inner" (conditioned, deepest)."""

    def __init__(self, kind: str, outer: int, inner: int, *, in_ch: int | None = None,
                 submodule: nn.Module | None = None, res_layers: int = 1, cond_dim: int = 768,
                 heads: int = 8, cond_blocks: int = 1):  # fmt: skip
        super().__init__()
        self.kind = kind
        self.submodule = submodule
        up_ch = inner if kind == "inner" else 2 * inner  # a deeper level returns [skip, its output]
        self.downconv = nn.Conv2d(in_ch or outer, inner, kernel_size=4, stride=2, padding=1, bias=False)
        self.downnorm = nn.BatchNorm2d(inner)
        self.downresblock = ResBlock(inner, res_layers)
        if kind in ("bottom", "inner"):
            self.ca_blocks = nn.Sequential(*[SCABlock(inner, cond_dim, heads) for _ in range(cond_blocks)])
        self.upresblock = ResBlock(up_ch, res_layers)
        self.upconv = nn.Conv2d(up_ch, outer, kernel_size=3, padding=1, bias=kind == "outer")
        if kind != "outer":
            self.upnorm = nn.BatchNorm2d(outer)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.downresblock(F.leaky_relu(self.downnorm(self.downconv(x)), 0.2))
        if self.kind in ("bottom", "inner"):
            for block in self.ca_blocks:
                y = block(y, cond)
        if self.submodule is not None:
            y = self.submodule(y, cond)
        y = self.upconv(self.upresblock(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)))
        if self.kind == "outer":
            return y
        return torch.cat([x, F.relu(self.upnorm(y))], 1)


class CondAttUNet(nn.Module):
    """``log1p|X| [B, 1, F, T]`` and conditioning tokens ``[B, L, cond_dim]`` -> ``[B, out, F, T]``.

    ``F`` and ``T`` must be divisible by ``2 ** num_downs``."""

    def __init__(self, out_ch: int = 32, ngf: int = 64, num_downs: int = 7, res_layers: int = 1,
                 cond_blocks: int = 1, heads: int = 8, cond_dim: int = 768):  # fmt: skip
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs={num_downs}: the conditioned U-Net has at least 5 levels")
        cond = dict(res_layers=res_layers, cond_dim=cond_dim, heads=heads, cond_blocks=cond_blocks)
        level = Level("inner", 8 * ngf, 8 * ngf, **cond)
        for _ in range(num_downs - 5):
            level = Level("bottom", 8 * ngf, 8 * ngf, submodule=level, **cond)
        for outer, inner in ((4 * ngf, 8 * ngf), (2 * ngf, 4 * ngf), (ngf, 2 * ngf)):
            level = Level("middle", outer, inner, submodule=level, res_layers=res_layers)
        self.unet_block = Level("outer", out_ch, ngf, in_ch=1, submodule=level, res_layers=res_layers)
        self.bn0 = nn.BatchNorm2d(1)
        self.num_downs = num_downs

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet_block(self.bn0(x), cond)


class InnerProd(nn.Module):
    """Mask logits: per-channel scaled inner product of the query vector ``[B, C]`` with the
    U-Net features ``[B, C, F, T]``, plus a bias -> ``[B, 1, F, T]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, query: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        b, c = feats.shape[:2]
        z = torch.bmm((query * self.scale).view(b, 1, c), feats.reshape(b, c, -1))
        return z.view(b, 1, *feats.shape[2:]) + self.bias
