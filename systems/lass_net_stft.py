"""LASS-Net's short-time Fourier transform, as its separator was trained with.

The official model (liuxubo717/LASS, ``utils/stft.py``) does not call ``torch.stft``: it
convolves the reflect-padded signal with a windowed real/imaginary DFT basis (filter and
window 1024, hop 512, periodic Hann, 512 samples of reflect padding on each side) and
inverts with the pseudo-inverse of that basis, overlap-added and divided by the summed
squared window wherever that sum is above the smallest float32 normal, then drops 512
samples at both ends. The output therefore has ``hop * (frames - 1)`` samples: the input
length rounded down to a multiple of 512.

The pseudo-inverse of the stacked real/imaginary DFT basis is the inverse real DFT (the
imaginary rows of the DC and Nyquist bins are identically zero, so they are ignored), which
is written out here in closed form instead of taking a 1024 x 1026 SVD; the float32 bases
agree with ``numpy.linalg.pinv`` to rounding. The magnitude and phase are computed as the
official code does (``sqrt(re^2 + im^2)``, ``atan2``) and recombined with cos/sin, so the
masked spectrum takes the same float32 path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

N_FFT = 1024
HOP = 512


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def dft_bases(n_fft: int = N_FFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed analysis basis ``[2K, 1, N]`` and synthesis basis ``[2K, 1, N]``, K = N/2 + 1.

    Rows 0..K-1 give the real parts, rows K..2K-1 the imaginary parts (``X_k = sum x_n e^{-2 pi i k n / N}``).
    """
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    angle = 2 * np.pi * ((k * n) % n_fft) / n_fft  # reduced first: exact angles for large k*n
    analysis = np.concatenate([np.cos(angle), -np.sin(angle)])
    # inverse real DFT: interior bins count twice (their conjugates are not stored)
    weight = np.full((n_fft // 2 + 1, 1), 2.0)
    weight[0] = weight[-1] = 1.0
    synthesis = np.concatenate([weight * np.cos(angle), -weight * np.sin(angle)]) / n_fft
    window = torch.from_numpy(hann(n_fft)).float()
    fwd = torch.from_numpy(analysis).float()[:, None, :] * window
    inv = torch.from_numpy(synthesis).float()[:, None, :] * window
    return fwd, inv


def window_sumsquare(n_frames: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Overlap-added squared window, accumulated in float32 frame by frame like librosa 0.6's."""
    sq = hann(n_fft) ** 2
    out = np.zeros(n_fft + hop * (n_frames - 1), dtype=np.float32)
    for i in range(n_frames):
        out[i * hop : i * hop + n_fft] += sq
    return out


class ConvSTFT(torch.nn.Module):
    """Magnitude/phase analysis and resynthesis with LASS-Net's conv STFT."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        fwd, inv = dft_bases(n_fft)
        self.register_buffer("forward_basis", fwd, persistent=False)
        self.register_buffer("inverse_basis", inv, persistent=False)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T]`` -> magnitude and phase ``[B, K, frames]``, frames = 1 + T // hop."""
        pad = self.n_fft // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")
        spec = F.conv1d(x, self.forward_basis, stride=self.hop)
        k = self.n_fft // 2 + 1
        re, im = spec[:, :k], spec[:, k:]
        return torch.sqrt(re**2 + im**2), torch.atan2(im, re)

    def inverse(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """``[B, K, frames]`` -> ``[B, hop * (frames - 1)]``."""
        spec = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        y = F.conv_transpose1d(spec, self.inverse_basis, stride=self.hop)[:, 0]
        wss = torch.from_numpy(window_sumsquare(magnitude.shape[-1], self.n_fft, self.hop)).to(y.device)
        # samples no frame covers keep their (zero) value instead of a division by ~0
        y = torch.where(wss > np.finfo(np.float32).tiny, y / wss, y)
        pad = self.n_fft // 2
        return y[:, pad:-pad]
