"""Shared finishing of demo sources: length, noise floor, level."""

from __future__ import annotations

import numpy as np

RATE = 16000
MIN_SECONDS = 10.0
FLOOR_DBFS = -60.0  # RMS of the added noise floor
PEAK = 0.9


def noise_floor(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gently low-passed noise at -60 dBFS RMS: the room tone every real recording has.

    Exact digital silence makes log-spectral metrics explode (a silent frame contributes
    log10(1e-12)^2 per bin), which would turn the demo into a test of padding, not of
    separation.
    """
    x = rng.standard_normal(n + 1)
    x = 0.6 * x[1:] + 0.4 * x[:-1]  # a first-order low-pass tilt
    x /= np.sqrt(np.mean(x**2))
    return x * 10 ** (FLOOR_DBFS / 20)


def finish(audio: np.ndarray, seed: int, min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Remove DC, pad to the minimum length, add the noise floor, scale the peak to 0.9."""
    x = np.asarray(audio, dtype=np.float64)
    x = x - x.mean()
    peak = np.max(np.abs(x))
    if peak > 0:
        x = x * (PEAK / peak)
    n = max(len(x), int(min_seconds * RATE))
    x = np.pad(x, (0, n - len(x)))
    x = x + noise_floor(n, np.random.default_rng(seed))
    return (x * (PEAK / np.max(np.abs(x)))).astype(np.float32)


def seed_of(key: str) -> int:
    """A stable per-source seed from its key (Python's hash() is salted per process)."""
    import zlib

    return zlib.crc32(key.encode())


def place_events(events: list[np.ndarray], rng: np.random.Generator, seconds: float = 10.5,
                 gap: tuple[float, float] = (0.2, 1.2)) -> np.ndarray:  # fmt: skip
    """Concatenate events with random gaps until ``seconds`` are filled."""
    n = int(seconds * RATE)
    out = np.zeros(n + RATE * 12)
    pos = int(rng.uniform(0.0, 0.5) * RATE)
    k = 0
    while pos < n:
        ev = events[k % len(events)] * rng.uniform(0.6, 1.0)
        out[pos : pos + len(ev)] += ev
        pos += len(ev) + int(rng.uniform(*gap) * RATE)
        k += 1
    return out[: max(n, pos)]
