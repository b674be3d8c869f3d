"""Mixing two sources at a given SNR: the DCASE 2024 task 9 arithmetic.

As ``dcase2024_task9_baseline/dcase_evaluator.py`` does it: the interferer is scaled so
that ``mean(target^2) / mean((g * interferer)^2) = 10^(snr / 10)`` over the whole window;
``mixture = target + g * interferer``; if the mixture peak exceeds 1, target and mixture
are scaled together so that the mixture peak is 0.9. We scale the interferer by the same
factor too, so the three written stems still satisfy ``mixture = target + interferer``
and the SNR measured on them is the requested one. Because stems are stored as 16-bit
PCM, a stem whose own peak would reach 1 (possible when target and interferer cancel in
the mixture) scales all three by one more recorded factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PEAK_TARGET = 0.9
MIN_POWER = 1e-8  # mean power below this (about -80 dBFS) counts as silence


class SilentSourceError(ValueError):
    pass


@dataclass
class Mix:
    mixture: np.ndarray
    target: np.ndarray
    interferer: np.ndarray
    snr_db: float
    interferer_gain: float  # g, before peak protection
    peak_scale: float  # factor applied to all stems (1.0 if none)

    def gains(self) -> dict[str, float]:
        return {
            "target": self.peak_scale,
            "interferer": self.interferer_gain * self.peak_scale,
            "peak_scale": self.peak_scale,
        }


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def mix_at_snr(target: np.ndarray, interferer: np.ndarray, snr_db: float, stem_peak_limit: float = 0.999) -> Mix:
    t = np.asarray(target, dtype=np.float64)
    n = np.asarray(interferer, dtype=np.float64)
    if t.shape != n.shape:
        raise ValueError(f"target and interferer differ in shape: {t.shape} vs {n.shape}")
    pt, pn = power(t), power(n)
    if pt < MIN_POWER or pn < MIN_POWER:
        raise SilentSourceError(f"source power too low to set an SNR (target {pt:.2e}, interferer {pn:.2e})")
    g = float(np.sqrt(pt / (pn * 10.0 ** (snr_db / 10.0))))
    n = g * n
    mix = t + n
    scale = 1.0
    peak = float(np.max(np.abs(mix)))
    if peak > 1.0:
        scale = PEAK_TARGET / peak
    stem_peak = max(float(np.max(np.abs(t))), float(np.max(np.abs(n))), peak) * scale
    if stem_peak > stem_peak_limit:
        scale *= PEAK_TARGET / stem_peak
    return Mix(
        mixture=(mix * scale).astype(np.float32),
        target=(t * scale).astype(np.float32),
        interferer=(n * scale).astype(np.float32),
        snr_db=float(snr_db),
        interferer_gain=g,
        peak_scale=scale,
    )


def measured_snr_db(target: np.ndarray, interferer: np.ndarray) -> float:
    return float(10 * np.log10(power(target) / power(interferer)))


def crop_or_pad(x: np.ndarray, length: int, offset: int) -> np.ndarray:
    """``length`` samples from ``offset``; shorter sources are zero-padded at the end."""
    seg = np.asarray(x[offset : offset + length], dtype=np.float32)
    if len(seg) < length:
        seg = np.pad(seg, (0, length - len(seg)))
    return seg
