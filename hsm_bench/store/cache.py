"""Content-addressed feature cache.

Features are stored under ``<cache_dir>/features/<embedder key>/<sha1[:2]>/<sha1>.npz``
where ``sha1`` hashes the exact float32 samples (and rate) the embedder receives. The
embedder key carries the embedder's name, version, parameters and checkpoint hash, so a
changed model never reads stale features. The same reference clip scored for k systems
is embedded once; a rerun of a system embeds nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def audio_key(audio: np.ndarray, sample_rate: int) -> str:
    a = np.ascontiguousarray(audio, dtype=np.float32)
    h = hashlib.sha1(str(sample_rate).encode() + b":" + str(a.shape).encode() + b":")
    h.update(a.tobytes())
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None, enabled: bool = True):
        self.root = Path(root) / "features" if root is not None else None
        self.enabled = enabled and root is not None
        self.hits = 0
        self.misses = 0

    def _path(self, embedder_key: str, key: str) -> Path:
        return self.root / embedder_key / key[:2] / f"{key}.npz"

    def get(self, embedder_key: str, key: str) -> dict[str, np.ndarray] | None:
        if not self.enabled:
            return None
        p = self._path(embedder_key, key)
        if not p.exists():
            return None
        try:
            with np.load(p) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            return None  # a torn write: recompute

    def put(self, embedder_key: str, key: str, features: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        p = self._path(embedder_key, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **features)
        os.replace(tmp, p)

    def lookup_or_compute(self, embedder_key: str, audios: list[np.ndarray], sample_rate: int, compute) -> list[dict[str, np.ndarray]]:
        """Features for each clip; ``compute(list_of_missing_clips)`` returns a list of dicts."""
        keys = [audio_key(a, sample_rate) for a in audios]
        out: list[dict[str, np.ndarray] | None] = [self.get(embedder_key, k) for k in keys]
        missing = [i for i, f in enumerate(out) if f is None]
        self.hits += len(audios) - len(missing)
        self.misses += len(missing)
        if missing:
            computed = compute([audios[i] for i in missing])
            for i, feats in zip(missing, computed):
                self.put(embedder_key, keys[i], feats)
                out[i] = feats
        return out  # type: ignore[return-value]
