"""The demo test set: deterministic bytes, class rule, SNR read back from disk, the oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from hsm_bench.api.testset import TestSet
from hsm_bench.hashing import sha256_file
from hsm_bench.cli import main
from testsets.demo import DemoBuilder


@pytest.fixture(scope="module")
def demo_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    a = DemoBuilder(n_items=40).build(root / "a", progress=False)
    b = DemoBuilder(n_items=40).build(root / "b", progress=False)
    c = DemoBuilder(n_items=40, seed=1).build(root / "c", progress=False)
    return a, b, c


def _fingerprint(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): sha256_file(p) for p in files}


def test_same_seed_same_bytes_other_seed_other_pairs(demo_sets):
    a, b, c = demo_sets
    assert _fingerprint(a) == _fingerprint(b)
    pairs = lambda root: [(r.source["target"]["key"], r.source["interferer"]["key"]) for r in TestSet(root)]  # noqa: E731
    assert pairs(a) != pairs(c)


def test_rows_follow_the_recipe(demo_sets):
    ts = TestSet(demo_sets[0])
    assert ts.validate() == []
    assert len(ts) == 40 and ts.sample_rate == 16000
    tasks = {r.task for r in ts}
    assert tasks == {"extract", "remove"}
    for row in ts:
        assert not set(row.target_labels) & set(row.interferer_labels)
        assert -15 <= row.snr_db <= 15 and row.duration_s == 10.0
        mix, sr = sf.read(ts.path(row.mixture), dtype="float64")
        tgt, _ = sf.read(ts.path(row.target), dtype="float64")
        itf, _ = sf.read(ts.path(row.interferer), dtype="float64")
        assert sr == 16000 and len(mix) == 160000
        measured = 10 * np.log10(np.mean(tgt**2) / np.mean(itf**2))
        assert measured == pytest.approx(row.snr_db, abs=0.05)
        assert np.max(np.abs(mix)) <= 0.9 + 1e-4 or row.source["gains"]["peak_scale"] == 1.0
        assert np.max(np.abs(mix - tgt - itf)) < 1e-4  # mixture = target + interferer (16-bit stems)
        described = row.target_captions if row.task == "extract" else None
        if described is not None:
            assert row.caption in described
        assert row.caption.rstrip(".") in row.instruction


def test_card_records_sources_and_recipe(demo_sets):
    card = json.loads((demo_sets[0] / "card.json").read_text())
    assert card["n_items"] == 40 and card["manifest_sha256"]
    assert card["recipe"]["snr_db"]["range"] == [-15.0, 15.0]
    assert any("CC0" in lic for lic in card["sources"]["licences"])
    assert len(card["sources"]["classes"]) >= 20


@pytest.mark.slow
def test_default_demo_run_meets_the_oracle_bounds(tmp_path, monkeypatch):
    """The README's command on the full 200-item demo set, for the three oracles."""
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "home"))
    corpora = {}
    for system in ("oracle_target", "oracle_mixture", "oracle_irm"):
        assert main(["run", "--system", system, "--testset", "demo", f"paths.runs_dir={tmp_path}", "runtime.progress=false"]) == 0
        corpora[system] = json.loads(next(tmp_path.rglob(f"{system}/*/corpus.json")).read_text())["metrics"]
    t, m, i = corpora["oracle_target"], corpora["oracle_mixture"], corpora["oracle_irm"]
    # zero up to the definition's eps on the weakest bins: log10(R^2 / (R + 1e-12)^2 + 1e-12)
    assert t["lsd_aligned"]["mean"] < 1e-9 and t["psnr"]["nonfinite"] == {"+inf": 200}
    assert m["sdri"]["mean"] == 0.0 and m["si_sdri"]["mean"] == 0.0
    assert t["sdr"]["n"] == m["sdr"]["n"] == i["sdr"]["n"] == 200
    assert m["sdr"]["mean"] < i["sdr"]["mean"] < t["sdr"]["mean"]
    assert t["lsd_aligned"]["mean"] < i["lsd_aligned"]["mean"] < m["lsd_aligned"]["mean"]
    assert m["psnr"]["mean"] < i["psnr"]["mean"]
