"""Stage 3: corpus numbers from the per-item rows.

For every output key: the mean over items with a finite value, a 95% percentile
bootstrap confidence interval of that mean (1000 resamples, fixed seed, items in id
order, so the interval does not depend on the order rows were written), ``n``,
``n_failed`` (items with no value: separation or metric error) and ``n_nonfinite``
(e.g. +inf PSNR of identical spectrograms, which audioldm-eval leaves out of its mean).

A run folder has one answer: :func:`aggregate_run` covers every metric ever scored in the
folder (the definitions ``run.json`` keeps), whichever subset this invocation asked for;
``hsm-bench aggregate RUN_DIR`` and ``hsm-bench run`` therefore write the same corpus.json.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from hsm_bench.api.testset import TestSet
from hsm_bench.store.jsonl import atomic_write_json
from hsm_bench.store.runstore import RunDir

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    if n == 1:
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for k in range(0, resamples, 100):  # in blocks: bounded memory for large n
        m = min(100, resamples - k)
        means[k : k + m] = values[rng.integers(0, n, size=(m, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def latest_rows(rows: Iterable[dict[str, Any]], versions: dict[str, str] | None = None) -> dict[tuple[str, str], dict]:
    """Last row per (id, metric); rows of other metric versions are ignored."""
    out: dict[tuple[str, str], dict] = {}
    for row in rows:
        if versions is not None and versions.get(row["metric"]) != row.get("version"):
            continue
        out[(row["id"], row["metric"])] = row
    return out


def aggregate(
    rows: Iterable[dict[str, Any]],
    item_ids: list[str],
    metric_info: dict[str, dict[str, Any]],
    failed_ids: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Corpus summary for ``item_ids``.

    ``metric_info`` maps metric name -> ``Metric.describe()`` (with its version key);
    ``failed_ids`` maps ids whose separation failed to the reason.
    """
    failed_ids = failed_ids or {}
    versions = {name: d["version_key"] for name, d in metric_info.items()}
    latest = latest_rows(rows, versions)
    ids = sorted(item_ids)
    corpus: dict[str, Any] = {}
    errors: dict[str, int] = defaultdict(int)
    for name, desc in metric_info.items():
        for key in desc["outputs"]:
            finite, nonfinite = [], defaultdict(int)
            n_failed = 0
            for i in ids:
                row = latest.get((i, name))
                if row is None or row["status"] != "ok" or key not in row.get("values", {}):
                    n_failed += 1
                    if row is not None and row["status"] == "error":
                        errors[row["error"]] += 1
                    continue
                v = row["values"][key]
                if v is None or not math.isfinite(v):  # rows read back from JSON hold None
                    nonfinite[row.get("nonfinite", {}).get(key, "nan")] += 1
                else:
                    finite.append(v)
            arr = np.asarray(finite, dtype=np.float64)
            lo, hi = bootstrap_ci(arr)
            entry = {
                "mean": float(arr.mean()) if len(arr) else None,
                "ci95": [lo, hi] if len(arr) else None,
                "n": len(arr),
                "n_failed": n_failed,
                "n_nonfinite": sum(nonfinite.values()),
                "higher_is_better": desc["higher_is_better"],
                "metric": name,
                "version": desc["version"],
                "version_key": desc["version_key"],
            }
            if nonfinite:
                entry["nonfinite"] = dict(nonfinite)
                if not len(arr):
                    entry["reason"] = "every value is non-finite: " + ", ".join(
                        f"{c} x {lab}" for lab, c in nonfinite.items()
                    )
            corpus[key] = entry
    return {
        "n_items": len(ids),
        "n_separation_failed": len([i for i in ids if i in failed_ids]),
        "metrics": corpus,
        "metric_definitions": metric_info,
    }


def aggregate_run(run: RunDir, ts: TestSet, metric_defs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``corpus.json`` of a run folder; ``metric_defs`` defaults to every metric run.json records."""
    if metric_defs is None:
        metric_defs = run.read_json(run.run_json).get("metrics", {})
    sep = run.separation_rows()
    failed = {i: r.get("error") for i, r in sep.items() if r["status"] != "ok"}
    corpus = aggregate(run.merged_rows("items"), [r.id for r in ts], metric_defs, failed)
    corpus["testset"] = {"name": ts.name, "version": ts.card.get("version"), "manifest_sha256": ts.manifest_sha256}
    corpus["system"] = run.path.parent.name
    atomic_write_json(run.corpus_json, corpus)
    return corpus


def format_value(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        labels = entry.get("nonfinite") or {}
        return next(iter(labels)) if len(labels) == 1 else "n/a"
    return f"{entry['mean']:.3f}"
