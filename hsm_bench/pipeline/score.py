"""Stage 2: score separated audio on disk with item metrics.

Audio is read in a background thread while the metrics compute, a bounded number of
items ahead, so memory does not grow with the number of items. Each metric receives mono
float32 audio at its declared rate (resampled with the harness resampler when a file
differs). Scoring never guesses:

* an estimate whose channel count differs from its reference (or mixture) is an item error
  naming both counts, unless ``downmix`` is set (then every file is averaged to mono);
  files with the same number of channels are averaged to mono, as every metric is mono;
* an output that needs an input the whole job lacks (``sdri`` without mixtures, ``clap``
  without captions) is skipped and announced once (:func:`plan_outputs`), not failed;
* a file that cannot be read, a length mismatch, a metric exception or a model crash turns
  into an error result for that item and that metric only; the other metrics go on.

:func:`score_run` drives the stage for a run folder; ``hsm-bench score`` (``score_dirs``)
uses the same pieces on plain folders.

Two orders (``runtime.score_order``): ``item`` (default) scores each batch of items with
every metric, so all models stay loaded; ``metric`` (:func:`iter_metric_passes`, the one
for GPUs) scores every pending item with one metric before the next: the model-free
metrics in one pass, then each model-based metric in a pass of its own, its models on the
run device only during that pass, jobs sorted by duration so that batches pad little. Each
pass reads the audio again. The stored rows do not depend on the order: every shipped
embedder batches at a fixed size, so an embedding never depends on the other clips of its
batch (a window's row in a CLAP batch can still change it at float32 rounding level).
"""

from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hsm_bench.api.metric import Metric, MetricError, ScoreItem
from hsm_bench.api.testset import TestSet
from hsm_bench.audio.io import read_audio
from hsm_bench.audio.resample import resample
from hsm_bench.errors import ConfigError, HsmBenchError
from hsm_bench.pipeline.sharding import of_shard
from hsm_bench.pipeline.summary import StageSummary
from hsm_bench.registry import METRICS
from hsm_bench.store.jsonl import JsonlWriter
from hsm_bench.store.runstore import RunDir


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
    duration_s: float | None = None  # the manifest's; orders the jobs of a metric-order pass


SCORE_ORDERS = ("item", "metric")


def build_metrics(names: list[str], params: dict[str, dict[str, Any]] | None = None) -> list[Metric]:
    """Instantiate metrics by name; a bad parameter is a :class:`ConfigError` naming it."""
    from hsm_bench.params import check_params

    params = params or {}
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(
            f"metrics.params has entries for {', '.join(unknown)}, which this run does not score "
            f"(metrics: {', '.join(names)})"
        )
    out = []
    for name in names:
        cls = METRICS.get(name)
        p = dict(params.get(name) or {})
        check_params(cls, p, f"metrics.params.{name}", name)
        try:
            out.append(cls(**p))
        except HsmBenchError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"metrics.params.{name}: {exc}") from exc
    return out


def metric_definitions(metrics: list[Metric]) -> dict[str, dict[str, Any]]:
    """What produced each metric's numbers, keyed by metric name (stored in run.json)."""
    return {m.info.name: {**m.describe(), "version_key": m.version_key} for m in metrics}


def plan_outputs(metrics: list[Metric], have: set[str], asked: dict[str, list[str] | None] | None = None,
                 why: dict[str, str] | None = None) -> tuple[dict[str, list[str]], list[str]]:  # fmt: skip
    """Which outputs can be computed with the inputs in ``have``, and what to announce.

    Returns ``({metric: computable outputs}, notes)``; a note per missing input lists the
    outputs it skips (``"sdri, si_sdri skipped: no --mix-dir"``; ``why`` maps an input to the
    words after "no"). Outputs that were not asked for are not announced.
    """
    why = why or {}
    outputs: dict[str, list[str]] = {}
    skipped_by: dict[str, list[str]] = {}
    for m in metrics:
        ok, skipped = m.info.available(have)
        outputs[m.info.name] = ok
        wanted = (asked or {}).get(m.info.name)
        for key, missing in skipped.items():
            if wanted is not None and key not in wanted:
                continue
            skipped_by.setdefault(" and ".join(why.get(x, x) for x in missing), []).append(key)
    notes = [f"{', '.join(keys)} skipped: no {what}" for what, keys in skipped_by.items()]
    return outputs, notes


