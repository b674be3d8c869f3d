"""CLIPSep's signal path at inference, as sony/CLIPSep ``clipsep/infer.py`` runs it.

* Tiling (``load_data``): a clip of N samples is repeated and cut to 65535 * (N // 65535 + 1)
  samples (always longer than the clip), then clipped to [-1, 1]. 65535 * k samples give
  256 * k STFT frames, which the 7 stride-2 levels of the U-Net halve evenly.
* STFT: ``librosa.stft`` of the pinned librosa 0.9.2 (``environment.yml``): periodic Hann
  window of 1024, hop 256, centred frames with **zero** padding (0.9.2's default
  ``pad_mode="constant"``), computed in float64 and stored as complex64.
* The magnitude gets 1e-10 and is resampled to 256 log-spaced frequency rows with
  ``grid_sample`` on the grid of ``utils.warpgrid``; the mask comes back to 513 rows on the
  inverse grid (``infer.recover_wav``).
* Reconstruction (``utils.istft_reconstruction``): the masked float32 magnitude times the
  mixture's unit phasor (taken in complex64, as numpy promotes ``1j * float32``), inverted
  with ``librosa.istft`` in float64, then clipped to [-1, 1] and cast to float32. The clip is
  part of the official reconstruction (evaluation scores the clipped signal too), not a saver step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

N_FFT = 1024
HOP = 256
TILE = 65535  # samples of one training clip
WARP_ROWS = 256


def tiled_length(n: int) -> int:
    return TILE * (n // TILE + 1)


def tile(x: torch.Tensor) -> torch.Tensor:
    """The clip repeated to :func:`tiled_length` samples and clipped to [-1, 1]."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("empty input")
    total = tiled_length(n)
    reps = -(-total // n)
    return x.repeat(reps)[:total].clamp(-1.0, 1.0)


def _window(device: torch.device) -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=device)


def stft(x: torch.Tensor) -> torch.Tensor:
    """``[F=513, T]`` complex64 STFT of a 1-D float32 signal."""
    spec = torch.stft(x.double(), N_FFT, HOP, N_FFT, window=_window(x.device), center=True, pad_mode="constant",
                      return_complex=True)  # fmt: skip
    return spec.to(torch.complex64)


def warp_grid(rows: int, frames: int, inverse: bool = False) -> np.ndarray:
    """``[1, rows, frames, 2]`` float32 sampling grid: to log-spaced rows, or back (``inverse``).

    Row coordinate v in [-1, 1] reads the linear axis at (21 ** ((v + 1) / 2) - 11) / 10; the
    inverse maps u to log(10 u + 11) / log(21) * 2 - 1. Computed in float64, then cast.
    """
    x = np.linspace(-1, 1, frames)
    y = np.linspace(-1, 1, rows)
    gy = np.log(y * 10 + 11) / np.log(21) * 2 - 1 if inverse else (np.power(21, (y + 1) / 2) - 11) / 10
    grid = np.zeros((1, rows, frames, 2))
    grid[..., 0] = x[None, :]
    grid[..., 1] = gy[:, None]
    return grid.astype(np.float32)


def _resample_rows(t: torch.Tensor, rows: int, inverse: bool) -> torch.Tensor:
    grid = torch.from_numpy(warp_grid(rows, t.shape[-1], inverse)).to(t.device).expand(t.shape[0], -1, -1, -1)
    return F.grid_sample(t, grid, align_corners=True)


def warp(mag: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 513, T]`` magnitude -> ``[B, 1, 256, T]`` on the log-frequency rows."""
    return _resample_rows(mag, WARP_ROWS, inverse=False)


def unwarp(mask: torch.Tensor) -> torch.Tensor:
    """``[B, 1, 256, T]`` mask -> ``[B, 1, 513, T]`` on the linear frequency bins."""
    return _resample_rows(mask, N_FFT // 2 + 1, inverse=True)


def masked_istft(mag: torch.Tensor, mask: torch.Tensor, phase: torch.Tensor, length: int) -> torch.Tensor:
    """Float32 signal of ``length`` samples from ``[513, T]`` magnitude, mask and phase.

    librosa's ``istft`` without ``length`` stops at hop * (T - 1) samples; a clip within 256
    samples of a multiple of 65535 is longer than that, and its last samples come from the
    same overlap-add (the official output simply ends earlier there).
    """
    spec = (mag * mask).to(torch.complex128) * torch.exp(1j * phase).to(torch.complex128)
    y = torch.istft(spec, N_FFT, HOP, N_FFT, window=_window(mag.device), center=True, length=length)
    return y.clamp(-1.0, 1.0).float()
