"""HTS-AT, the Swin-transformer audio encoder of MS-CLAP 2023 and LAION-CLAP, on plain torch.

Written from the published description (Chen et al., ICASSP 2022) and from reading the
reference modules (``msclap/models/htsat.py``, ``laion_clap/clap_module/htsat.py``), with
the same module names, so a state dict of those models loads here key for key:

* **Front end** (torchlibrosa layout): ``spectrogram_extractor.stft.conv_real/conv_imag``
  hold the windowed DFT basis as Conv1d weights ``[n_fft/2+1, 1, n_fft]`` (periodic Hann,
  reflect padding of ``n_fft/2``, hop as stride), the power spectrum is
  ``real^2 + imag^2``; ``logmel_extractor.melW`` ``[n_fft/2+1, n_mels]`` is a Slaney mel
  filterbank; ``10 log10(max(mel, 1e-10))`` (ref 1, no top-dB). These are stored in the
  checkpoints, and the checkpoint's values are the ones used (as in the references,
  which load them over their own).
* ``bn0``: BatchNorm over the mel bins. The ``[T, 64]`` log-mel is stretched to
  ``T = 1024`` frames by bicubic interpolation (``align_corners=True``) when shorter and
  folded into a ``256 x 256`` image: four consecutive 256-frame chunks stacked along the
  frequency axis (``reshape_wav2img``).
* ``patch_embed``: 4x4 convolution with stride 4 (64x64 tokens) + LayerNorm.
* ``layers[i]``: Swin stages (``blocks[j]``: pre-norm window attention with a learned
  relative position bias, shifted by half a window in odd blocks with the -100 mask of
  the reference, then a 4x GELU MLP), a patch merging (2x2 neighbours concatenated,
  LayerNorm, bias-free linear ``4C -> 2C``) between stages. A stage whose resolution is
  at most the window size uses one unshifted window over everything.
* ``norm``, then the token-semantic head ``tscam_conv`` / ``head`` (AudioSet logits).
  The **embedding** (the reference's ``latent_output`` / ``embedding``) is the mean over
  all final tokens after ``norm``; the head is only evaluated for ``clipwise`` output.

Eval mode only (no SpecAugment, mixup, dropout or stochastic depth); the reference's
hard-coded sliding-window branch for inputs longer than 1024 frames is not reproduced:
callers feed fixed windows (see :mod:`hsm_bench.embedders.clap_common`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench.audio.stft import mel_filterbank


@dataclass(frozen=True)
class HTSATConfig:
    sample_rate: int = 32000  # the mel filterbank's rate (msclap keeps HTSAT's 32 kHz here)
    n_fft: int = 1024  # = window length
    hop: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    spec_size: int = 256
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    num_classes: int = 527
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.mel_bins


HTSAT_TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32))
HTSAT_BASE = dict(embed_dim=128, depths=(2, 2, 12, 2), num_heads=(4, 8, 16, 32))


# -- front end (torchlibrosa-compatible parameter layout) ---------------------------
class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n = np.arange(n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
        k = np.arange(n_fft // 2 + 1)
        angle = -2 * np.pi * np.outer(k, n) / n_fft  # [bins, samples]
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(np.cos(angle) * window)[:, None, :])
            self.conv_imag.weight.copy_(torch.from_numpy(np.sin(angle) * window)[:, None, :])
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x), self.conv_imag(x)  # [B, bins, frames]


class Spectrogram(nn.Module):
    """Power spectrogram ``[B, 1, frames, bins]``."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)
        return (real**2 + imag**2).transpose(1, 2)[:, None]


