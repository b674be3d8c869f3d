"""CLAP score (text-audio), CLAP-A (audio-audio) and CLAPi (improvement over the mixture).

Outputs per item (cosines of L2-normalised embeddings, in [-1, 1], no x100, no clipping):

* ``clap``   = cos(E_t(text), E_a(estimate)): the CLAP score of Xiao et al. / HSM-TSS.
* ``clap_a`` = cos(E_a(estimate), E_a(reference)): CLAPScore-A (1 for the target oracle).
* ``clapi``  = clap(estimate) - clap(mixture): CLAPScore-i, only when the mixture is given.

Params (recorded with every result):

* ``backend``: an embedder name, default ``msclap-2023`` (HSM-TSS uses MS-CLAP; version
  2023 is an assumption), or ``msclap-2022``, ``laion-clap-music-speech-audioset`` (Xiao
  et al.'s CLAPScore / AudioSep), ``laion-clap-630k-audioset``, ``laion-clap-hf``;
  ``backend_params``: passed to the embedder (e.g. ``{"model": "larger-music-speech"}``
  for laion-clap-hf, ``{"int16": false}``, ``{"hop_s": 3.5}``).
* ``windowing``: ``mean`` (default: mean of the L2-normalised embeddings of fixed windows,
  see :mod:`hsm_bench.embedders.clap_common`) or ``reference_crop`` (the reference's random
  crop under a seed derived from ``seed`` and the item id, shared by the item's estimate,
  reference and mixture).
* ``text``: ``auto`` (default: the ``caption`` for "extract" items; for "remove" items,
  whose caption names the removed sound, the first of the reference's captions, i.e. "the
  same audio description as extraction" as HSM-TSS does), ``caption`` (always the item's
  caption), or ``captions_mean`` (mean of the normalised embeddings of all reference captions).
* ``resampler``: ``torchaudio`` (default: the metric takes the test set's rate and resamples
  to the embedder's rate, 44.1 kHz MS-CLAP / 48 kHz LAION, with a re-implementation of
  ``torchaudio.transforms.Resample``'s default windowed sinc, as msclap's ``CLAPWrapper`` and
  CLAPScore_for_LASS do; bit-exact against torchaudio 2.11 in
  benchmarks/compare_clap_msclap.py) or ``harness`` (the scorer resamples with the harness
  resampler, soxr VHQ). On random weights the two moved MS-CLAP embeddings by up to 0.25 %
  in cosine.

Audio is mono (mean over channels) before the model. Audio embeddings go through ``Embedder.audio_features`` and the feature cache, so reference
and mixture embeddings are computed once per test set and reused by every system; identical
clips in a batch (the target oracle's estimate is its reference) are embedded once.

Weights convention (read by ``hsm-bench download-weights --metrics``): a metric class may
define the classmethod ``weights_for(params: dict | None) -> list[str]``, the
``hsm_bench.weights`` names the metric needs with those params (``None`` / ``{}``: the
defaults, here ``["msclap-2023", "gpt2"]``), and ``all_weights()``, those of every option.
Both are cheap (no torch). A Hub-repository entry (``gpt2``, ``roberta-base``, ClapModel
folders) lists the files worth fetching in ``WeightSpec.extra["allow_patterns"]``. Missing
weights make ``setup()`` raise the resolver's one-line ``WeightsMissingError``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hsm_bench.api.metric import MetricError, MetricInfo, ScoreItem
from hsm_bench.metrics.model_based import EmbedderMetric, autocast_params, check_backend, cosine

# backend -> (sample rate, weights names); kept here so download-weights needs no torch import
BACKENDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "msclap-2023": (44100, ("msclap-2023", "gpt2")),
    "msclap-2022": (44100, ("msclap-2022", "bert-base-uncased")),
    "laion-clap-music-speech-audioset": (48000, ("laion-clap-music-speech-audioset", "roberta-base")),
    "laion-clap-630k-audioset": (48000, ("laion-clap-630k-audioset", "roberta-base")),
    "laion-clap-hf": (48000, ("laion-clap-hf-htsat-unfused",)),
}
HF_WEIGHTS = {"htsat-unfused": "laion-clap-hf-htsat-unfused", "larger-music-speech": "laion-clap-hf-larger-music-speech"}
WINDOWING = ("mean", "reference_crop")
RESAMPLERS = {
    "torchaudio": "torchaudio.transforms.Resample's default sinc (re-implemented, as msclap / CLAPScore_for_LASS)",
    "harness": "the harness resampler (soxr VHQ)",
}
REFERENCE = ("CLAP score (Xiao et al. 2024 CLAPScore_for_LASS; HSM-TSS with MS-CLAP): cosine of L2-normalised CLAP "
             "embeddings; msclap 1.3.4 / laion_clap 1.1.7 models re-implemented")  # fmt: skip
TEXT_SOURCES = ("auto", "caption", "captions_mean")


class CLAPScore(EmbedderMetric):
    info = MetricInfo(
        name="clap",
        outputs=("clap", "clap_a", "clapi"),
        higher_is_better=True,
        version="1",
        reference=f"{REFERENCE}; audio resampled to the model's rate with {RESAMPLERS['torchaudio']}",
        requires_reference=False,
        output_needs={"clap": ("text",), "clap_a": ("reference",), "clapi": ("text", "mixture")},
        sample_rate=None,  # the test set's rate: the metric resamples (see ``resampler``)
        embedder="msclap-2023",
        description="clap: text-audio cosine of the estimate; clap_a: audio-audio cosine with the reference; "
        "clapi: clap(estimate) - clap(mixture)",
    )
    # bf16 autocast (front ends kept in float32) moved clap/clap_a/clapi by at most 4.3e-3 on tiny
    # random models of every backend, 7e-4 on the full-size MS-CLAP 2023 architecture (random
    # weights); without the float32 front ends, 4e-2. tests/test_gpu_path.py asserts the bound
    autocast_tolerance = 0.01

    def __init__(
        self,
        backend: str = "msclap-2023",
        windowing: str = "mean",
        text: str = "auto",
        seed: int = 0,
        resampler: str = "torchaudio",
        backend_params: dict | None = None,
        autocast: str | None = None,
    ):
        check_backend("clap", backend, BACKENDS)
        if windowing not in WINDOWING:
            raise ValueError(f"clap: windowing must be one of {WINDOWING}, got {windowing!r}")
        if text not in TEXT_SOURCES:
            raise ValueError(f"clap: text must be one of {TEXT_SOURCES}, got {text!r}")
        if resampler not in RESAMPLERS:
            raise ValueError(f"clap: resampler must be one of {tuple(RESAMPLERS)}, got {resampler!r}")
        backend_params = dict(backend_params or {})
        self.autocast = self.check_autocast(autocast)
        super().__init__(backend=backend, windowing=windowing, text=text, seed=int(seed), resampler=resampler,
                         backend_params=backend_params, **autocast_params(self.autocast))  # fmt: skip
        self.backend, self.windowing, self.text, self.seed = backend, windowing, text, int(seed)
        self.resampler = resampler
        self.backend_params = backend_params
        self.rate = BACKENDS[backend][0]
        self.info = dataclasses.replace(
            type(self).info,
            sample_rate=self.rate if resampler == "harness" else None,  # None: the metric resamples
            embedder=backend,
            reference=f"{REFERENCE}; audio resampled to {self.rate} Hz with {RESAMPLERS[resampler]}",
        )

    # -- weights convention -------------------------------------------------------------
    @classmethod
    def weights_for(cls, params: dict | None = None) -> list[str]:
        """``hsm_bench.weights`` names the metric needs with ``params`` (defaults if None)."""
        params = params or {}
        backend = params.get("backend", "msclap-2023")
        if backend not in BACKENDS:
            raise ValueError(f"clap: unknown backend {backend!r}")
        if backend == "laion-clap-hf":
            model = (params.get("backend_params") or {}).get("model", "htsat-unfused")
            if model not in HF_WEIGHTS:
                raise ValueError(f"clap: laion-clap-hf model must be one of {', '.join(HF_WEIGHTS)}, got {model!r}")
            return [HF_WEIGHTS[model]]
        return list(BACKENDS[backend][1])

    @classmethod
    def all_weights(cls) -> list[str]:
        names = [w for _, ws in BACKENDS.values() for w in ws] + list(HF_WEIGHTS.values())
        return list(dict.fromkeys(names))

    # -- setup --------------------------------------------------------------------------------
    def setup(self, device: str = "cpu", cache: Any = None) -> None:
        from hsm_bench.registry import EMBEDDERS

        self.embedder = EMBEDDERS.get(self.backend)(**self.backend_params)
        self.embedder.autocast = self.autocast
        if self.embedder.sample_rate != self.rate:  # pragma: no cover - table out of date
            raise RuntimeError(f"clap: {self.backend} runs at {self.embedder.sample_rate} Hz, table says {self.rate}")
        self.embedder.load(device)  # missing weights -> WeightsMissingError naming download-weights
        self.cache = cache

    # -- scoring ------------------------------------------------------------------------------
    def _texts(self, item: ScoreItem) -> list[str] | None:
        if self.text == "caption" or (self.text == "auto" and item.task != "remove"):
            return [item.caption] if item.caption else None
        if self.text == "auto":  # remove: describe the sound that remains
            return [item.captions[0]] if item.captions else None
        return list(item.captions) or ([item.caption] if item.caption else None)

    def _prepare(self, item: ScoreItem, audio: np.ndarray) -> np.ndarray:
        from hsm_bench.audio.resample import torchaudio_resample
        from hsm_bench.embedders.clap_common import item_seed, to_mono

        x = to_mono(audio)
        if item.sample_rate != self.rate:
            if self.resampler == "harness":
                raise MetricError(f"clap ({self.backend}) takes {self.rate} Hz audio, got {item.sample_rate} Hz")
            x = torchaudio_resample(x, item.sample_rate, self.rate)
        if self.windowing == "reference_crop":
            x = self.embedder.reference_crop(x, item_seed(item.id, self.seed))
        return x

    def compute_batch(self, items: list[ScoreItem]) -> list[dict[str, float] | Exception]:
        if self.embedder is None:
            raise RuntimeError("clap: call setup() first")
        results: list[dict[str, float] | Exception | None] = [None] * len(items)
        clips: list[np.ndarray] = []
        slots: list[dict[str, int]] = []
        texts: list[list[str] | None] = []
        for i, item in enumerate(items):
            slot: dict[str, int] = {}
            try:
                for role in ("estimate", "reference", "mixture"):
                    audio = getattr(item, role)
                    if audio is None:
                        continue
                    clip = self._prepare(item, audio)
                    if not np.all(np.isfinite(clip)):
                        raise MetricError(f"{role} contains NaN/Inf samples")
                    slot[role] = len(clips)
                    clips.append(clip)
                t = self._texts(item)
                if t is None and "reference" not in slot:
                    raise MetricError("clap needs a caption (for clap/clapi) or a reference (for clap_a)")
            except Exception as exc:  # noqa: BLE001 - this item only
                results[i] = exc if isinstance(exc, MetricError) else MetricError(str(exc))
                clips = clips[: min(slot.values())] if slot else clips
                slot, t = {}, None
            slots.append(slot)
            texts.append(t)
        try:
            embs = self.embeddings(clips)
            all_texts = list(dict.fromkeys(s for t in texts if t for s in t))
            text_emb = dict(zip(all_texts, self.embedder.embed_text(all_texts))) if all_texts else {}
        except Exception as exc:  # noqa: BLE001 - the model failed on this batch: every pending item errs
            err = MetricError(f"clap ({self.backend}): {type(exc).__name__}: {exc}")
            return [r if r is not None else err for r in results]
        for i in range(len(items)):
            if results[i] is not None:
                continue
            slot, t = slots[i], texts[i]
            est = embs[slot["estimate"]]
            vals: dict[str, float] = {}
            if t:
                tv = np.mean([text_emb[s] for s in t], axis=0)
                vals["clap"] = cosine(tv, est)
                if "mixture" in slot:
                    vals["clapi"] = vals["clap"] - cosine(tv, embs[slot["mixture"]])
            if "reference" in slot:
                vals["clap_a"] = cosine(est, embs[slot["reference"]])
            results[i] = vals
        return results  # type: ignore[return-value]
