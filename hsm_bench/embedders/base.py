"""The Embedder interface shared by model-based metrics.

An embedder declares the sample rate it takes, constructs cheaply, imports heavy packages
and loads weights (through :mod:`hsm_bench.weights`) in :meth:`load`, and maps audio
clips to named feature arrays (``{"embedding": [D], "logits": [C], ...}``). Metrics call
:meth:`audio_features`, which goes through the content-addressed feature cache, so one
forward pass per clip serves every metric that uses the embedder, and reference-side
features are computed once for all systems.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import numpy as np

from hsm_bench.store.cache import FeatureCache


class Embedder:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when the features change for the same weights
    sample_rate: ClassVar[int] = 16000
    weights: ClassVar[tuple[str, ...]] = ()  # hsm_bench.weights names it needs

    def __init__(self, **params: Any):
        self.params = dict(params)
        self.device = "cpu"
        self.loaded = False
        self.checkpoint_sha256: str | None = None

    # -- to implement -------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        """Import heavy packages, resolve and load weights; set ``checkpoint_sha256``."""
        self.device = device
        self.loaded = True

    def embed_audio(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Features of each mono float32 clip at :attr:`sample_rate` (no caching here)."""
        raise NotImplementedError

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """``[N, D]`` text embeddings (CLAP-style embedders only)."""
        raise NotImplementedError(f"{self.name} has no text encoder")

    # -- provided -----------------------------------------------------------------
    def cache_key(self) -> str:
        """Names the feature space: embedder, version, parameters and checkpoint."""
        blob = json.dumps({"p": self.params, "ckpt": self.checkpoint_sha256}, sort_keys=True, default=str)
        return f"{self.name}@{self.version}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"

    def audio_features(self, clips: list[np.ndarray], cache: FeatureCache | None = None) -> list[dict[str, np.ndarray]]:
        if not self.loaded:
            self.load(self.device)
        if cache is None:
            return self.embed_audio(clips)
        return cache.lookup_or_compute(self.cache_key(), clips, self.sample_rate, self.embed_audio)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sample_rate": self.sample_rate,
            "params": self.params,
            "weights": list(self.weights),
            "checkpoint_sha256": self.checkpoint_sha256,
        }
