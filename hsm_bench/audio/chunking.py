"""Splitting long inputs for systems with a maximum duration, and stitching them back.

Windows of ``win`` samples advance by ``win - overlap``; the last window is aligned to
the end of the signal so every window is full length (no padded tails fed to a model).
Outputs are joined with complementary linear cross-fades over the overlaps, which
reproduces the input exactly when the system is the identity.
"""

from __future__ import annotations

import numpy as np


def chunk_spans(n: int, win: int, overlap: int) -> list[tuple[int, int]]:
    if win <= 0 or not 0 <= overlap < win:
        raise ValueError("need win > 0 and 0 <= overlap < win")
    if n <= win:
        return [(0, n)]
    hop = win - overlap
    starts = list(range(0, n - win, hop)) + [n - win]
    return [(s, s + win) for s in starts]


def overlap_add(chunks: list[np.ndarray], spans: list[tuple[int, int]], n: int) -> np.ndarray:
    """Join ``chunks`` (each [..., span length]) placed at ``spans`` into [..., n]."""
    lead = chunks[0].shape[:-1]
    out = np.zeros(lead + (n,), dtype=np.float64)
    weight = np.zeros(n, dtype=np.float64)
    for k, (chunk, (s, e)) in enumerate(zip(chunks, spans)):
        w = np.ones(e - s)
        if k > 0:  # fade in over the overlap with the previous window
            ov = spans[k - 1][1] - s
            if ov > 0:
                w[:ov] = np.linspace(0, 1, ov + 2)[1:-1]
        if k + 1 < len(spans):
            ov = e - spans[k + 1][0]
            if ov > 0:
                w[-ov:] = np.minimum(w[-ov:], np.linspace(1, 0, ov + 2)[1:-1])
        out[..., s:e] += chunk * w
        weight[s:e] += w
    return (out / np.maximum(weight, 1e-12)).astype(np.float32)
