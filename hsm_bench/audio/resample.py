"""The one resampler of the harness, and the reference-compatible one metrics may need.

:func:`resample` is the harness's one resampler: soxr in "VHQ" mode, single-threaded, on
float64. Every stage (test-set building, feeding systems, bringing outputs back, metrics
without a reference-specific resampler) uses it, so a number never depends on which stage
happened to resample.

:func:`torchaudio_resample` is not a second harness resampler: it re-implements
``torchaudio.transforms.Resample``'s default windowed sinc for metrics that reproduce a
torchaudio-based reference (msclap's ``read_audio``, CLAPScore_for_LASS, audioldm-eval's
loader), where the reference's own resampling is part of the number. A metric that uses it
says so in its definition. torch is imported only when it runs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

RESAMPLER_ID = "soxr-vhq"  # recorded in run.json and test-set cards


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``audio`` ([T] or [C, T], channels first) from ``orig_sr`` to ``target_sr``."""
    if orig_sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    import soxr  # imported here: only resampling paths need it

    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        y = soxr.resample(x, orig_sr, target_sr, quality="VHQ")
    elif x.ndim == 2:
        y = soxr.resample(x.T, orig_sr, target_sr, quality="VHQ").T
    else:
        raise ValueError(f"expected [T] or [C, T] audio, got shape {x.shape}")
    return np.ascontiguousarray(y, dtype=np.float32)


def resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Number of samples soxr returns for ``n`` input samples."""
    if orig_sr == target_sr:
        return n
    return int(round(n * target_sr / orig_sr))


def torchaudio_resample(x: np.ndarray, orig_sr: int, new_sr: int, kernel: str = "transform") -> np.ndarray:
    """torchaudio's default windowed-sinc resampler with its defaults, on torch alone.

    The rates are reduced by their gcd to ``o -> n``; the cutoff is ``min(o, n) * 0.99``
    (rolloff) in units of the reduced rate; each of the ``n`` output phases has a kernel
    over ``2 w + o`` input taps, ``w = ceil(6 o / cutoff)``: ``sinc(pi t) * cos(pi t / 12)^2
    * cutoff / o`` with ``t = (tap / o - phase / n) * cutoff`` clamped to [-6, 6] (Hann
    window, 6 zero crossings), applied in float32 as a strided convolution over the signal
    zero-padded by ``w`` before and ``w + o`` after; the output keeps ``ceil(n * len / o)``
    samples.

    torchaudio builds that kernel in two precisions, and the references differ in which one
    they use, so ``kernel`` chooses:

    * ``"transform"``: ``torchaudio.transforms.Resample(o, n)`` (msclap, CLAPScore_for_LASS):
      the taps in float64, the phase term in float32, the kernel rounded to float32 at the end;
    * ``"functional"``: ``torchaudio.functional.resample`` on a float32 waveform
      (audioldm-eval's loaders): every step in float32, in torchaudio's order of operations.
      The two differ by about 1e-5 per sample.
    """
    if orig_sr == new_sr:
        return np.asarray(x, dtype=np.float32)
    if kernel not in ("transform", "functional"):
        raise ValueError(f"kernel must be 'transform' or 'functional', got {kernel!r}")
    import torch

    g = math.gcd(int(orig_sr), int(new_sr))
    o, n = int(orig_sr) // g, int(new_sr) // g
    weights, w = _sinc_kernel(o, n, kernel == "functional")
    wave = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, 1, -1)
    out = torch.nn.functional.conv1d(torch.nn.functional.pad(wave, (w, w + o)), weights, stride=o)
    out = out.transpose(1, 2).reshape(-1)
    return out[: math.ceil(n * len(x) / o)].numpy()


@lru_cache(maxsize=8)
def _sinc_kernel(o: int, n: int, float32: bool = False):
    import torch

    cutoff = min(o, n) * 0.99
    zeros = 6
    w = math.ceil(zeros * o / cutoff)
    taps = torch.arange(-w, w + o, dtype=torch.float32 if float32 else torch.float64)[None, None] / o
    # the phase term: float32 in both of torchaudio's paths (an integer range divided by n)
    phase = torch.arange(0, -n, -1, dtype=torch.float32 if float32 else None)[:, None, None] / n
    t = (phase + taps) * cutoff  # [n, 1, 2w + o]
    t = t.clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.tensor(1.0).to(t), torch.sin(t) / t)
    kernel = sinc * (window * (cutoff / o))  # torchaudio's association: kernels *= window * scale
    return (kernel if float32 else kernel.float()), w