def nonfinite_label(v: float) -> str:
    return "nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf")


class _Loaded:
    """The audio of one job, as read from disk, with per-rate mono views."""

    def __init__(self, job: ScoreJob, need_ref: bool, need_mix: bool, max_length_diff_s: float, allow_resample: bool,
                 downmix: bool):  # fmt: skip
        self.job = job
        self.error: str | None = None
        self.raw: dict[str, tuple[np.ndarray, int]] = {}  # role -> ([C, T], rate)
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        roles = [("estimate", job.estimate)]
        if need_ref and job.reference is not None:
            roles.append(("reference", job.reference))
        if need_mix and job.mixture is not None:
            roles.append(("mixture", job.mixture))
        try:
            for role, path in roles:
                audio, sr = read_audio(path, mono=False)
                bad = int((~np.isfinite(audio)).sum())
                if bad:
                    raise MetricError(f"{role} {Path(path).name} contains {bad} NaN/Inf sample(s)")
                self.raw[role] = (audio, sr)
            self._check(max_length_diff_s, allow_resample, downmix)
        except Exception as exc:
            self.error = str(exc)

    def _check(self, max_length_diff_s: float, allow_resample: bool, downmix: bool) -> None:
        est, est_sr = self.raw["estimate"]
        for role in ("reference", "mixture"):
            if role not in self.raw:
                continue
            audio, sr = self.raw[role]
            if audio.shape[0] != est.shape[0] and not downmix:
                raise MetricError(
                    f"channel mismatch: estimate has {est.shape[0]} channel(s), {role} has {audio.shape[0]} "
                    "(pass --downmix to average every file to mono before scoring)"
                )
            if sr != est_sr and not allow_resample:
                raise MetricError(
                    f"sample rate mismatch: estimate {est_sr} Hz, {role} {sr} Hz "
                    "(pass --allow-resample to resample both to each metric's rate)"
                )
            n_est, n = est.shape[-1], audio.shape[-1]
            diff = abs(n_est / est_sr - n / sr)
            if diff > max_length_diff_s:
                raise MetricError(
                    f"length mismatch: estimate {n_est / est_sr:.3f} s, {role} {n / sr:.3f} s "
                    f"(more than {max_length_diff_s} s apart)"
                )

    def view(self, role: str, rate: int | None) -> np.ndarray | None:
        if role not in self.raw:
            return None
        audio, sr = self.raw[role]
        rate = rate or sr
        key = (role, rate)
        if key not in self._cache:
            mono = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
            self._cache[key] = np.ascontiguousarray(mono if rate == sr else resample(mono, sr, rate), dtype=np.float32)
        return self._cache[key]

    def item(self, metric: Metric) -> ScoreItem:
        info = metric.info
        rate = info.sample_rate or self.raw["estimate"][1]
        return ScoreItem(
            id=self.job.id,
            estimate=self.view("estimate", rate),
            sample_rate=rate,
            reference=self.view("reference", rate) if info.uses("reference") else None,
            mixture=self.view("mixture", rate) if info.uses("mixture") else None,
            caption=self.job.caption,
            captions=self.job.captions,
            task=self.job.task,
        )


def _contained(metric: Metric, items: list[ScoreItem]) -> list[Any]:
    """``compute_batch`` with a crash of the metric (a model error, a bug) turned into an
    error of each item of the batch, so that the other metrics and batches go on."""
    try:
        outs = list(metric.compute_batch(items))
    except Exception as exc:  # noqa: BLE001 - contained to this metric's items
        err = MetricError(f"{metric.info.name} failed on this batch: {type(exc).__name__}: {exc}")
        return [err] * len(items)
    if len(outs) != len(items):
        err = MetricError(f"{metric.info.name} returned {len(outs)} results for {len(items)} items")
        return [err] * len(items)
    return outs


