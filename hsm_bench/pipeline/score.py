"""Stage 2: score separated audio on disk with item metrics.

Audio is read in a background thread while the metrics compute, a bounded number of
items ahead, so memory does not grow with the number of items. Each metric receives mono
float32 audio at its declared rate (resampled with the harness resampler when a file
differs). A file that cannot be read, a length mismatch or a metric exception turns into
an error result for that item and metric; everything else goes on.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hsm_bench.api.metric import Metric, MetricError, ScoreItem
from hsm_bench.audio.io import read_audio
from hsm_bench.audio.resample import resample
from hsm_bench.registry import METRICS, resolve_metric_names


@dataclass
class ScoreJob:
    id: str
    estimate: Path
    reference: Path | None = None
    mixture: Path | None = None
    caption: str | None = None
    captions: list[str] = field(default_factory=list)
    task: str | None = None
    metrics: list[str] | None = None  # names to compute; None = all


def build_metrics(spec: str | list[str], params: dict[str, dict[str, Any]] | None = None) -> list[Metric]:
    """Instantiate metrics from names, output keys or set names (``"signal"``, ``"lsd,sdr"``)."""
    params = params or {}
    return [METRICS.get(name)(**params.get(name, {})) for name in resolve_metric_names(spec)]


def nonfinite_label(v: float) -> str:
    return "nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf")


class _Loaded:
    """The audio of one job, as read from disk, with per-(rate) mono views."""

    def __init__(self, job: ScoreJob, need_ref: bool, need_mix: bool, max_length_diff_s: float, allow_resample: bool):
        self.job = job
        self.error: str | None = None
        self.raw: dict[str, tuple[np.ndarray, int]] = {}
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        roles = [("estimate", job.estimate)]
        if need_ref and job.reference is not None:
            roles.append(("reference", job.reference))
        if need_mix and job.mixture is not None:
            roles.append(("mixture", job.mixture))
        try:
            for role, path in roles:
                audio, sr = read_audio(path, mono=True)
                bad = int((~np.isfinite(audio)).sum())
                if bad:
                    raise MetricError(f"{role} {Path(path).name} contains {bad} NaN/Inf sample(s)")
                self.raw[role] = (audio, sr)
            self._check(max_length_diff_s, allow_resample)
        except Exception as exc:
            self.error = str(exc)

    def _check(self, max_length_diff_s: float, allow_resample: bool) -> None:
        est, est_sr = self.raw["estimate"]
        for role in ("reference", "mixture"):
            if role not in self.raw:
                continue
            audio, sr = self.raw[role]
            if sr != est_sr and not allow_resample:
                raise MetricError(
                    f"sample rate mismatch: estimate {est_sr} Hz, {role} {sr} Hz "
                    "(pass --allow-resample to resample both to each metric's rate)"
                )
            diff = abs(len(est) / est_sr - len(audio) / sr)
            if diff > max_length_diff_s:
                raise MetricError(
                    f"length mismatch: estimate {len(est) / est_sr:.3f} s, {role} {len(audio) / sr:.3f} s "
                    f"(more than {max_length_diff_s} s apart)"
                )

    def view(self, role: str, rate: int | None) -> np.ndarray | None:
        if role not in self.raw:
            return None
        audio, sr = self.raw[role]
        rate = rate or sr
        key = (role, rate)
        if key not in self._cache:
            self._cache[key] = audio if rate == sr else resample(audio, sr, rate)
        return self._cache[key]

    def item(self, metric: Metric) -> ScoreItem:
        info = metric.info
        rate = info.sample_rate or self.raw["estimate"][1]
        return ScoreItem(
            id=self.job.id,
            estimate=self.view("estimate", rate),
            sample_rate=rate,
            reference=self.view("reference", rate) if info.requires_reference else None,
            mixture=self.view("mixture", rate) if (info.requires_mixture or info.uses_mixture) else None,
            caption=self.job.caption,
            captions=self.job.captions,
            task=self.job.task,
        )


def iter_scores(
    jobs: Iterable[ScoreJob],
    metrics: list[Metric],
    batch_size: int = 16,
    max_length_diff_s: float = 0.1,
    allow_resample: bool = False,
    prefetch_batches: int = 2,
) -> Iterator[tuple[ScoreJob, dict[str, dict[str, float] | Exception]]]:
    """Yield ``(job, {metric name: values or exception})`` in job order."""
    need_ref = any(m.info.requires_reference for m in metrics)
    need_mix = any(m.info.requires_mixture or m.info.uses_mixture for m in metrics)
    by_name = {m.info.name: m for m in metrics}

    def load(job: ScoreJob) -> _Loaded:
        return _Loaded(job, need_ref, need_mix, max_length_diff_s, allow_resample)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm-bench-read") as pool:
        pending: deque = deque()
        job_iter = iter(jobs)
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < batch_size * (prefetch_batches + 1):
                try:
                    pending.append(pool.submit(load, next(job_iter)))
                except StopIteration:
                    exhausted = True

        fill()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            fill()
            results: list[dict[str, Any]] = [{} for _ in batch]
            for name, metric in by_name.items():
                idx = [k for k, ld in enumerate(batch) if ld.job.metrics is None or name in ld.job.metrics]
                ready = []
                for k in idx:
                    ld = batch[k]
                    if ld.error is not None:
                        results[k][name] = MetricError(ld.error)
                    elif metric.info.requires_reference and "reference" not in ld.raw:
                        results[k][name] = MetricError(f"{name} needs a reference and the item has none")
                    elif metric.info.requires_mixture and "mixture" not in ld.raw:
                        results[k][name] = MetricError(f"{name} needs the mixture and the item has none")
                    else:
                        ready.append(k)
                if ready:
                    outs = metric.compute_batch([batch[k].item(metric) for k in ready])
                    for k, out in zip(ready, outs):
                        results[k][name] = out
            for ld, res in zip(batch, results):
                yield ld.job, res


def long_rows(job_id: str, results: dict[str, Any], metrics: dict[str, Metric]) -> list[dict[str, Any]]:
    """items.jsonl rows (one per item and metric) from one job's results."""
    rows = []
    for name, res in results.items():
        m = metrics[name]
        row: dict[str, Any] = {"id": job_id, "metric": name, "version": m.version_key}
        if isinstance(res, Exception):
            row.update(status="error", error=str(res) or type(res).__name__, values={})
        else:
            values = {k: float(v) for k, v in res.items()}
            nonfinite = {k: nonfinite_label(v) for k, v in values.items() if not math.isfinite(v)}
            row.update(status="ok", values=values)
            if nonfinite:
                row["nonfinite"] = nonfinite
        rows.append(row)
    return rows
