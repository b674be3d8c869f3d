"""What metrics built on an embedder share: the embedder in provenance and resume keys, and cosines.

A model-based metric holds ``self.embedder`` (set by ``setup`` or, in tests and notebooks,
``use_embedder``) and ``self.cache`` (the feature cache). Its ``version_key`` includes the
checkpoint's digest once set up, so resumed rows never mix models, and ``describe()`` records
the embedder's parameters and checkpoint in ``run.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hsm_bench.api.metric import Metric, ScoreItem
from hsm_bench.store.cache import audio_key


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine in float64; NaN when either vector is zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.dot(a, b) / (na * nb))


def check_backend(metric: str, backend: str, backends) -> None:
    """A clear error, with a did-you-mean, for a backend name the metric does not know."""
    if backend in backends:
        return
    import difflib

    close = difflib.get_close_matches(backend, list(backends), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{metric}: unknown backend {backend!r}{hint}; choose from {', '.join(backends)}")


class EmbedderMetric(Metric):
    embedder: Any = None
    cache: Any = None

    def use_embedder(self, embedder: Any, cache: Any = None) -> None:
        """Score with an already loaded embedder (tests, notebooks)."""
        self.embedder, self.cache = embedder, cache

    @property
    def version_key(self) -> str:
        base = super().version_key
        sha = getattr(self.embedder, "checkpoint_sha256", None)
        return f"{base}-{sha[:8]}" if sha else base

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.embedder is not None:
            d["embedder"] = self.embedder.info()
        return d

    def compute(self, item: ScoreItem) -> dict[str, float]:
        res = self.compute_batch([item])[0]
        if isinstance(res, Exception):
            raise res
        return res

    def embeddings(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """``embedding`` of each clip; each distinct clip is embedded (or read from the cache) once."""
        keys = [audio_key(c, self.embedder.sample_rate) for c in clips]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        feats = self.embedder.audio_features([clips[i] for i in first.values()], self.cache) if first else []
        by_key = {k: f["embedding"] for k, f in zip(first, feats)}
        return [by_key[k] for k in keys]