def _loaded_batches(jobs: Iterable[ScoreJob], need_ref: bool, need_mix: bool, batch_size: int, max_length_diff_s: float,
                    allow_resample: bool, downmix: bool, prefetch_batches: int) -> Iterator[list[_Loaded]]:  # fmt: skip
    """Batches of loaded jobs in job order; reading runs ahead in a background thread."""

    def load(job: ScoreJob) -> _Loaded:
        return _Loaded(job, need_ref, need_mix, max_length_diff_s, allow_resample, downmix)

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
            yield batch


def _score_batch(batch: list[_Loaded], metrics: list[Metric]) -> list[dict[str, Any]]:
    """``{metric name: values or exception}`` of each loaded job, for the metrics it asks for."""
    results: list[dict[str, Any]] = [{} for _ in batch]
    for metric in metrics:
        name = metric.info.name
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
            for k, out in zip(ready, _contained(metric, [batch[k].item(metric) for k in ready])):
                results[k][name] = out
    return results


def iter_scores(
    jobs: Iterable[ScoreJob],
    metrics: list[Metric],
    batch_size: int = 16,
    max_length_diff_s: float = 0.1,
    allow_resample: bool = False,
    downmix: bool = False,
    prefetch_batches: int = 2,
) -> Iterator[tuple[ScoreJob, dict[str, dict[str, float] | Exception]]]:
    """Yield ``(job, {metric name: values or exception})`` in the order the jobs are given."""
    need_ref = any(m.info.uses("reference") for m in metrics)
    need_mix = any(m.info.uses("mixture") for m in metrics)
    for batch in _loaded_batches(jobs, need_ref, need_mix, batch_size, max_length_diff_s, allow_resample, downmix,
                                 prefetch_batches):  # fmt: skip
        for ld, res in zip(batch, _score_batch(batch, metrics)):
            yield ld.job, res


def movable(metric: Metric) -> bool:
    """Whether the metric can move its models between devices (``to(device)``, as
    :class:`~hsm_bench.metrics.model_based.EmbedderMetric` does)."""
    return callable(getattr(metric, "to", None))


def metric_passes(metrics: list[Metric]) -> list[list[Metric]]:
    """The passes of metric order: every metric that cannot move (model-free ones, and any
    plugin metric without ``to``, which stays where ``setup`` put it) in the first pass, then
    each movable metric alone, in the order given."""
    fixed = [m for m in metrics if not movable(m)]
    return ([fixed] if fixed else []) + [[m] for m in metrics if movable(m)]


def by_duration(jobs: Iterable[ScoreJob]) -> list[ScoreJob]:
    """Shortest first (stable; jobs without a duration last, in the order given)."""
    return sorted(jobs, key=lambda j: (j.duration_s is None, j.duration_s or 0.0))


