"""``hsm-bench run``: build (if missing) -> separate -> score -> aggregate, each stage resumable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hsm_bench import weights
from hsm_bench.api.metric import Metric
from hsm_bench.api.system import System
from hsm_bench.api.testset import TestSet
from hsm_bench.audio.resample import RESAMPLER_ID
from hsm_bench.pipeline.aggregate import aggregate
from hsm_bench.pipeline.score import ScoreJob, build_metrics, iter_scores, long_rows
from hsm_bench.pipeline.separate import StageSummary, run_separation
from hsm_bench.pipeline.table import print_corpus_table
from hsm_bench.registry import SYSTEMS, TESTSETS
from hsm_bench.store.cache import FeatureCache
from hsm_bench.store.jsonl import JsonlWriter, atomic_write_json, atomic_write_text, read_jsonl
from hsm_bench.store.runstore import RunDir, environment, signature


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def resolve_testset(cfg: DictConfig, progress: bool = True) -> TestSet:
    """The built test set of the config, building it first when allowed."""
    tcfg = cfg.testset
    if tcfg.get("root"):
        return TestSet(Path(tcfg.root).expanduser())
    builder = TESTSETS.get(tcfg.builder)(source=tcfg.get("source"), **_plain(tcfg.get("params") or {}))
    root = builder.output_dir(cfg.paths.data_dir)
    if not (root / "card.json").is_file():
        if not tcfg.get("build_if_missing", True):
            raise FileNotFoundError(
                f"test set {tcfg.name!r} is not built at {root}; run `hsm-bench build-testset {tcfg.name}`"
            )
        print(f"building test set {tcfg.name!r} into {root}")
        builder.build(root, progress=progress)
    return TestSet(root)


def make_system(cfg: DictConfig) -> System:
    cls = SYSTEMS.get(cfg.system.name)
    return cls(**_plain(cfg.system.get("params") or {}))


def run_signature(system: System, ts: TestSet) -> str:
    return signature(
        {
            "system": system.info(),
            "manifest_sha256": ts.manifest_sha256,
            "testset_sample_rate": ts.sample_rate,
            "resampler": RESAMPLER_ID,
        }
    )


def metric_definitions(metrics: list[Metric]) -> dict[str, dict[str, Any]]:
    return {m.info.name: {**m.describe(), "version_key": m.version_key} for m in metrics}


def score_run(run: RunDir, ts: TestSet, metrics: list[Metric], batch_size: int = 16, progress: bool = True) -> StageSummary:
    """Score the separated outputs of ``run`` that are not yet scored (per item and metric)."""
    from tqdm import tqdm

    sep = run.separation_rows()
    versions = {m.info.name: m.version_key for m in metrics}
    done = {(r["id"], r["metric"]) for r in read_jsonl(run.items_jsonl) if r.get("version") == versions.get(r["metric"])}
    names = [m.info.name for m in metrics]
    jobs, resumed = [], 0
    ok_rows = [row for row in ts if sep.get(row.id, {}).get("status") == "ok"]
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
            )
        )
    summary = StageSummary("score", total=len(ok_rows), resumed=resumed)
    if not jobs:
        return summary
    by_name = {m.info.name: m for m in metrics}
    t0 = time.perf_counter()
    with JsonlWriter(run.items_jsonl) as out, tqdm(
        total=len(ok_rows), initial=resumed, desc="score", disable=not progress, unit="item"
    ) as bar:
        for job, results in iter_scores(jobs, metrics, batch_size=batch_size):
            rows = long_rows(job.id, results, by_name)
            out.write_many(rows)
            if any(r["status"] == "error" for r in rows):
                summary.failed += 1
                summary.errors.extend(f"{r['id']} [{r['metric']}]: {r['error']}" for r in rows if r["status"] == "error")
            else:
                summary.done += 1
            bar.update(1)
    summary.seconds = time.perf_counter() - t0
    return summary


def aggregate_run(run: RunDir, ts: TestSet, metric_defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sep = run.separation_rows()
    failed = {i: r.get("error") for i, r in sep.items() if r["status"] != "ok"}
    corpus = aggregate(read_jsonl(run.items_jsonl), [r.id for r in ts], metric_defs, failed)
    corpus["testset"] = {"name": ts.name, "version": ts.card.get("version"), "manifest_sha256": ts.manifest_sha256}
    corpus["system"] = _system_name(run)
    atomic_write_json(run.corpus_json, corpus)
    return corpus


def _system_name(run: RunDir) -> str:
    return run.path.parent.name


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    rt = cfg.runtime
    progress = bool(rt.get("progress", True))
    stages = list(cfg.get("stages") or ["separate", "score", "aggregate"])
    profile: dict[str, Any] = {}
    t = time.perf_counter()
    ts = resolve_testset(cfg, progress)
    profile["build"] = {"seconds": round(time.perf_counter() - t, 3)}

    weights.parse_overrides(_plain(cfg.get("weights") or {}))
    system = make_system(cfg)
    # metrics are set up first so missing weights fail before a long separation
    metrics = build_metrics(list(cfg.metrics.names), _plain(cfg.metrics.get("params") or {}))
    cache = FeatureCache(cfg.paths.cache_dir, enabled=bool(rt.get("feature_cache", True)))
    for m in metrics:
        m.setup(device=rt.get("device", "cpu"), cache=cache)
    defs = metric_definitions(metrics)

    sig = run_signature(system, ts)
    run = RunDir.create(cfg.paths.runs_dir, ts.name, ts.manifest_sha256, system.name, sig)
    atomic_write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    previous = run.update_json(run.run_json)  # keep what earlier (partial) runs recorded
    run.update_json(
        run.run_json,
        signature=sig,
        system=system.info(),
        testset={"name": ts.name, "root": str(ts.root), "card": ts.card, "manifest_sha256": ts.manifest_sha256},
        resampler=RESAMPLER_ID,
        metrics={**previous.get("metrics", {}), **defs},
        environment=environment(),
    )
    print(f"run folder: {run.path}")

    summaries = []
    if "separate" in stages:
        # weights are loaded only when something is left to separate
        separated = run.separation_rows()
        if any(r.id not in separated for r in ts):
            system.load(rt.get("device", "cpu"))
        bs = rt.get("batch_size") or cfg.system.get("batch_size") or 8
        s = run_separation(system, ts, run, batch_size=int(bs), progress=progress, retry_errors=bool(rt.get("retry_errors", False)))
        summaries.append(s)
        print(s.line())
    if "score" in stages:
        s = score_run(run, ts, metrics, batch_size=int(rt.get("score_batch_size", 16)), progress=progress)
        summaries.append(s)
        print(s.line())
    corpus = None
    if "aggregate" in stages:
        corpus = aggregate_run(run, ts, defs)
        print_corpus_table(corpus, title=f"{system.name} on {ts.name} ({len(ts)} items)")
    for s in summaries:
        profile[s.stage] = {
            "seconds": round(s.seconds, 3), "done": s.done, "failed": s.failed, "resumed": s.resumed,
            "items_per_s": round(s.done / s.seconds, 3) if s.seconds else None,
        }  # fmt: skip
        if s.errors:
            print(f"{s.stage}: {len(s.errors)} item error(s), first: {s.errors[0]}")
    run.update_json(run.profile_json, **{time.strftime("%Y%m%dT%H%M%S"): profile})
    return {"run_dir": str(run.path), "corpus": corpus}
