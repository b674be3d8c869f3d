"""The multi-scale mel discriminator HSM-TSS trains its TF-Codec with (paper III-E2: "adversarial training with a
multi-scale mel discriminator [19] to replace the original single-scale frequency-domain discriminator in [51]").

Reference [19] of the paper is UniAudio (Yang et al., arXiv 2310.00704). Its codec (yangdongchao/UniAudio at
232e381, ``codec/``) is trained with one discriminator, ``mfd``: ``MultiFrequencyDiscriminator`` with
``mel_scale: true, domain: double`` (``codec/config/codec_16k_6kbps_v3_vqdp.yaml``;
``codec/modules/discriminators/frequency_discriminator.py``; ``codec/modules/commons/torch_stft.py``). This is
that definition, re-implemented:

* one sub-discriminator per hop ``h`` in (32, 64, 128, 256, 512, 1024) samples, with window and FFT size
  ``4 h`` (Hann, centred, reflect padding) and a *normalised* STFT (times ``(4 h)^-1/2``);
* magnitude ``sqrt(max(re^2 + im^2, 1e-7))`` through an HTK mel filterbank with as many bands as FFT bins
  (``4 h / 2 + 1``), 0 Hz to Nyquist, no area normalisation, weights clamped to ``[1e-6, 1]`` (UniAudio's own
  ``create_fb_matrix``; torchaudio's would clamp at 0);
* "double" input: 2 channels, the mel magnitude and its level ``clamp((20 log10(m) - 20 + 100) / 100, 0, 1)``,
  as ``[B, 2, mels, frames]``;
* 7 weight-normalised 3x3 convolutions after a reflection pad of 1, strides 1, 2, 1, 2, 1, 2, 1 (both axes),
  widths ``c/32, c/16, c/8, c/4, c/2, c, 1`` with ``c`` = 64, 128, 256, 512, 512, 512 per scale, LeakyReLU(0.2)
  before every convolution but the first. The last convolution's output is the logit map.
* Feature maps for feature matching: the activations entering convolutions 2-7. (UniAudio stores the
  convolution outputs, but its in-place LeakyReLU then overwrites them, so what it matches are these
  post-activation maps.)

The discriminator never enters HSM-TSS's checkpoint; it lives in the Lightning checkpoint of the codec stage.
:func:`mel_filterbank` also serves the TF-Codec mel reconstruction loss (torchaudio's ``MelScale`` there: the
same HTK triangles, clamped at 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

HOPS = (32, 64, 128, 256, 512, 1024)
CHANNELS = (64, 128, 256, 512, 512, 512)
STRIDES = (1, 2, 1, 2, 1, 2, 1)
WIDTH_DIVISORS = (32, 16, 8, 4, 2, 1)  # of c; the last convolution has one output channel
LEAKY = 0.2
MAG_FLOOR = 1e-7
REF_DB, MIN_DB = 20.0, -100.0


def hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   floor: float = 0.0) -> torch.Tensor:
    """``[n_freqs, n_mels]`` HTK-mel triangles over the bins ``linspace(0, sr // 2, n_freqs)``, peak 1, no
    area normalisation, clamped to ``[floor, 1]`` (torchaudio ``melscale_fbanks(norm=None, mel_scale="htk")``
    for ``floor=0``; UniAudio's ``create_fb_matrix`` for ``floor=1e-6``). Built in float64."""
    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    width = edges[1:] - edges[:-1]
    slope = edges[None, :] - freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -slope[:, :-2] / width[:-1]
    falling = slope[:, 2:] / width[1:]
    return torch.minimum(rising, falling).clamp(floor, 1.0).float()


class MelInput(nn.Module):
    """Wave ``[B, T]`` -> the "double" mel input ``[B, 2, mels, frames]`` of one scale."""

    def __init__(self, hop: int, sample_rate: int):
        super().__init__()
        self.n_fft = 4 * hop
        self.hop = hop
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        fb = mel_filterbank(self.n_fft // 2 + 1, sample_rate, self.n_fft // 2 + 1, floor=1e-6)
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wave.device.type, enabled=False):  # spectra in float32 under mixed precision
            x = wave.float()
            if x.shape[-1] <= self.n_fft // 2:  # reflect padding needs more samples than half a window
                x = F.pad(x, (0, self.n_fft // 2 + 1 - x.shape[-1]))
            spec = torch.stft(x, self.n_fft, self.hop, self.n_fft, self.window, center=True, pad_mode="reflect",
                              normalized=True, return_complex=True)  # fmt: skip
            mag = (spec.real**2 + spec.imag**2).clamp(min=MAG_FLOOR).sqrt()  # [B, F, frames]
            mel = torch.einsum("bft,fm->bmt", mag, self.fb)
            level = ((20 * torch.log10(mel) - REF_DB - MIN_DB) / -MIN_DB).clamp(0.0, 1.0)
            return torch.stack([mel, level], dim=1)


class MelScaleDiscriminator(nn.Module):
    """One scale: :class:`MelInput` then the 7-convolution stack. ``forward`` -> ``(logits [B, 1, m', t'],
    [feature maps])``."""

    def __init__(self, hop: int, channels: int, sample_rate: int = 16000):
        super().__init__()
        if channels % 32:
            raise ValueError(f"discriminator width {channels} must be a multiple of 32")
        self.input = MelInput(hop, sample_rate)
        widths = [2, *(channels // d for d in WIDTH_DIVISORS), 1]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, 3, stride=s)) for c_in, c_out, s in zip(widths[:-1], widths[1:], STRIDES)
        )

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.input(wave)
        features = []
        for i, conv in enumerate(self.convs):
            if i:
                x = F.leaky_relu(x, LEAKY)
                features.append(x)
            x = conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return x, features


class MultiScaleMelDiscriminator(nn.Module):
    """UniAudio's multi-scale mel discriminator: ``forward(wave [B, T])`` -> ``(logits, features)``, one logit
    map and one list of feature maps per scale. ``config`` records the constructor arguments."""

    def __init__(self, hops: tuple[int, ...] = HOPS, channels: tuple[int, ...] = CHANNELS, sample_rate: int = 16000):
        super().__init__()
        hops, channels = tuple(int(h) for h in hops), tuple(int(c) for c in channels)
        if len(hops) != len(channels):
            raise ValueError(f"one width per scale: {len(hops)} hops, {len(channels)} widths")
        self.config = {"hops": list(hops), "channels": list(channels), "sample_rate": int(sample_rate)}
        self.scales = nn.ModuleList(MelScaleDiscriminator(h, c, sample_rate) for h, c in zip(hops, channels))

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outs = [d(wave) for d in self.scales]
        return [o for o, _ in outs], [f for _, f in outs]