class LogMel(nn.Module):
    """``10 log10(max(power @ melW, 1e-10))`` with a Slaney mel filterbank ``melW``."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        melw = mel_filterbank(sample_rate, n_fft, n_mels, float(fmin), float(fmax)).T.contiguous()
        self.melW = nn.Parameter(melw.clone(), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=1e-10))


def float32_front_end(wave: torch.Tensor, spectrogram: nn.Module, logmel: nn.Module, bn0: nn.Module) -> torch.Tensor:
    """``bn0`` of the log-mel of ``wave`` (``[B, 1, frames, mels]``), in float32 even under
    autocast: in bfloat16 (8-bit mantissa) the STFT's rounding noise sits about 50 dB under the
    loudest bins and would replace the quiet bands of the log-mel; on tiny random MS-CLAP
    models this front end alone moved CLAP cosines ten times more than the rest of the network."""
    with torch.autocast(wave.device.type, enabled=False):
        x = logmel(spectrogram(wave.float()))
        return bn0(x.transpose(1, 3)).transpose(1, 3)


# -- Swin transformer -----------------------------------------------------------------
def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, w * w, C] (row-major windows)."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindow(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    x = x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def _relative_position_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]  # [w*w, w*w]


def _shift_mask(h: int, wd: int, w: int, shift: int) -> torch.Tensor:
    """Additive mask [nW, w*w, w*w]: 0 within a region of the rolled image, -100 across."""
    region = torch.zeros(1, h, wd, 1)
    cuts = (slice(0, -w), slice(-w, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for ws in cuts:
            region[:, hs, ws, :] = label
            label += 1
    ids = _windows(region, w)[..., 0]  # [nW, w*w]
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: [B * nW, n, C] windows ordered (batch, window); ``mask``: [nW, n, n] or None."""
        bw, n, c = x.shape
        nw = 1 if mask is None else mask.shape[0]
        q, k, v = self.qkv(x).view(bw // nw, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        add = bias.view(n, n, self.heads).permute(2, 0, 1)  # [heads, n, n]
        if mask is not None:
            add = add[None] + mask[:, None]  # [nW, heads, n, n], broadcast over the batch
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=add.to(q.dtype))  # [B, nW, heads, n, d]
        return self.proj(out.transpose(2, 3).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # one window covers the whole stage
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift > 0:
            self.register_buffer("attn_mask", _shift_mask(*resolution, window, shift))
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = _unwindow(self.attn(_windows(y, self.window), self.attn_mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(self, dim, resolution, depth, heads, window, mlp_ratio, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio) for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """The HTS-AT encoder; ``forward(wave [B, T]) -> {"embedding": [B, C], ...}``."""

    def __init__(self, cfg: HTSATConfig):
        super().__init__()
        if cfg.spec_size % cfg.mel_bins or cfg.freq_ratio < 1:
            raise ValueError("spec_size must be a multiple of mel_bins")
        self.cfg = cfg
        self.spectrogram_extractor = Spectrogram(cfg.n_fft, cfg.hop)
        self.logmel_extractor = LogMel(cfg.sample_rate, cfg.n_fft, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        grid = cfg.spec_size // cfg.patch_size
        n = len(cfg.depths)
        self.layers = nn.ModuleList(
            Stage(
                cfg.embed_dim * 2**i, (grid // 2**i, grid // 2**i), cfg.depths[i], cfg.num_heads[i],
                cfg.window_size, cfg.mlp_ratio, downsample=i < n - 1,
            )  # fmt: skip
            for i in range(n)
        )
        self.norm = nn.LayerNorm(cfg.num_features)
        final = cfg.spec_size // 2 ** (n - 1) // cfg.patch_size
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.num_classes, kernel_size=(final // cfg.freq_ratio, 3), padding=(0, 1))
        self.head = nn.Linear(cfg.num_classes, cfg.num_classes)
        self.apply(_init)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` waveform -> ``[B, 1, frames, mel_bins]`` normalised log-mel."""
        return float32_front_end(wave, self.spectrogram_extractor, self.logmel_extractor, self.bn0)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, F]`` -> ``[B, 1, spec, spec]`` (bicubic stretch to 1024 frames, fold)."""
        cfg = self.cfg
        target_t = cfg.spec_size * cfg.freq_ratio
        b, c, t, f = x.shape
        if t > target_t or f > cfg.mel_bins:
            raise ValueError(f"HTSAT takes at most {target_t} frames ({t} given): feed fixed windows")
        if t < target_t:
            x = F.interpolate(x, (target_t, f), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).reshape(b, c, f, cfg.freq_ratio, cfg.spec_size)
        return x.permute(0, 1, 3, 2, 4).reshape(b, c, cfg.freq_ratio * f, cfg.spec_size)

    def forward(self, wave: torch.Tensor, clipwise: bool = False) -> dict[str, torch.Tensor]:
        x = self.patch_embed(self.to_image(self.logmel(wave)))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # [B, N, C]
        out = {"embedding": x.mean(dim=1)}
        if clipwise:
            out["clipwise_output"] = torch.sigmoid(self._tscam(x))
        return out

    def _tscam(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, n, c = x.shape
        side = int(round(n**0.5))
        x = x.transpose(1, 2).reshape(b, c, side, side)
        bins = side // cfg.freq_ratio  # regroup the four stacked chunks along time
        x = x.reshape(b, c, cfg.freq_ratio, bins, side).permute(0, 1, 3, 2, 4).reshape(b, c, bins, -1)
        return self.tscam_conv(x).flatten(2).mean(dim=2)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
