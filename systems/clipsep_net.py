"""The CLIPSep-NIT separator network (Dong et al., ICLR 2023), in the official key layout.

What the official ``CLIPPITSepV4`` holds (sony/CLIPSep ``clipsep/clipsep.py``):

* ``sound_net``: a U-Net on the log-magnitude spectrogram (input BatchNorm ``bn0``, then
  ``layers`` nested levels under ``unet_block``) giving ``channels`` feature maps;
* ``frame_net``: Linear(512 -> channels) on the CLIP embedding; its sigmoid is the query;
* ``pit_nets``: two Linear(channels -> channels) noise heads, used only in training
  (noise-invariant training); they are loaded, never run, by the text-queried inference;
* ``synth_net``: the mask logit at every time-frequency point,
  ``sum_c query_c * scale_c * feature_c + bias``.

Each U-Net level keeps its layers in one ``nn.Sequential`` named ``model`` at the official
indices, so the parameter names are the checkpoint's (``sound_net.unet_block.model.1.model.3...``).
"""

from __future__ import annotations

import torch
from torch import nn


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)


def _up(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias)


def _upsample() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)


class UNetLevel(nn.Module):
    """One level: a stride-2 convolution down, the deeper levels, an upsampling convolution.

    ``kind`` is "outer" (input to output, no skip), "inner" (the bottom) or "middle". The
    official levels start with an in-place LeakyReLU, which also rewrites the tensor the skip
    connection concatenates: the skip therefore carries the activated input, as here.
    """

    def __init__(self, outer: int, inner: int, kind: str, sub: nn.Module | None = None, in_ch: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "outer":
            layers = [_down(in_ch, inner), sub, nn.ReLU(), _upsample(), _up(2 * inner, outer, bias=True)]
        elif kind == "inner":
            layers = [nn.LeakyReLU(0.2), _down(outer, inner), nn.ReLU(), _upsample(), _up(inner, outer),
                      nn.BatchNorm2d(outer)]  # fmt: skip
        else:
            layers = [nn.LeakyReLU(0.2), _down(outer, inner), nn.BatchNorm2d(inner), sub, nn.ReLU(), _upsample(),
                      _up(2 * inner, outer), nn.BatchNorm2d(outer)]  # fmt: skip
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "outer":
            return self.model(x)
        h = self.model[0](x)
        y = h
        for layer in list(self.model)[1:]:
            y = layer(y)
        return torch.cat([h, y], 1)


class SoundUNet(nn.Module):
    """``layers`` levels: widths ngf, 2ngf, 4ngf, 8ngf, then 8ngf down to the bottom."""

    def __init__(self, out_ch: int = 32, layers: int = 7, ngf: int = 64, in_ch: int = 1):
        super().__init__()
        if layers < 5:
            raise ValueError(f"layers={layers}: the CLIPSep U-Net has at least 5 levels")
        block = UNetLevel(8 * ngf, 8 * ngf, "inner")
        for _ in range(layers - 5):
            block = UNetLevel(8 * ngf, 8 * ngf, "middle", block)
        for width in (4 * ngf, 2 * ngf, ngf):
            block = UNetLevel(width, 2 * width, "middle", block)
        self.bn0 = nn.BatchNorm2d(in_ch)
        self.unet_block = UNetLevel(out_ch, ngf, "outer", block, in_ch=in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet_block(self.bn0(x))


class InnerProduct(nn.Module):
    """Mask logits: the query (``[B, C]``) weighted by ``scale`` against every feature column."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, query: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        b, c = feat.shape[:2]
        # the official batched matrix product: the same summation order, the same float32 rounding
        z = torch.bmm(query.view(b, 1, c) * self.scale, feat.view(b, c, -1))
        return z.view(b, 1, *feat.shape[2:]) + self.bias


class CLIPSepNIT(nn.Module):
    """The separator of CLIPSep-NIT; :meth:`mask_logits` is the query-head path of inference."""

    def __init__(self, channels: int = 32, layers: int = 7, ngf: int = 64, query_dim: int = 512):
        super().__init__()
        self.sound_net = SoundUNet(channels, layers, ngf)
        self.frame_net = nn.Linear(query_dim, channels)
        self.pit_nets = nn.ModuleList([nn.Linear(channels, channels), nn.Linear(channels, channels)])
        self.synth_net = InnerProduct(channels)

    def mask_logits(self, log_mag: torch.Tensor, query_emb: torch.Tensor) -> torch.Tensor:
        """``[B, 1, F, T]`` logits from the (warped) log magnitude and ``[B, 512]`` CLIP embeddings."""
        query = torch.sigmoid(self.frame_net(query_emb))
        return self.synth_net(query, self.sound_net(log_mag))


class DataParallelKeys(nn.Module):
    """The ``module.`` level ``torch.nn.DataParallel`` adds to every key of the official file."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.module = net


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, BatchNorm statistics included, with a scale that keeps the
    activations of a 7-level U-Net finite and varied (for speed runs and comparisons)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim == 1:  # BatchNorm gains, the inner product's scale
                t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
    return net

