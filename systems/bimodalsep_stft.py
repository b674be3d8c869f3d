"""The STFT / ISTFT pair BiModalSep was trained with: torchlibrosa 0.1.0's convolutional
transforms (periodic Hann window, centred, reflect padding), reproduced number for number.

The official ``NetWrapper`` holds torchlibrosa ``STFT`` / ``ISTFT`` modules as ``stft`` and
``istft``, so a saved ``state_dict`` carries their kernels (``stft.conv_real.weight``
``[F, 1, n_fft]``, ``istft.conv_real.weight`` ``[n_fft, n_fft, 1]``, ``istft.ola_window``):
the modules here have the same names and shapes, and build the same float32 values the way
torchlibrosa does (complex powers of the DFT root in float64, times the window, cast once),
so kernels loaded from a checkpoint and kernels built here agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def hann(n: int) -> np.ndarray:
    """Periodic Hann window in float64, from scipy (which librosa's ``get_window`` calls)."""
    from scipy.signal import get_window

    return get_window("hann", n, fftbins=True)


def _dft_powers(n: int, sign: float) -> np.ndarray:
    # torchlibrosa raises the root of unity to the integer powers j*k (rather than taking
    # cos/sin of the angles); the tiny float64 differences survive the float32 cast
    idx = np.arange(n)
    return np.power(np.exp(sign * 2j * np.pi / n), idx[:, None] * idx[None, :])


def _conv1d(c_in: int, c_out: int, kernel: int, stride: int, weight: np.ndarray) -> nn.Conv1d:
    conv = nn.Conv1d(c_in, c_out, kernel_size=kernel, stride=stride, bias=False)
    conv.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32), requires_grad=False)
    return conv


class ConvSTFT(nn.Module):
    """``x [B, T]`` -> ``(real, imag)``, each ``[B, 1, frames, n_fft // 2 + 1]``."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        framed = _dft_powers(n_fft, -1.0)[:, :bins] * hann(n_fft)[:, None]  # [n_fft, bins]
        self.conv_real = _conv1d(1, bins, n_fft, hop, np.real(framed).T[:, None, :])
        self.conv_imag = _conv1d(1, bins, n_fft, hop, np.imag(framed).T[:, None, :])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x)[:, None].transpose(2, 3), self.conv_imag(x)[:, None].transpose(2, 3)


class ConvISTFT(nn.Module):
    """``(real, imag)`` as :class:`ConvSTFT` returns them -> ``[B, length]``: inverse DFT of
    each frame, windowed overlap-add, division by the summed squared window (floored at
    1e-11), and the centring padding cut off."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        window = hann(n_fft)
        synth = _dft_powers(n_fft, 1.0) / n_fft * window[None, :]
        self.conv_real = _conv1d(n_fft, n_fft, 1, 1, np.real(synth).T[:, :, None])
        self.conv_imag = _conv1d(n_fft, n_fft, 1, 1, np.imag(synth).T[:, :, None])
        self.register_buffer("ola_window", torch.as_tensor(window**2, dtype=torch.float32))

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        n = (frames.shape[-1] - 1) * self.hop + self.n_fft
        return F.fold(frames, output_size=(1, n), kernel_size=(1, self.n_fft), stride=(1, self.hop))[:, 0, 0, :]

    def forward(self, real: torch.Tensor, imag: torch.Tensor, length: int) -> torch.Tensor:
        real, imag = real[:, 0].transpose(1, 2), imag[:, 0].transpose(1, 2)  # [B, bins, frames]
        # the negative frequencies of a real signal: mirrored, conjugated
        full_real = torch.cat((real, torch.flip(real[:, 1:-1, :], dims=[1])), dim=1)
        full_imag = torch.cat((imag, -torch.flip(imag[:, 1:-1, :], dims=[1])), dim=1)
        frames = self.conv_real(full_real) - self.conv_imag(full_imag)  # [B, n_fft, frames]
        y = self._overlap_add(frames)
        n_frames = frames.shape[-1]
        norm = self._overlap_add(self.ola_window[None, :, None].repeat(1, 1, n_frames)).squeeze()
        y = y / torch.clamp(norm, 1e-11, np.inf)[None, :]
        start = self.n_fft // 2
        return y[:, start : start + length]


def magphase(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Magnitude, cosine and sine of the phase, as torchlibrosa computes them."""
    mag = (real**2 + imag**2) ** 0.5
    floor = torch.clamp(mag, 1e-10, np.inf)
    return mag, real / floor, imag / floor
