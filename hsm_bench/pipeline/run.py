"""``hsm-bench run``: build (if missing) -> separate -> score -> aggregate, each stage resumable.

This module only orchestrates; each stage lives in its own module. Everything that can
fail before the first item is processed (test set, parameters, device, weights, metric
and system loading) is checked first and raises a one-line
:class:`~hsm_bench.errors.HsmBenchError`; only then is the run folder created, so a setup
error never leaves a half-made folder behind.
"""

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
from hsm_bench.errors import BuildError, ConfigError, HsmBenchError, SetupError
from hsm_bench.params import check_bool, check_choice, check_device, check_params, check_positive_int
from hsm_bench.pipeline.aggregate import aggregate_run
from hsm_bench.pipeline.score import SCORE_ORDERS, build_metrics, metric_definitions, movable, score_run
from hsm_bench.pipeline.separate import pending_items, run_separation
from hsm_bench.pipeline.sharding import check_shard, of_shard
from hsm_bench.pipeline.summary import Outcome, score_outcome
from hsm_bench.pipeline.table import asked_keys, print_corpus_table
from hsm_bench.registry import SYSTEMS, TESTSETS, resolve_metric_request
from hsm_bench.store.cache import FeatureCache
from hsm_bench.store.jsonl import atomic_write_text
from hsm_bench.store.runstore import RunDir, environment, signature

STAGES = ("separate", "score", "aggregate")


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
            raise SetupError(
                f"test set {tcfg.name!r} is not built at {root}; run `hsm-bench build-testset {tcfg.name}`"
            )
        print(f"building test set {tcfg.name!r} into {root}")
        try:
            builder.build(root, progress=progress)
        except BuildError as exc:
            if tcfg.get("source"):
                raise
            raise BuildError(
                f"test set {tcfg.name!r} is not built and cannot be built without its source data ({exc}); "
                f"build it with `hsm-bench build-testset {tcfg.name} --source DIR` or pass testset.source=DIR"
            ) from None
    return TestSet(root)


def make_system(cfg: DictConfig) -> System:
    """The configured system, constructed cheaply; bad parameters are ConfigErrors."""
    name = cfg.system.name
    cls = SYSTEMS.get(name)
    params = _plain(cfg.system.get("params") or {})
    check_params(cls, params, "system.params", f"system {name!r}")
    try:
        return cls(**params)
    except HsmBenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"system.params: {name}: {exc}") from exc


def run_signature(system: System, ts: TestSet) -> str:
    return signature(
        {
            "system": system.info(),
            "manifest_sha256": ts.manifest_sha256,
            "testset_sample_rate": ts.sample_rate,
            "resampler": RESAMPLER_ID,
        }
    )


def _setup(what: str, fn, *args: Any) -> None:
    """Run a loading step; anything but a user-facing error becomes a one-line SetupError."""
    try:
        fn(*args)
    except HsmBenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model that cannot load is a setup failure
        raise SetupError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc


