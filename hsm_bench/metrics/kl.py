"""KL divergence between PANNs Cnn14 label distributions, as audioldm-eval 0.0.3 computes it.

Reference: ``audioldm_eval/metrics/kl.py::calculate_kl`` with the cnn14 backbone and the
``WaveDataset`` loader of 0.0.3. Per file: channel 0, the clip mean removed, resampled to
the evaluation rate (16 kHz default; 32 kHz uses the 32 kHz checkpoint), zero-padded to at
least 32000 samples, the whole clip through Cnn14 (batch size 1), logits kept. Then, with
P the reference and Q the estimate:

* ``kl``         = sum_c p_c (log p_c - log(q_c + 1e-6)), p = softmax(ref logits), q = softmax(est logits)
* ``kl_sigmoid`` = the same sum with p, q the per-class sigmoids (only the positive term, as
  the reference: not a true divergence)

computed with torch ``kl_div`` in float32 like the reference; the corpus value (the mean
over items) equals audioldm-eval's sum divided by N.

Resampling: audioldm-eval calls ``torchaudio.functional.resample`` on the float32 waveform;
files at another rate are resampled with ``hsm_bench.audio.resample.torchaudio_resample(...,
kernel="functional")``, bit-exact against it (its float32 kernel differs from the
``transforms.Resample`` one CLAP uses by ~1e-5 per sample) (``resampler="torchaudio"``, the
default), or with the harness resampler (``resampler="harness"``). Test sets are 16 kHz, so
neither runs in the usual pipeline. Multichannel files are downmixed by the harness before
the metric sees them (audioldm-eval takes channel 0): identical for the mono audio
hsm-bench writes.

Weights convention: ``weights_for(params)`` / ``all_weights()`` name the checkpoints
(``hsm-bench download-weights --metrics kl``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hsm_bench.api.metric import MetricError, MetricInfo, ScoreItem
from hsm_bench.metrics.model_based import EmbedderMetric

EPS = 1e-6
MIN_SAMPLES = 32000
EMBEDDER = {16000: "panns-cnn14-16k", 32000: "panns-cnn14-32k"}


def kl_terms(ref_logits: torch.Tensor, est_logits: torch.Tensor) -> dict[str, float]:
    """Both KL variants of one item from [527] logits (float32, as the reference)."""
    p, q = ref_logits.float()[None], est_logits.float()[None]
    softmax = torch.nn.functional.kl_div((q.softmax(dim=1) + EPS).log(), p.softmax(dim=1), reduction="sum")
    sigmoid = torch.nn.functional.kl_div((q.sigmoid() + EPS).log(), p.sigmoid(), reduction="sum")
    return {"kl": float(softmax), "kl_sigmoid": float(sigmoid)}


class KL(EmbedderMetric):
    info = MetricInfo(
        name="kl",
        outputs=("kl", "kl_sigmoid"),
        higher_is_better=False,
        version="2",  # 2: resampling with torchaudio.functional.resample's float32 kernel
        reference="audioldm-eval==0.0.3 calculate_kl, cnn14 backbone (softmax KL(ref || est), eps 1e-6)",
        sample_rate=None,
        embedder="panns-cnn14-16k",
        description="kl: softmax over the 527 AudioSet logits; kl_sigmoid: per-class sigmoids",
    )
    # KL sums over 527 classes whose small probabilities carry the value, and log(q + 1e-6)
    # magnifies the rounding of low logits: with the front end kept in float32, bf16 autocast
    # still moved kl_sigmoid by up to 0.13 on the full-size Cnn14 architecture with random
    # weights (0.03 on a narrow one), where the float32 values lie within 5e-4 of 0. Cnn14
    # (81 M parameters) costs little in float32 anyway.
    autocast_refusal = ("KL of AudioSet logits is too sensitive to bfloat16 rounding (kl_sigmoid moved by up to 0.13 "
                        "on test models); Cnn14 is small enough to run in float32")  # fmt: skip

    def __init__(self, sample_rate: int = 16000, resampler: str = "torchaudio", embedder_params: dict | None = None,
                 autocast: str | None = None):  # fmt: skip
        self.check_autocast(autocast)  # refused: see autocast_refusal
        if sample_rate not in EMBEDDER:
            raise ValueError(f"kl: audioldm-eval evaluates at 16000 or 32000 Hz, not {sample_rate}")
        if resampler not in ("torchaudio", "harness"):
            raise ValueError("kl: resampler must be 'torchaudio' or 'harness'")
        super().__init__(sample_rate=sample_rate, resampler=resampler, embedder_params=dict(embedder_params or {}))
        self.rate = int(sample_rate)
        self.resampler = resampler

    @classmethod
    def weights_for(cls, params: dict | None = None) -> list[str]:
        return [EMBEDDER[int((params or {}).get("sample_rate", 16000))]]

    @classmethod
    def all_weights(cls) -> list[str]:
        return list(EMBEDDER.values())

    def setup(self, device: str = "cpu", cache: Any = None) -> None:
        from hsm_bench.registry import EMBEDDERS

        self.embedder = EMBEDDERS.get(EMBEDDER[self.rate])(**self.params["embedder_params"])
        self.embedder.load(device)  # missing weights -> the download-weights command
        self.cache = cache

    def prepare(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """The reference loader: mean removal, then resampling, then padding to 2 s."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        x = (x - x.mean()).numpy()
        if rate != self.rate:
            if self.resampler == "torchaudio":
                from hsm_bench.audio.resample import torchaudio_resample

                x = torchaudio_resample(x, rate, self.rate, kernel="functional")
            else:
                from hsm_bench.audio.resample import resample

                x = resample(x, rate, self.rate)
        if len(x) < MIN_SAMPLES:
            x = np.pad(x, (0, MIN_SAMPLES - len(x)))
        return np.ascontiguousarray(x, dtype=np.float32)

    def compute_batch(self, items: list[ScoreItem]) -> list[dict[str, float] | Exception]:
        if self.embedder is None:
            raise RuntimeError("kl: call setup() first")
        clips, slots, out = [], [], []
        for item in items:
            if item.reference is None:
                slots.append(MetricError("kl needs the reference audio"))
                continue
            slots.append((len(clips), len(clips) + 1))
            clips += [self.prepare(item.estimate, item.sample_rate), self.prepare(item.reference, item.sample_rate)]
        feats = self.embedder.audio_features(clips, self.cache) if clips else []
        for slot in slots:
            if isinstance(slot, Exception):
                out.append(slot)
                continue
            est, ref = feats[slot[0]]["logits"], feats[slot[1]]["logits"]
            out.append(kl_terms(torch.from_numpy(np.asarray(ref)), torch.from_numpy(np.asarray(est))))
        return out

