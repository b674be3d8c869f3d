"""Real-dataset builders on fixture trees in each dataset's own layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from hsm_bench.api.testset import TestSet
from hsm_bench.hashing import sha256_file
from hsm_bench.cli import main
from testsets.audiocaps import AudioCapsBuilder
from testsets.clotho import ClothoBuilder
from testsets.fsd50k import FSD50KBuilder
from testsets.music import MusicBuilder
from testsets.ontology import load
from testsets.three_sets import ThreeSetsBuilder
from tests import dataset_fixtures as fx

ONTO = load()


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    planted = {
        "audiocaps": fx.make_audiocaps(root / "audiocaps"),
        "clotho": fx.make_clotho(root / "clotho"),
        "fsd50k": fx.make_fsd50k(root / "fsd50k", ONTO),
        "music": fx.make_music(root / "music"),
    }
    return root, planted


BUILDERS = {"audiocaps": AudioCapsBuilder, "clotho": ClothoBuilder, "fsd50k": FSD50KBuilder, "music": MusicBuilder}


@pytest.fixture(scope="module")
def built(trees, tmp_path_factory):
    root, _ = trees
    out = tmp_path_factory.mktemp("built")
    return {
        name: cls(n_items=16, source=str(root / name)).build(out / name, progress=False) for name, cls in BUILDERS.items()
    }


def _fingerprint(folder):
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pairs_obey_the_class_rule_and_the_snr(built, name):
    ts = TestSet(built[name])
    assert ts.validate() == [] and len(ts) == 16
    lo, hi = (-5, 5) if name == "music" else (-15, 15)
    for row in ts:
        t, i = row.source["target"], row.source["interferer"]
        if name == "music":  # the peers' rule: different instruments
            assert t["file"].split("/")[-2] != i["file"].split("/")[-2]
        else:
            assert not (ONTO.closed(t["mids"]) & ONTO.closed(i["mids"])), row.id
        assert lo <= row.snr_db <= hi
        tgt, sr = sf.read(ts.path(row.target), dtype="float64")
        itf, _ = sf.read(ts.path(row.interferer), dtype="float64")
        mix, _ = sf.read(ts.path(row.mixture), dtype="float64")
        assert sr == 16000 and tgt.ndim == 1
        assert 10 * np.log10(np.mean(tgt**2) / np.mean(itf**2)) == pytest.approx(row.snr_db, abs=0.05)
        assert np.max(np.abs(mix - tgt - itf)) < 1e-4
        if name in ("clotho", "fsd50k"):
            assert row.duration_s <= 30.0 and row.duration_s * 16000 == row.source["window"]
            assert row.duration_s == min(t["length"], i["length"]) / 16000 or row.duration_s == 30.0
        else:
            assert row.duration_s == 10.0


def test_clotho_items_are_15_to_30_s(built):
    assert all(15.0 <= r.duration_s <= 30.0 for r in TestSet(built["clotho"]))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_missing_and_corrupt_files_are_listed(built, trees, name):
    _, planted = trees
    card = json.loads((built[name] / "card.json").read_text())
    src = card["sources"]
    if name == "music":
        assert src["missing"]["count"] == len(planted["music"]["missing"])
        return
    missing = planted[name]["missing"]
    assert any(missing in m for m in src["missing"]["items"]), src["missing"]
    assert any(planted[name]["corrupt"] in u for u in src["unreadable"]["items"]), src["unreadable"]
    assert card["class_rule_rejections"]["shared_class"] >= 0 and card["snr_summary"]["histogram"]
    if name == "fsd50k":
        assert planted[name]["short"] in src["too_short"]["items"]


def test_stereo_44k_input_is_read_as_16k_mono(trees):
    from testsets.pools import ClipLoader

    root, planted = trees
    builder = AudioCapsBuilder(n_items=1, source=str(root / "audiocaps"))
    pool, _ = builder.scan(ONTO)
    clip = next(c for c in pool if planted["audiocaps"]["stereo"] in c.key)
    assert sf.info(str(root / "audiocaps" / clip.path)).channels == 2
    audio = ClipLoader(builder.source_roots()).audio("audiocaps", clip.path)
    assert audio.ndim == 1 and len(audio) == clip.length == int(9.2 * 16000)


def test_same_seed_same_bytes_other_seed_other_pairs(trees, tmp_path):
    root, _ = trees
    a = FSD50KBuilder(n_items=12, source=str(root / "fsd50k")).build(tmp_path / "a", progress=False)
    b = FSD50KBuilder(n_items=12, source=str(root / "fsd50k")).build(tmp_path / "b", progress=False)
    c = FSD50KBuilder(n_items=12, seed=5, source=str(root / "fsd50k")).build(tmp_path / "c", progress=False)
    assert _fingerprint(a) == _fingerprint(b)
    pairs = lambda p: [(r.source["target"]["file"], r.source["interferer"]["file"]) for r in TestSet(p)]  # noqa: E731
    assert pairs(a) != pairs(c)


def test_fsd50k_queries_are_labels_and_captions_for_caption_sets(built):
    for row in TestSet(built["fsd50k"]):
        assert row.instruction.endswith(".") and "described as" not in row.instruction
        assert row.caption == row.caption.lower() and len(row.caption.split()) <= 8
    for row in TestSet(built["clotho"]):
        assert len(row.target_captions) == 5
        if row.task == "extract":
            assert row.caption in row.target_captions


def test_rebuild_from_manifest_is_byte_identical(built, trees, tmp_path):
    root, _ = trees
    for name in ("audiocaps", "music"):
        out = tmp_path / name
        assert main(["build-testset", "--from-manifest", str(built[name] / "manifest.jsonl"), "--source", str(root / name),
                     "--out", str(out), "--no-progress"]) == 0  # fmt: skip
        assert _fingerprint(out)["manifest.jsonl"] == _fingerprint(built[name])["manifest.jsonl"]
        mine = {k: v for k, v in _fingerprint(out).items() if k.startswith("audio/")}
        assert mine == {k: v for k, v in _fingerprint(built[name]).items() if k.startswith("audio/")}


def test_three_sets_draws_from_all_three(trees, tmp_path):
    root, _ = trees
    three = tmp_path / "three"
    three.mkdir()
    for part in ("audiocaps", "clotho", "fsd50k"):
        (three / part).symlink_to(root / part)
    path = ThreeSetsBuilder(n_items=24, source=str(three)).build(tmp_path / "out", progress=False)
    ts = TestSet(path)
    datasets = {r.source["target"]["dataset"] for r in ts} | {r.source["interferer"]["dataset"] for r in ts}
    assert datasets == {"audiocaps", "clotho", "fsd50k"}
    card = json.loads((path / "card.json").read_text())
    assert set(card["sources"]["composition"]) == {"audiocaps", "clotho", "fsd50k"}
    assert all(r.duration_s == 10.0 for r in ts)
    styles = {r.source["target"]["dataset"]: r for r in ts if r.task == "extract"}
    if "fsd50k" in styles:
        assert "described as" not in styles["fsd50k"].instruction


def test_cli_build_with_n_items_and_validate(trees, tmp_path, capsys):
    root, _ = trees
    out = tmp_path / "cli"
    assert main(["build-testset", "clotho", "--source", str(root / "clotho"), "--n-items", "5", "--out", str(out), "--no-progress"]) == 0
    assert len(TestSet(out)) == 5 and "built 5 items" in capsys.readouterr().out
    x, sr = sf.read(out / "audio/mixture/clotho-00002.wav", dtype="float32")
    sf.write(out / "audio/mixture/clotho-00002.wav", x * 0.5, sr, subtype="PCM_16")
    assert main(["validate", str(out)]) == 1


def test_missing_layout_gives_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="clotho_captions_evaluation.csv"):
        ClothoBuilder(n_items=2, source=str(tmp_path / "empty")).build(tmp_path / "x", progress=False)
    with pytest.raises(FileNotFoundError, match="--source"):
        AudioCapsBuilder(n_items=2).build(tmp_path / "y", progress=False)


def test_import_audiosep_list(tmp_path):
    src = tmp_path / "audiosep"
    src.mkdir()
    shutil.copy(fx.DATA / "audiosep_clotho_eval_head.csv", tmp_path / "clotho_eval.csv")
    for idx in range(6):
        seg = fx.synth(f"seg{idx}", 5.0, 32000)
        noise = 0.5 * fx.synth(f"noise{idx}", 5.0, 32000)
        sf.write(src / f"segment-{idx}.wav", seg, 32000)
        sf.write(src / f"mixture-{idx}.wav", seg + noise, 32000)
    out = tmp_path / "imported"
    assert main(["build-testset", "--import", f"audiosep:{tmp_path / 'clotho_eval.csv'}", "--source", str(src),
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    ts = TestSet(out)
    assert len(ts) == 6 and ts.validate() == []
    row = ts.rows[0]
    assert row.caption.startswith("A machine whines") and row.source["noise_wavs"][0].startswith("09-07-14_2338_Foz")
    # 0.5 x the same-power noise: SNR = 20 log10(2) up to the two clips' power difference
    tgt, _ = sf.read(ts.path(row.target), dtype="float64")
    itf, _ = sf.read(ts.path(row.interferer), dtype="float64")
    assert row.snr_db == pytest.approx(10 * np.log10(np.mean(tgt**2) / np.mean(itf**2)), abs=0.05)


def test_import_dcase2024_list(tmp_path):
    src = tmp_path / "lass_validation"
    src.mkdir()
    for k in range(3):
        sf.write(src / f"clip{k}.wav", fx.synth(f"d{k}", 10.0, 16000), 16000)
    csv_path = tmp_path / "lass_synthetic_validation.csv"
    csv_path.write_text("source,noise,snr,query\nclip0.wav,clip1.wav,-5,a dog barks in a yard\nclip2.wav,clip0.wav,12,rain\nclip1.wav,missing.wav,0,x\n")
    out = tmp_path / "dcase"
    assert main(["build-testset", "--import", f"dcase2024:{csv_path}", "--source", str(tmp_path), "--out", str(out), "--no-progress"]) == 0
    ts = TestSet(out)
    assert [r.snr_db for r in ts] == [-5.0, 12.0]
    card = json.loads((out / "card.json").read_text())
    assert card["sources"]["missing"]["count"] == 1
    for row in ts:
        tgt, _ = sf.read(ts.path(row.target), dtype="float64")
        itf, _ = sf.read(ts.path(row.interferer), dtype="float64")
        assert 10 * np.log10(np.mean(tgt**2) / np.mean(itf**2)) == pytest.approx(row.snr_db, abs=0.05)
