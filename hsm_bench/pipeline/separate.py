"""Stage 1: run a system over a test set and write its outputs.

The harness owns audio handling: it reads the mixtures (and, for oracles, the target and
interferer), resamples them to the system's rate, batches items of similar length,
zero-pads, calls ``separate``, checks and trims each output, resamples it back to the
test-set rate and writes ``outputs/<id>.wav`` plus one ``separate.jsonl`` row per item.
A failing item becomes an error row; the run goes on. Items that already have a row are
skipped, so a rerun resumes; items that failed are tried again unless ``keep_errors``
(failures are often environmental: a full disk, a busy GPU).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hsm_bench.api.system import SeparationBatch, SeparationError, System
from hsm_bench.api.testset import ManifestRow, TestSet
from hsm_bench.audio.chunking import chunk_spans, overlap_add
from hsm_bench.audio.io import read_audio, write_audio
from hsm_bench.audio.resample import resample
from hsm_bench.pipeline.sharding import of_shard
from hsm_bench.pipeline.summary import StageSummary
from hsm_bench.store.jsonl import JsonlWriter
from hsm_bench.store.runstore import RunDir

# Resampling out and back may change a length by a sample or two; more is a real error.
LENGTH_TOLERANCE = 2


class ItemError(SeparationError):
    """A problem with one item found by the harness (input, output shape, NaN, length)."""


def _load_item(ts: TestSet, row: ManifestRow, system: System) -> tuple[dict[str, np.ndarray], int]:
    """Inputs at the system's rate and the mixture's length at the test set's rate."""
    roles = ["mixture"] + (["target", "interferer"] if system.requires_target else [])
    out = {}
    for role in roles:
        audio, sr = read_audio(ts.path(getattr(row, role)), mono=False)
        audio = audio if audio.ndim == 2 else audio[None]
        if sr != ts.sample_rate:
            raise ItemError(f"{role} is {sr} Hz, the test set declares {ts.sample_rate} Hz")
        if audio.shape[0] != system.channels:
            audio = audio.mean(axis=0, keepdims=True) if system.channels == 1 else audio
        if audio.shape[0] != system.channels:
            raise ItemError(f"{role} has {audio.shape[0]} channels, {system.name} takes {system.channels}")
        if role == "mixture":
            n_test = audio.shape[-1]
        out[role] = resample(audio, ts.sample_rate, system.sample_rate)
    return out, n_test


def _batch(items: list[tuple[ManifestRow, dict[str, np.ndarray]]], system: System) -> SeparationBatch:
    lengths = [a["mixture"].shape[-1] for _, a in items]
    n = max(lengths)

    def stack(role: str) -> torch.Tensor:
        x = np.zeros((len(items), system.channels, n), dtype=np.float32)
        for k, (_, a) in enumerate(items):
            x[k, :, : a[role].shape[-1]] = a[role]
        return torch.from_numpy(x).to(system.device)

    rows = [r for r, _ in items]
    native = set(system.tasks)
    return SeparationBatch(
        item_ids=[r.id for r in rows],
        mixture=stack("mixture"),
        lengths=torch.tensor(lengths),
        instructions=[r.instruction for r in rows],
        # an extraction-only system extracts the described sound of a "remove" item
        task=[r.task if r.task in native else "extract" for r in rows],
        caption=[r.caption for r in rows],
        query_style=[r.query_style for r in rows],
        target=stack("target") if system.requires_target else None,
        interferer=stack("interferer") if system.requires_target else None,
    )


