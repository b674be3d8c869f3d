"""End-to-end pipeline on a tiny synthetic set: oracle bounds, failures, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.pipeline.run import run_pipeline
from hsm_bench.registry import SYSTEMS
from hsm_bench.store.jsonl import read_jsonl


def _run(compose_config, tiny_testset, runs, system, *extra):
    cfg = compose_config(
        f"system={system}" if system in ("oracle_irm", "oracle_mixture", "oracle_target") else "system=oracle_mixture",
        *([] if system in ("oracle_irm", "oracle_mixture", "oracle_target") else [f"system.name={system}"]),
        f"testset.root={tiny_testset}",
        f"paths.runs_dir={runs}",
        "runtime.progress=false",
        *extra,
    )
    return run_pipeline(cfg)


def _metric(corpus, key):
    return corpus["metrics"][key]


def _items(run_dir):
    return list(read_jsonl(f"{run_dir}/items.jsonl"))


def test_oracles_bound_every_metric(compose_config, tiny_testset, tmp_path):
    target = _run(compose_config, tiny_testset, tmp_path, "oracle_target")["corpus"]
    mixture = _run(compose_config, tiny_testset, tmp_path, "oracle_mixture")["corpus"]
    irm = _run(compose_config, tiny_testset, tmp_path, "oracle_irm")["corpus"]
    n = target["n_items"]

    # the target oracle reaches each reference metric's best value
    # zero up to the definition's own eps: log10(R^2 / (R + 1e-12)^2 + 1e-12) of weak bins
    assert 0.0 <= _metric(target, "lsd_aligned")["mean"] < 1e-9
    assert _metric(target, "psnr")["n_nonfinite"] == n and _metric(target, "psnr")["mean"] is None
    assert _metric(target, "psnr")["nonfinite"] == {"+inf": n}
    # SDR of identical signals sits at the clipping cap 10 log10(P / 1e-10)
    for row in _items(_run(compose_config, tiny_testset, tmp_path, "oracle_target")["run_dir"]):
        if row["metric"] == "sdr":
            ref, _ = sf.read(tiny_testset / f"audio/target/{row['id']}.wav", dtype="float32")
            cap = 10 * math.log10(np.mean(ref.astype(np.float64) ** 2) / 1e-10)
            assert row["values"]["sdr"] == pytest.approx(cap, abs=1e-6)

    # the mixture oracle improves nothing, exactly
    for key in ("sdri", "si_sdri"):
        m = _metric(mixture, key)
        assert m["mean"] == 0.0 and m["ci95"] == [0.0, 0.0] and m["n"] == n

    # the ideal ratio mask lies in between
    assert 0 < _metric(irm, "sdri")["mean"]
    assert _metric(irm, "sdr")["mean"] < _metric(target, "sdr")["mean"]
    assert 0 < _metric(irm, "lsd_aligned")["mean"] < _metric(mixture, "lsd_aligned")["mean"]
    assert _metric(mixture, "psnr")["mean"] < _metric(irm, "psnr")["mean"]
    for key in ("lsd", "lsd_aligned", "psnr", "sdr", "si_sdr"):
        assert _metric(irm, key)["n_failed"] == 0


class FlakySystem(System):
    """Returns the mixture but misbehaves on chosen items."""

    name = "flaky"
    calls: list[str] = []

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        FlakySystem.calls.extend(batch.item_ids)
        out = batch.mixture.clone()
        for k, item in enumerate(batch.item_ids):
            if item == "tiny-001":
                out[k, 0, 100] = float("nan")
            if item == "tiny-002":
                raise RuntimeError("model exploded on this item")
        if "tiny-003" in batch.item_ids:
            out = out[..., : out.shape[-1] // 2]  # wrong length
        return out


class CrashAfter(System):
    """Kills the run (like a Ctrl-C) once `limit` items were separated."""

    name = "crash_after"
    limit = 5
    seen: list[str] = []

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        if len(CrashAfter.seen) >= CrashAfter.limit:
            raise KeyboardInterrupt
        CrashAfter.seen.extend(batch.item_ids)
        return batch.mixture.clone() * 0.5 + 0.01


@pytest.fixture
def extra_systems():
    SYSTEMS.register("flaky", FlakySystem)
    SYSTEMS.register("crash_after", CrashAfter)
    yield
    for name in ("flaky", "crash_after"):
        SYSTEMS._targets.pop(name, None)
        SYSTEMS._loaded.pop(name, None)


def test_item_failures_are_recorded_and_the_run_goes_on(compose_config, tiny_testset, tmp_path, extra_systems):
    FlakySystem.calls = []
    out = _run(compose_config, tiny_testset, tmp_path, "flaky", "runtime.batch_size=4")
    sep = {r["id"]: r for r in read_jsonl(f"{out['run_dir']}/separate.jsonl")}
    assert sep["tiny-001"]["status"] == "error" and "NaN" in sep["tiny-001"]["error"]
    assert sep["tiny-002"]["status"] == "error" and "model exploded" in sep["tiny-002"]["error"]
    assert sep["tiny-003"]["status"] == "error" and "samples" in sep["tiny-003"]["error"]
    ok = [i for i, r in sep.items() if r["status"] == "ok"]
    assert len(ok) == 9
    corpus = out["corpus"]
    assert corpus["n_separation_failed"] == 3
    assert corpus["metrics"]["sdr"]["n"] == 9 and corpus["metrics"]["sdr"]["n_failed"] == 3
    # the other items of the failing batches were still separated
    assert {"tiny-000", "tiny-004"} <= set(ok)


def test_unreadable_mixture_is_an_item_error(compose_config, tmp_path):
    from tests.conftest import build_tiny_testset

    root = build_tiny_testset(tmp_path / "broken" / "v1", n_items=4)
    (root / "audio/mixture/tiny-002.wav").write_bytes(b"RIFF....not audio at all")
    out = _run(compose_config, root, tmp_path / "runs", "oracle_mixture")
    sep = {r["id"]: r for r in read_jsonl(f"{out['run_dir']}/separate.jsonl")}
    assert sep["tiny-002"]["status"] == "error" and "cannot load input" in sep["tiny-002"]["error"]
    assert out["corpus"]["metrics"]["sdr"]["n"] == 3


def test_killed_run_resumes_to_the_same_corpus(compose_config, tiny_testset, tmp_path, extra_systems):
    CrashAfter.seen = []
    with pytest.raises(KeyboardInterrupt):
        _run(compose_config, tiny_testset, tmp_path / "a", "crash_after", "runtime.batch_size=1")
    first = list(CrashAfter.seen)
    assert len(first) == 5
    CrashAfter.limit = 10**6
    try:
        resumed = _run(compose_config, tiny_testset, tmp_path / "a", "crash_after", "runtime.batch_size=1")
        # finished items were not separated again
        assert sorted(CrashAfter.seen) == sorted(set(CrashAfter.seen))
        assert len(CrashAfter.seen) == 12
        CrashAfter.seen = []
        straight = _run(compose_config, tiny_testset, tmp_path / "b", "crash_after", "runtime.batch_size=1")
    finally:
        CrashAfter.limit = 5
    rows = _items(resumed["run_dir"])
    keys = [(r["id"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12 * 3  # no duplicate ids
    a = json.loads(open(f"{resumed['run_dir']}/corpus.json").read())
    b = json.loads(open(f"{straight['run_dir']}/corpus.json").read())
    assert a == b


def test_rerun_recomputes_nothing_and_adding_a_metric_keeps_outputs(compose_config, tiny_testset, tmp_path):
    first = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr]")
    outputs = sorted((tmp_path).rglob("outputs/*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}
    n_rows = len(_items(first["run_dir"]))
    again = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr]")
    assert again["run_dir"] == first["run_dir"] and len(_items(again["run_dir"])) == n_rows
    more = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr,lsd]")
    assert more["run_dir"] == first["run_dir"]
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes  # the system did not run again
    assert len(_items(more["run_dir"])) == 2 * n_rows
    assert set(more["corpus"]["metrics"]) == {"sdr", "sdri", "si_sdr", "si_sdri", "lsd", "lsd_aligned"}


def test_run_folder_records_provenance(compose_config, tiny_testset, tmp_path):
    out = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr]")
    run = json.loads(open(f"{out['run_dir']}/run.json").read())
    assert run["testset"]["manifest_sha256"] and run["system"]["name"] == "oracle_irm"
    assert run["system"]["params"] == {"n_fft": 1024, "hop": 256, "beta": 0.5}
    assert run["metrics"]["sdr"]["version"] == "1" and run["environment"]["packages"]["torch"]
    assert run["resampler"] == "soxr-vhq"
    # batch size and device are not part of the run's identity
    other = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr]", "runtime.batch_size=3")
    assert other["run_dir"] == out["run_dir"]
    changed = _run(compose_config, tiny_testset, tmp_path, "oracle_irm", "metrics.names=[sdr]", "system.params.beta=1.0")
    assert changed["run_dir"] != out["run_dir"]


class DescribedSound(System):
    """An extraction-only "oracle": returns the sound the caption describes (target or interferer)."""

    name = "described_sound"
    requires_target = True
    tasks = ("extract",)
    seen_tasks: list[str] = []
    seen_styles: list[str] = []

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        DescribedSound.seen_tasks.extend(batch.task)
        DescribedSound.seen_styles.extend(batch.query_style)
        pick = [0 if c.startswith("a harmonic") else 1 for c in batch.caption]  # the tiny set's two captions
        return torch.stack([batch.target[k] if p == 0 else batch.interferer[k] for k, p in enumerate(pick)])


def test_removal_for_an_extraction_only_system_is_mixture_minus_extraction(compose_config, tiny_testset, tmp_path):
    DescribedSound.seen_tasks, DescribedSound.seen_styles = [], []
    SYSTEMS.register("described_sound", DescribedSound)
    try:
        out = _run(compose_config, tiny_testset, tmp_path, "described_sound", "metrics.names=[sdr]")
    finally:
        SYSTEMS.unregister("described_sound")
    assert set(DescribedSound.seen_tasks) == {"extract"} and len(DescribedSound.seen_tasks) == 12
    assert set(DescribedSound.seen_styles) == {"caption"}
    run = json.loads(open(f"{out['run_dir']}/run.json").read())
    assert run["system"]["remove"] == "mixture minus extraction (harness)"
    rows = {r["id"]: r for r in _items(out["run_dir"])}
    for k in range(12):
        item = f"tiny-{k:03d}"
        est, _ = sf.read(f"{out['run_dir']}/outputs/{item}.wav", dtype="float32")
        ref, _ = sf.read(tiny_testset / f"audio/target/{item}.wav", dtype="float32")
        mix, _ = sf.read(tiny_testset / f"audio/mixture/{item}.wav", dtype="float32")
        itf, _ = sf.read(tiny_testset / f"audio/interferer/{item}.wav", dtype="float32")
        expected = ref if k % 2 == 0 else mix - itf  # the tiny set: even items extract, odd remove
        np.testing.assert_array_equal(est, expected.astype(np.float32))
        assert rows[item]["values"]["sdr"] > 60
