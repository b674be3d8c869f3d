"""The convolutional STFT and ISTFT AudioSep's ResUNet30 runs (torchlibrosa 0.1.0 ``STFT``/``ISTFT``).

The official model keeps the DFT as frozen ``Conv1d`` kernels, saved in its checkpoint
(``ss_model.base.stft.conv_{real,imag}.weight``, ``ss_model.base.istft.conv_{real,imag}.weight``,
``ss_model.base.istft.ola_window``). These modules have the same tensors under the same names
and compute with them the way torchlibrosa does, so a loaded checkpoint gives the official
numbers, not merely an equivalent transform:

* STFT: reflect-pad ``n_fft // 2`` on both sides (centred frames), convolve with the windowed
  DFT rows at stride ``hop``; returns real and imaginary parts ``[B, 1, frames, n_fft/2 + 1]``.
* ISTFT: rebuild the full spectrum from the half spectrum by conjugate symmetry, inverse DFT per
  frame as a 1x1 convolution with window-weighted kernels, overlap-add (``F.fold``), divide by the
  overlap-added squared window (clamped at 1e-11), cut ``n_fft // 2`` samples of centring and keep
  ``length`` samples.

The window is the periodic Hann (librosa ``get_window('hann', n, fftbins=True)``). Kernels built
here (random-weight models, tests) are computed in float64 before the float32 cast; a checkpoint
brings the official float32 values.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


@functools.lru_cache(maxsize=4)
def dft_kernels(n: int) -> dict[str, np.ndarray]:
    """float32 kernels of an ``n``-point transform (cached: a 2048-point set takes a second)."""
    window = periodic_hann(n)
    # index products reduced modulo n first: the angle stays exact for large products
    phase = 2.0 * np.pi * (np.outer(np.arange(n // 2 + 1), np.arange(n)) % n) / n
    out = {"stft_real": np.cos(phase) * window, "stft_imag": -np.sin(phase) * window}
    # row p (output sample) mixes bins q: window[p] * exp(+2 pi i p q / n) / n
    phase = 2.0 * np.pi * (np.outer(np.arange(n), np.arange(n)) % n) / n
    out.update(istft_real=np.cos(phase) / n * window[:, None], istft_imag=np.sin(phase) / n * window[:, None],
               ola_window=window**2)  # fmt: skip
    return {k: v.astype(np.float32) for k, v in out.items()}


def _frozen(t: torch.Tensor, n: int, key: str) -> None:
    """Fix a kernel to its DFT values (left empty on the meta device)."""
    t.requires_grad_(False)
    if t.device.type != "meta":
        with torch.no_grad():
            t.copy_(torch.from_numpy(dft_kernels(n)[key]).reshape(t.shape))


class ConvSTFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(hop)
        bins = self.n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, self.n_fft, stride=self.hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, self.n_fft, stride=self.hop, bias=False)
        _frozen(self.conv_real.weight, self.n_fft, "stft_real")
        _frozen(self.conv_imag.weight, self.n_fft, "stft_imag")

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]`` -> real, imaginary ``[B, 1, frames, bins]``."""
        x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real = self.conv_real(x)[:, None].transpose(2, 3)
        imag = self.conv_imag(x)[:, None].transpose(2, 3)
        return real, imag


class ConvISTFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(hop)
        n = self.n_fft
        self.conv_real = nn.Conv1d(n, n, 1, bias=False)
        self.conv_imag = nn.Conv1d(n, n, 1, bias=False)
        _frozen(self.conv_real.weight, n, "istft_real")
        _frozen(self.conv_imag.weight, n, "istft_imag")
        self.register_buffer("ola_window", torch.empty(n))
        _frozen(self.ola_window, n, "ola_window")

    def forward(self, real: torch.Tensor, imag: torch.Tensor, length: int) -> torch.Tensor:
        """real, imaginary ``[B, 1, frames, bins]`` -> ``[B, length]``."""
        frames = real.shape[2]
        real = real[:, 0].transpose(1, 2)
        imag = imag[:, 0].transpose(1, 2)
        full_real = torch.cat((real, torch.flip(real[:, 1:-1], dims=[1])), dim=1)
        full_imag = torch.cat((imag, -torch.flip(imag[:, 1:-1], dims=[1])), dim=1)
        frames_time = self.conv_real(full_real) - self.conv_imag(full_imag)
        n_out = (frames - 1) * self.hop + self.n_fft
        fold = {"output_size": (1, n_out), "kernel_size": (1, self.n_fft), "stride": (1, self.hop)}
        y = F.fold(frames_time, **fold)[:, 0, 0, :]
        envelope = F.fold(self.ola_window[None, :, None].repeat(1, 1, frames), **fold).squeeze()
        y = y / torch.clamp(envelope, 1e-11, np.inf)[None, :]
        start = self.n_fft // 2
        return y[:, start : start + length]
