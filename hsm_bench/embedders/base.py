"""The Embedder interface shared by model-based metrics.

An embedder declares the sample rate it takes, constructs cheaply, imports heavy packages
and loads weights (through :mod:`hsm_bench.weights`) in :meth:`load`, and maps audio
clips to named feature arrays (``{"embedding": [D], "logits": [C], ...}``). Metrics call
:meth:`audio_features`, which goes through the content-addressed feature cache, so one
forward pass per clip serves every metric that uses the embedder, and reference-side
features are computed once for all systems.

:meth:`Embedder.to` moves a loaded embedder between devices (scoring in metric order keeps
one model on the GPU at a time), and :attr:`Embedder.autocast` (set by the metric that owns
it) runs its forward passes under ``torch.autocast`` to bfloat16; both are generic, so a new
embedder gets them by keeping its modules and tensors as attributes and placing its input
tensors on ``self.device``.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np

from hsm_bench.store.cache import FeatureCache


def cpu_float32():
    """A block in float32 even inside a CPU autocast: feature extractors that run on the CPU
    before the network (transformers processors) keep their precision, like the float32
    front ends of the networks themselves."""
    import torch

    return torch.autocast("cpu", enabled=False)


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
        # "bf16": forward passes under torch.autocast(bfloat16). Set by the owning metric, which
        # allows it only where its values were shown to stay within a stated tolerance.
        self.autocast: str | None = None

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
        """Names the feature space: embedder, version, parameters, checkpoint (and autocast)."""
        spec: dict[str, Any] = {"p": self.params, "ckpt": self.checkpoint_sha256}
        if self.autocast:  # only when set: the keys of features computed in float32 stay as they were
            spec["autocast"] = self.autocast
        blob = json.dumps(spec, sort_keys=True, default=str)
        return f"{self.name}@{self.version}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"

    def forward_context(self):
        """The context forward passes run in: ``torch.autocast`` to bfloat16 on this embedder's
        device type when :attr:`autocast` is ``"bf16"``, else nothing."""
        if not self.autocast:
            return nullcontext()
        import torch

        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def to(self, device: str) -> "Embedder":
        """Move every torch module and tensor this embedder holds as an attribute, and nested
        embedders, to ``device``; later input tensors follow ``self.device``. Parameters keep
        their dtype (a bfloat16 LM stays bfloat16)."""
        import torch

        for name, value in list(vars(self).items()):
            if isinstance(value, torch.nn.Module):
                value.to(device)
            elif isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, Embedder):
                value.to(device)
        self.device = str(device)
        return self

    def _embed_in_context(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        with self.forward_context():
            return self.embed_audio(clips)

    def audio_features(self, clips: list[np.ndarray], cache: FeatureCache | None = None) -> list[dict[str, np.ndarray]]:
        if not self.loaded:
            self.load(self.device)
        if cache is None:
            return self._embed_in_context(clips)
        return cache.lookup_or_compute(self.cache_key(), clips, self.sample_rate, self._embed_in_context)

    def info(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "version": self.version,
            "sample_rate": self.sample_rate,
            "params": self.params,
            "weights": list(self.weights),
            "checkpoint_sha256": self.checkpoint_sha256,
        }
        if self.autocast:
            d["autocast"] = self.autocast
        return d
