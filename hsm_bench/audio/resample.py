"""The one resampler of the harness.

soxr in "VHQ" mode, single-threaded, on float64. Every stage (test-set building, feeding
systems, bringing outputs back, metrics without a reference-specific resampler) uses this
function, so a number never depends on which stage happened to resample. A metric that
reproduces a reference with a different resampler does so itself and says so.
"""

from __future__ import annotations

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
