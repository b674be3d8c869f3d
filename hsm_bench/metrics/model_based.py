"""What metrics built on an embedder share: the embedder in provenance and resume keys, and cosines.

A model-based metric holds ``self.embedder`` (set by ``setup`` or, in tests and notebooks,
``use_embedder``) and ``self.cache`` (the feature cache). Its ``version_key`` includes the
checkpoint's digest once set up, so resumed rows never mix models, and ``describe()`` records
the embedder's parameters and checkpoint in ``run.json``.

Devices: ``to(device)`` moves the embedder's models (scoring in metric order sets a metric up
on the CPU and moves it to the run device for its own pass only). Precision: the ``autocast``
parameter (``"bf16"`` or None) runs the embedder's forward passes under ``torch.autocast`` to
bfloat16. A metric allows it only when ``autocast_tolerance`` is set: the bound on the change
of every output value, measured against float32 and asserted in the tests; otherwise it
refuses the parameter with ``autocast_refusal`` as the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from hsm_bench.api.metric import Metric, ScoreItem
from hsm_bench.errors import ConfigError
from hsm_bench.store.cache import audio_key

AUTOCAST = ("bf16",)


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


def autocast_params(autocast: str | None) -> dict[str, str]:
    """The ``autocast`` entry of a metric's params: absent when off, so the version keys of
    float32 results stay what they were before the parameter existed."""
    return {"autocast": autocast} if autocast else {}


class EmbedderMetric(Metric):
    embedder: Any = None
    cache: Any = None
    autocast: str | None = None
    # largest |change| of any output under bf16 autocast that the tests assert (None: refused)
    autocast_tolerance: ClassVar[float | None] = None
    autocast_refusal: ClassVar[str] = "its values under bfloat16 were not shown to stay within a tolerance"

    def check_autocast(self, autocast: Any) -> str | None:
        """``autocast`` as given, or a one-line ConfigError (unknown value, or not allowed here)."""
        if autocast is None:
            return None
        name = self.info.name
        if autocast not in AUTOCAST:
            raise ConfigError(f"metrics.params.{name}.autocast={autocast!r}: expected bf16 or null (float32)")
        if self.autocast_tolerance is None:
            raise ConfigError(f"metrics.params.{name}.autocast={autocast}: {name} does not allow autocast: {self.autocast_refusal}")
        return autocast

    def use_embedder(self, embedder: Any, cache: Any = None) -> None:
        """Score with an already loaded embedder (tests, notebooks)."""
        self.embedder, self.cache = embedder, cache
        if embedder is not None:
            embedder.autocast = self.autocast

    def to(self, device: str) -> "EmbedderMetric":
        """Move the embedder's models to ``device`` (see :meth:`Embedder.to`)."""
        if self.embedder is not None:
            self.embedder.to(device)
        return self

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