def _run_system(system: System, items: list[tuple[ManifestRow, dict[str, np.ndarray]]]) -> list[np.ndarray]:
    """Outputs [C, T_sys] per item, chunking items longer than the system's maximum."""
    max_len = int(system.max_duration_s * system.sample_rate) if system.max_duration_s else None
    if max_len is None or all(a["mixture"].shape[-1] <= max_len for _, a in items):
        with torch.inference_mode():
            out = system.separate(_batch(items, system))
        if not isinstance(out, torch.Tensor) or out.ndim != 3 or out.shape[0] != len(items):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ItemError(f"separate() must return [B, C, T] with B={len(items)}, got {shape}")
        out = out.detach().float().cpu().numpy()
        return [out[k, :, : a["mixture"].shape[-1]] for k, (_, a) in enumerate(items)]
    results = []
    for row, audio in items:  # long items alone, window by window
        n = audio["mixture"].shape[-1]
        spans = chunk_spans(n, max_len, overlap=max_len // 10)
        chunks = []
        for s, e in spans:
            part = {k: v[..., s:e] for k, v in audio.items()}
            chunks.extend(_run_system(system, [(row, part)]))
        results.append(overlap_add(chunks, spans, n))
    return results


def _separate(system: System, items: list[tuple[ManifestRow, dict[str, np.ndarray]]]) -> list[np.ndarray]:
    """Outputs per item; "remove" items of an extraction-only system become the mixture minus
    the extraction, at the system's rate (before the output is resampled back)."""
    outs = _run_system(system, items)
    if "remove" in system.tasks:
        return outs
    return [a["mixture"][:, : o.shape[-1]] - o if row.task == "remove" else o for (row, a), o in zip(items, outs)]


def _finish(out: np.ndarray, n_expected: int, system: System, test_sr: int) -> np.ndarray:
    """Check one output and bring it to the test set's rate and length, mono."""
    if out.shape[0] != system.channels:
        raise ItemError(f"output has {out.shape[0]} channels, {system.name} declares {system.channels}")
    bad = int((~np.isfinite(out)).sum())
    if bad:
        raise ItemError(f"output contains {bad} NaN/Inf sample(s)")
    mono = out.mean(axis=0)
    mono = resample(mono, system.sample_rate, test_sr)
    if len(mono) < n_expected - LENGTH_TOLERANCE:
        raise ItemError(f"output has {len(mono)} samples at {test_sr} Hz, expected {n_expected}")
    if len(mono) < n_expected:
        mono = np.pad(mono, (0, n_expected - len(mono)))
    return mono[:n_expected].astype(np.float32)


FEATURES = "features"


def write_artifacts(root: Path, artifacts: dict[str, Any]) -> None:
    """Write a system's per-item files under ``root`` atomically (a temporary name, then a rename)."""
    for rel, value in artifacts.items():
        path = (root / rel).resolve()
        if root.resolve() not in path.parents:
            raise ItemError(f"artifact path {rel!r} leaves the run folder's {FEATURES}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                if isinstance(value, dict):
                    np.savez(f, **{k: np.asarray(v) for k, v in value.items()})
                else:
                    np.save(f, np.asarray(value))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def pending_items(ts: TestSet, run: RunDir, keep_errors: bool = False, shard: tuple[int, int] = (0, 1)) -> list[ManifestRow]:
    """Items of ``shard`` still to separate: no row yet, an ok row whose output file is gone,
    or an error row (unless ``keep_errors``)."""
    previous = run.separation_rows()

    def finished(item_id: str) -> bool:
        r = previous.get(item_id)
        if r is None:
            return False
        if r["status"] == "ok":
            return run.output_path(item_id).exists()
        return keep_errors

    return [r for r in of_shard(ts, shard) if not finished(r.id)]


def run_separation(
    system: System,
    ts: TestSet,
    run: RunDir,
    batch_size: int = 8,
    progress: bool = True,
    keep_errors: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> StageSummary:
    rows = of_shard(ts, shard)
    todo = pending_items(ts, run, keep_errors, shard)
    summary = StageSummary("separate", total=len(rows), resumed=len(rows) - len(todo))
    if not todo:
        return summary
    t0 = time.perf_counter()
    bar = tqdm(total=len(rows), initial=summary.resumed, desc=f"separate {system.name}", disable=not progress, unit="item")
    # batching by length keeps padding small; ties keep manifest order
    todo.sort(key=lambda r: r.duration_s)
    with JsonlWriter(run.rows_file("separate", shard)) as log:

        def record(row: ManifestRow, status: str, seconds: float, error: str | None = None, n: int = 0) -> None:
            log.write(
                {
                    "id": row.id,
                    "status": status,
                    "output": f"outputs/{row.id}.wav" if status == "ok" else None,
                    "n_samples": n,
                    "seconds": round(seconds, 4),
                    "error": error,
                }
            )
            if status == "ok":
                summary.done += 1
            else:
                summary.failed += 1
                summary.errors.append(f"{row.id}: {error}")
            bar.update(1)

        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            loaded = []
            for row in chunk:
                try:
                    audio, n_test = _load_item(ts, row, system)
                    loaded.append((row, audio, n_test))
                except Exception as exc:
                    record(row, "error", 0.0, f"cannot load input: {exc}")
            if not loaded:
                continue
            tb = time.perf_counter()
            try:
                outs = _separate(system, [(r, a) for r, a, _ in loaded])
                groups = [(loaded, outs, (time.perf_counter() - tb) / len(loaded))]
            except Exception:
                # isolate the failing item(s): rerun the batch one item at a time
                for r, _, _ in loaded:  # what the failed batch left behind
                    system.take_artifacts(r.id)
                groups = []
                for r, a, n in loaded:
                    ti = time.perf_counter()
                    try:
                        groups.append(([(r, a, n)], _separate(system, [(r, a)]), time.perf_counter() - ti))
                    except Exception as exc:
                        system.take_artifacts(r.id)
                        record(r, "error", time.perf_counter() - ti, f"system failed: {_describe(exc)}")
            for group, outs, secs in groups:
                for (row, _, n_test), out in zip(group, outs):
                    artifacts = system.take_artifacts(row.id)  # taken whatever happens next: a retry starts afresh
                    try:
                        mono = _finish(out, n_test, system, ts.sample_rate)
                        write_audio(run.output_path(row.id), mono, ts.sample_rate)
                        write_artifacts(run.path / FEATURES, artifacts)
                        record(row, "ok", secs, n=len(mono))
                    except Exception as exc:
                        record(row, "error", secs, _describe(exc))
    bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SeparationError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"
