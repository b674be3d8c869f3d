"""AFSim: cosine similarity of Audio Flamingo embeddings of the estimate and the reference.

HSM-TSS (section IV-B): AF(x) is the mean-pooled penultimate-layer hidden state of Audio
Flamingo run on x with the captioning prompt; AFSim = cos(AF(estimate), AF(reference)),
reported as the mean over the test set. No reference implementation is public; the choices
hsm-bench makes (peak normalisation, prompt, chat template, pooled positions, layer, dtype)
are documented in :mod:`hsm_bench.embedders.audio_flamingo` and recorded with every result
through the embedder's parameters and checkpoint digest.

Params: ``backend`` (embedder name): ``audio-flamingo-1`` (default; the 2048-d model the paper
describes: OPT-IML-MAX-1.3B with Flamingo cross-attention over MS-CLAP clapcap features,
:mod:`hsm_bench.embedders.audio_flamingo1`, bit-identical to the official AF1 code on shared
random weights) or ``audio-flamingo-3`` (transformers; Qwen2.5-7B, 3584-d: another feature
space, comparable between systems scored here, not with the paper's column);
``audio-flamingo-2`` is not implemented. ``backend_params``: ``pooling``, ``layer``,
``prompt``, ``dtype``, ``batch_size``, ``peak_normalize`` (and AF1's ``task_prefix``,
``clap_batch_size``). Audio reaches the metric at 16 kHz, resampled by the harness when a
test set has another rate; AF1 brings it to 44.1 kHz itself, as the official code does.
Reference-side embeddings go through the feature cache, so they are computed once per test
set for all systems.

Weights convention: ``weights_for(params)`` / ``all_weights()`` (cheap, no torch).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hsm_bench.api.metric import MetricError, MetricInfo, ScoreItem
from hsm_bench.metrics.model_based import EmbedderMetric, autocast_params, check_backend, cosine

# backend -> (sample rate, weights); the Audio Flamingo 2 embedder refuses to construct
BACKENDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "audio-flamingo-3": (16000, ("audio-flamingo-3-hf",)),
    "audio-flamingo-2": (16000, ()),
    "audio-flamingo-1": (16000, ("audio-flamingo-1-foundation", "opt-iml-max-1_3b", "msclap-clapcap-2023")),
}
REFERENCE = ("HSM-TSS AFSim (arXiv 2505.21025, sec. IV-B): cosine of mean-pooled penultimate-layer Audio Flamingo "
             "hidden states under the captioning prompt; no public implementation, choices recorded")  # fmt: skip


class AFSim(EmbedderMetric):
    info = MetricInfo(
        name="afsim",
        outputs=("afsim",),
        higher_is_better=True,
        version="1",
        reference=REFERENCE,
        requires_reference=True,
        sample_rate=16000,
        embedder="audio-flamingo-1",
        description="afsim: cosine of Audio Flamingo embeddings (pooled penultimate hidden states) of estimate and reference",
    )
    # bf16 autocast (front ends kept in float32) moved afsim by at most 1.9e-4 on the tiny random
    # AF1, 6.5e-4 on the tiny AF3, 4.8e-5 on the full-size AF1 architecture (random weights, gates
    # 0.5); AFSim differences between systems are small, hence a tighter bound than CLAP's
    autocast_tolerance = 0.005

    def __init__(self, backend: str = "audio-flamingo-1", backend_params: dict | None = None, autocast: str | None = None):
        check_backend("afsim", backend, BACKENDS)
        backend_params = dict(backend_params or {})
        self.autocast = self.check_autocast(autocast)
        super().__init__(backend=backend, backend_params=backend_params, **autocast_params(self.autocast))
        self.backend, self.backend_params = backend, backend_params
        self.info = dataclasses.replace(type(self).info, sample_rate=BACKENDS[backend][0], embedder=backend)

    @classmethod
    def weights_for(cls, params: dict | None = None) -> list[str]:
        backend = (params or {}).get("backend", "audio-flamingo-1")
        if backend not in BACKENDS:
            raise ValueError(f"afsim: unknown backend {backend!r}")
        return list(BACKENDS[backend][1])

    @classmethod
    def all_weights(cls) -> list[str]:
        return list(dict.fromkeys(w for _, ws in BACKENDS.values() for w in ws))

    def setup(self, device: str = "cpu", cache: Any = None) -> None:
        from hsm_bench.registry import EMBEDDERS

        self.embedder = EMBEDDERS.get(self.backend)(**self.backend_params)  # AF2: NotImplementedError
        self.embedder.autocast = self.autocast
        self.embedder.load(device)  # missing weights -> WeightsMissingError naming download-weights
        self.cache = cache

    def compute_batch(self, items: list[ScoreItem]) -> list[dict[str, float] | Exception]:
        if self.embedder is None:
            raise RuntimeError("afsim: call setup() first")
        rate = self.embedder.sample_rate
        out: list[dict[str, float] | Exception | None] = [None] * len(items)
        clips: list[np.ndarray] = []
        pairs: dict[int, tuple[int, int]] = {}
        for i, item in enumerate(items):
            if item.reference is None:
                out[i] = MetricError("afsim needs the reference audio")
                continue
            if item.sample_rate != rate:
                out[i] = MetricError(f"afsim ({self.backend}) takes {rate} Hz audio, got {item.sample_rate} Hz")
                continue
            est = np.asarray(item.estimate, dtype=np.float32).reshape(-1)
            ref = np.asarray(item.reference, dtype=np.float32).reshape(-1)
            if not (np.all(np.isfinite(est)) and np.all(np.isfinite(ref))):
                out[i] = MetricError("afsim: NaN/Inf samples")
                continue
            pairs[i] = (len(clips), len(clips) + 1)
            clips += [est, ref]
        try:  # the target oracle's estimate is its reference: embedded once
            embs = self.embeddings(clips)
        except Exception as exc:  # noqa: BLE001 - the model failed on this batch: every pending item errs
            err = MetricError(f"afsim ({self.backend}): {type(exc).__name__}: {exc}")
            return [r if r is not None else err for r in out]
        for i, (e, r) in pairs.items():
            out[i] = {"afsim": cosine(embs[e], embs[r])}
        return out  # type: ignore[return-value]