def _runtime(cfg: DictConfig) -> dict[str, Any]:
    rt = cfg.runtime
    stages = list(cfg.get("stages") or STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {', '.join(map(str, unknown))}; choose from {', '.join(STAGES)}")
    return {
        "stages": stages,
        "device": check_device(rt.get("device", "cpu")),
        "batch_size": check_positive_int(rt.get("batch_size"), "runtime.batch_size", allow_none=True),
        "score_batch_size": check_positive_int(rt.get("score_batch_size", 16), "runtime.score_batch_size"),
        "progress": check_bool(rt.get("progress", True), "runtime.progress"),
        "keep_errors": check_bool(rt.get("keep_errors", False), "runtime.keep_errors"),
        "feature_cache": check_bool(rt.get("feature_cache", True), "runtime.feature_cache"),
        "threads": check_positive_int(rt.get("threads"), "runtime.threads", allow_none=True),
        "score_order": check_choice(rt.get("score_order", "item"), SCORE_ORDERS, "runtime.score_order"),
        "shard": check_shard((rt.get("shard") or {}).get("index", 0), (rt.get("shard") or {}).get("count", 1)),
    }


def run_pipeline(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured stages; returns ``{run_dir, corpus, status, problem}``.

    ``status`` is the exit status of :mod:`hsm_bench.errors` (0 all ok, 1 some items failed,
    2 nothing succeeded) and ``problem`` the one line that explains a non-zero status.
    """
    opts = _runtime(cfg)
    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    with weights.overrides(_plain(cfg.get("weights") or {})):
        return _run(cfg, opts)


def _run(cfg: DictConfig, opts: dict[str, Any]) -> dict[str, Any]:
    stages, device, progress = opts["stages"], opts["device"], opts["progress"]
    # cheap checks first: a typo or a missing checkpoint must not wait for a test-set build
    system = make_system(cfg)
    names, asked = resolve_metric_request(list(cfg.metrics.names))
    metrics = build_metrics(names, _plain(cfg.metrics.get("params") or {}))
    # every missing checkpoint named at once, before anything heavy is loaded
    weights.require([*system.required_weights(), *(w for m in metrics for w in m.required_weights())])

    profile: dict[str, Any] = {}
    t = time.perf_counter()
    ts = resolve_testset(cfg, progress)
    profile["build"] = {"seconds": round(time.perf_counter() - t, 3)}
    cache = FeatureCache(cfg.paths.cache_dir, enabled=opts["feature_cache"])
    for m in metrics:
        # metric order: loaded (weights read, checkpoint hashes known for the resume keys) on
        # the CPU now, on the run device only during the metric's own score pass
        where = "cpu" if opts["score_order"] == "metric" and movable(m) else device
        _setup(f"metric {m.info.name}", m.setup, where, cache)

    sig = run_signature(system, ts)
    run = RunDir.locate(cfg.paths.runs_dir, ts.name, ts.manifest_sha256, system.name, sig)
    shard = opts["shard"]
    todo = pending_items(ts, run, opts["keep_errors"], shard) if "separate" in stages else []
    if todo:  # weights are loaded only when something is left to separate
        _setup(f"system {system.name}", system.load, device)
    run.make()
    with run.shard_lock(shard):  # one process per shard; others stop with one line
        return _stages(cfg, opts, run, ts, system, metrics, names, asked, sig, profile)


def _stages(cfg: DictConfig, opts: dict[str, Any], run: RunDir, ts: TestSet, system: System, metrics: list[Metric],
            names: list[str], asked: dict, sig: str, profile: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    stages, progress, shard = opts["stages"], opts["progress"], opts["shard"]

    defs = metric_definitions(metrics)
    with run.folder_lock():  # shards of one run start together
        atomic_write_text(run.path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    previous = run.read_json(run.run_json)  # keep what earlier (partial) runs recorded
    run.update_json(
        run.run_json,
        signature=sig,
        system=system.info(),
        testset={"name": ts.name, "root": str(ts.root), "card": ts.card, "manifest_sha256": ts.manifest_sha256},
        resampler=RESAMPLER_ID,
        metrics={**previous.get("metrics", {}), **defs},
        environment=environment(),
    )
    where = "" if shard[1] == 1 else f" (shard {shard[0]}/{shard[1]}: {len(of_shard(ts, shard))} of {len(ts)} items)"
    print(f"run folder: {run.path}{where}")

    summaries = []
    if "separate" in stages:
        bs = opts["batch_size"] or cfg.system.get("batch_size") or 8
        s = run_separation(system, ts, run, batch_size=int(bs), progress=progress, keep_errors=opts["keep_errors"],
                           shard=shard)  # fmt: skip
        summaries.append(s)
        print(s.line())
    if "score" in stages:
        s = score_run(run, ts, metrics, batch_size=opts["score_batch_size"], progress=progress,
                      keep_errors=opts["keep_errors"], shard=shard, order=opts["score_order"],
                      device=opts["device"])  # fmt: skip
        summaries.append(s)
        print(s.line())
    corpus = None
    if "aggregate" in stages:
        corpus = _aggregate_when_complete(run, ts, metrics, shard)
        if corpus is not None:
            print_corpus_table(corpus, title=f"{system.name} on {ts.name} ({len(ts)} items)",
                               keys=asked_keys(defs, asked))  # fmt: skip
    for s in summaries:
        profile[s.stage] = s.profile()
    stamp = time.strftime("%Y%m%dT%H%M%S") + ("" if shard[1] == 1 else f"-shard{shard[0]}of{shard[1]}")
    run.update_json(run.profile_json, **{stamp: profile})

    outcome = run_outcome(run, ts, metrics, scored="score" in stages, shard=shard)
    return {"run_dir": str(run.path), "corpus": corpus, "status": outcome.status, "problem": outcome.problem()}


def _aggregate_when_complete(run: RunDir, ts: TestSet, metrics: list[Metric], shard: tuple[int, int]) -> dict | None:
    """corpus.json of every metric scored in the folder, written by whichever shard finds every
    item of every shard separated (or failed) and scored; once per state of the row files."""
    if shard[1] == 1:
        return aggregate_run(run, ts)
    with run.folder_lock():
        sep = run.separation_rows()
        versions = {m.info.name: m.version_key for m in metrics}
        scored = {(r["id"], r["metric"]) for r in run.merged_rows("items") if versions.get(r["metric"]) == r.get("version")}
        waiting = [r.id for r in ts if r.id not in sep or (sep[r.id]["status"] == "ok" and
                   any((r.id, m) not in scored for m in versions))]  # fmt: skip
        if waiting:
            print(f"shard {shard[0]}/{shard[1]} done; {len(waiting)} item(s) of other shards still to do: the last "
                  f"shard writes corpus.json (or run `hsm-bench aggregate {run.path}`)")  # fmt: skip
            return None
        state = [[f.name, f.stat().st_size] for kind in ("separate", "items") for f in run.row_files(kind)]
        if run.read_json(run.run_json).get("merged_rows") == state and run.corpus_json.exists():
            return run.read_json(run.corpus_json)  # another shard merged this very state
        corpus = aggregate_run(run, ts)
        info = run.read_json(run.run_json)
        info["merged_rows"] = state
        from hsm_bench.store.jsonl import atomic_write_json

        atomic_write_json(run.run_json, info)
        return corpus


def run_outcome(run: RunDir, ts: TestSet, metrics: list[Metric], scored: bool = True,
                shard: tuple[int, int] = (0, 1)) -> Outcome:  # fmt: skip
    """The final state of the shard's items in the run folder for these metrics (what the exit
    status reports)."""
    items = of_shard(ts, shard)
    sep = run.separation_rows()
    failed = [r.id for r in items if sep.get(r.id, {}).get("status") != "ok"]
    first = next((f"{i}: {sep[i].get('error')}" if i in sep else f"{i}: not separated" for i in failed), None)
    outcome = Outcome(n_items=len(items), separation_failed=failed, separation_first_error=first,
                      separation_rows=run.rows_file("separate", shard), scored=scored and bool(metrics))  # fmt: skip
    if outcome.scored:
        versions = {m.info.name: m.version_key for m in metrics}
        rows = (r for r in run.merged_rows("items") if versions.get(r["metric"]) == r.get("version"))
        failed_set = set(failed)
        ok_ids = [r.id for r in items if r.id not in failed_set]
        score_outcome(outcome, rows, ok_ids, list(versions), run.rows_file("items", shard))
    return outcome