def release_device_memory(device: str) -> None:
    """Hand the CUDA caching allocator's free blocks back, so the next model finds the memory
    the previous one used (no-op elsewhere)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def resident(metrics: list[Metric], device: str) -> Iterator[None]:
    """The movable ``metrics`` on ``device`` inside the block, back on the CPU after it (also
    when the block raises), so one pass's models never share the GPU with the next pass's."""
    moving = [m for m in metrics if movable(m)] if device != "cpu" else []
    try:
        for m in moving:
            m.to(device)
        yield
    finally:
        for m in moving:
            m.to("cpu")
        if moving:
            release_device_memory(device)


def iter_metric_passes(
    jobs: Iterable[ScoreJob],
    metrics: list[Metric],
    device: str = "cpu",
    batch_size: int = 16,
    max_length_diff_s: float = 0.1,
    allow_resample: bool = False,
    downmix: bool = False,
    prefetch_batches: int = 2,
) -> Iterator[tuple[ScoreJob, dict[str, dict[str, float] | Exception]]]:
    """Metric order: ``(job, {name: values or exception})`` for the metrics of one pass (see
    :func:`metric_passes`), pass after pass; a job appears once per pass that has work for it.
    Within a pass jobs run shortest first, and a movable metric's models are on ``device``
    only during its own pass (set the metrics up on the CPU)."""
    jobs = list(jobs)
    for group in metric_passes(metrics):
        names = {m.info.name for m in group}
        todo = by_duration(j for j in jobs if j.metrics is None or names & set(j.metrics))
        if not todo:
            continue
        with resident(group, device):
            yield from iter_scores(todo, group, batch_size=batch_size, max_length_diff_s=max_length_diff_s,
                                   allow_resample=allow_resample, downmix=downmix, prefetch_batches=prefetch_batches)  # fmt: skip


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


def score_run(run: RunDir, ts: TestSet, metrics: list[Metric], batch_size: int = 16, progress: bool = True,
              keep_errors: bool = False, shard: tuple[int, int] = (0, 1), order: str = "item",
              device: str = "cpu") -> StageSummary:  # fmt: skip
    """Score the separated outputs of ``run`` that are not yet scored (per item and metric).

    A pair already scored with the current metric version is skipped; one whose latest row
    is an error is scored again unless ``keep_errors``. ``order`` is ``item`` or ``metric``
    (see the module docstring; ``device`` is where metric order moves each model for its pass).
    """
    if order not in SCORE_ORDERS:
        raise ConfigError(f"runtime.score_order={order!r}: choose from {', '.join(SCORE_ORDERS)}")
    from tqdm import tqdm

    sep = run.separation_rows()
    versions = {m.info.name: m.version_key for m in metrics}
    latest: dict[tuple[str, str], dict] = {}
    for r in run.merged_rows("items"):
        if r.get("version") == versions.get(r["metric"]):
            latest[(r["id"], r["metric"])] = r
    done = {k for k, r in latest.items() if keep_errors or r.get("status") == "ok"}
    names = [m.info.name for m in metrics]
    jobs, resumed = [], 0
    ok_rows = [row for row in of_shard(ts, shard) if sep.get(row.id, {}).get("status") == "ok"]
    for row in ok_rows:
        todo = [n for n in names if (row.id, n) not in done]
        if not todo:
            resumed += 1
            continue
        jobs.append(
            ScoreJob(
                id=row.id,
                estimate=run.output_path(row.id),
                reference=ts.path(row.target),
                mixture=ts.path(row.mixture),
                caption=row.caption,
                captions=row.target_captions,
                task=row.task,
                metrics=todo,
                duration_s=row.duration_s,
            )
        )
    summary = StageSummary("score", total=len(ok_rows), resumed=resumed)
    if not jobs:
        return summary
    by_name = {m.info.name: m for m in metrics}
    if order == "metric":
        stream = iter_metric_passes(jobs, metrics, device=device, batch_size=batch_size)
        # a job comes back once per pass: the bar counts (item, metric) pairs
        bar_args = {"total": sum(len(j.metrics or names) for j in jobs), "unit": "pair"}
    else:
        stream = iter_scores(jobs, metrics, batch_size=batch_size)
        bar_args = {"total": len(ok_rows), "initial": resumed, "unit": "item"}
    failed: dict[str, bool] = {}
    t0 = time.perf_counter()
    with JsonlWriter(run.rows_file("items", shard)) as out, tqdm(desc="score", disable=not progress, **bar_args) as bar:
        for job, results in stream:
            rows = long_rows(job.id, results, by_name)
            out.write_many(rows)
            errors = [f"{r['id']} [{r['metric']}]: {r['error']}" for r in rows if r["status"] == "error"]
            failed[job.id] = failed.get(job.id, False) or bool(errors)
            summary.errors.extend(errors)
            bar.update(len(rows) if order == "metric" else 1)
    summary.failed = sum(failed.values())
    summary.done = len(failed) - summary.failed
    summary.seconds = time.perf_counter() - t0
    return summary
