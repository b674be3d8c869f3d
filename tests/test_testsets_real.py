"""Real-dataset builders on fixture trees in each dataset's own layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from hsm_bench.api.testset import TestSet
from hsm_bench.cli import main
from hsm_bench.errors import BuildError
from hsm_bench.hashing import sha256_file
from tests import dataset_fixtures as fx
from testsets.audiocaps import AudioCapsBuilder
from testsets.clotho import ClothoBuilder
from testsets.fsd50k import FSD50KBuilder
from testsets.instructions import TEMPLATES
from testsets.music import MusicBuilder
from testsets.ontology import load
from testsets.three_sets import ThreeSetsBuilder

ONTO = load()
CLOTHO_CAPTIONS = dict(fx.CLOTHO_CAPTIONS)


def instructions_for(task: str, description: str, style: str) -> set[str]:
    """Every instruction the templates allow for this description (the template is drawn)."""
    d = description.strip().rstrip(".") + "." if style == "caption" else description.strip()
    return {t.format(d=d) for t in TEMPLATES[(task, style)]}


def fsd_label_text(file: str) -> str:
    """The label query of a fixture FSD50K clip: its leaf class, first name, lower case."""
    fname = file.rsplit("/", 1)[-1].removesuffix(".wav")
    return fx.FSD_LEAVES[(int(fname) - 900000) % len(fx.FSD_LEAVES)].split(",")[0].lower()


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
        window = row.source["window"]
        if name in ("clotho", "fsd50k"):  # the shorter source plays whole, capped at 30 s
            assert window == min(t["file_length"], i["file_length"], 30 * 16000)
        else:
            assert window == 10 * 16000
        assert row.duration_s == round(window / 16000, 4) and len(tgt) == window


def test_clotho_items_are_15_to_30_s(built):
    assert all(15.0 <= r.duration_s <= 30.0 for r in TestSet(built["clotho"]))


# recorded from the fixture trees with seed 0: they pin the draw sequence of the recipe
EXPECTED_REJECTIONS = {
    "audiocaps": {"shared_class": 43, "same_clip": 5, "used_pair": 0},
    "clotho": {"shared_class": 1, "same_clip": 2, "used_pair": 0},
    "fsd50k": {"shared_class": 0, "same_clip": 0, "used_pair": 1},
    "music": {"shared_class": 0, "same_clip": 0, "used_pair": 0},
}
CORRUPT_LABEL = {  # how each builder names an unreadable file in the card
    "audiocaps": lambda planted: planted["corrupt_file"],
    "clotho": lambda planted: planted["corrupt"],
    "fsd50k": lambda planted: f"{planted['corrupt']}.wav",
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_missing_and_corrupt_files_are_listed(built, trees, name):
    planted = trees[1][name]
    card = json.loads((built[name] / "card.json").read_text())
    src = card["sources"]
    missing = sorted(planted["missing"]) if name == "music" else [planted["missing"]]
    assert src["missing"] == {"count": len(missing), "items": missing}
    corrupt = [CORRUPT_LABEL[name](planted)] if name in CORRUPT_LABEL else []  # the music tree has none
    assert [u.split(": ", 1)[0] for u in src["unreadable"]["items"]] == corrupt
    assert src["unreadable"]["count"] == len(corrupt)
    short = [planted["short"]] if name == "fsd50k" else []
    assert src["too_short"] == {"count": len(short), "items": short}
    assert src["skipped"] == {"count": 0, "items": []}
    assert card["class_rule_rejections"] == EXPECTED_REJECTIONS[name]
    assert card["redraw_budget"] == {"per_item": 2000, "exhausted": 0}
    assert sum(card["snr_summary"]["histogram"]["counts"]) == 16


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


def _described(row) -> dict:
    """The source record of the clip the query describes (the interferer for "remove")."""
    return row.source["target" if row.task == "extract" else "interferer"]


def test_fsd50k_queries_are_labels_and_captions_for_caption_sets(built):
    fsd = TestSet(built["fsd50k"])
    assert {r.task for r in fsd} == {"extract", "remove"}
    for row in fsd:
        assert row.caption == fsd_label_text(_described(row)["file"])
        assert row.instruction in instructions_for(row.task, row.caption, "label")
        assert row.query_style == "label"  # recorded for the baselines' query templates
    clotho = TestSet(built["clotho"])
    assert {r.task for r in clotho} == {"extract", "remove"}
    for row in clotho:
        assert row.target_captions == CLOTHO_CAPTIONS[row.source["target"]["file"].rsplit("/", 1)[-1]]
        described = _described(row)
        assert row.caption == CLOTHO_CAPTIONS[described["file"].rsplit("/", 1)[-1]][described["caption_index"]]
        assert row.instruction in instructions_for(row.task, row.caption, "caption")
        assert row.query_style == "caption"


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
    # queries follow the described clip's dataset: labels for FSD50K, captions otherwise
    assert {_described(r)["dataset"] for r in ts} == {"audiocaps", "clotho", "fsd50k"}
    for row in ts:
        style = "label" if _described(row)["dataset"] == "fsd50k" else "caption"
        assert row.instruction in instructions_for(row.task, row.caption, style)


def test_cli_build_with_n_items_and_validate(trees, tmp_path, capsys):
    root, _ = trees
    out = tmp_path / "cli"
    assert main(["build-testset", "clotho", "--source", str(root / "clotho"), "--n-items", "5", "--out", str(out), "--no-progress"]) == 0
    assert len(TestSet(out)) == 5 and "built 5 items" in capsys.readouterr().out
    x, sr = sf.read(out / "audio/mixture/clotho-00002.wav", dtype="float32")
    sf.write(out / "audio/mixture/clotho-00002.wav", x * 0.5, sr, subtype="PCM_16")
    assert main(["validate", str(out)]) == 1


def test_missing_layout_gives_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError) as err:
        ClothoBuilder(n_items=2, source=str(empty)).build(tmp_path / "x", progress=False)
    assert str(err.value) == (
        f"no clotho_captions_evaluation.csv in {empty} or any of its subfolders: --source must hold Clotho's "
        "evaluation captions clotho_captions_evaluation.csv (file_name,caption_1..5)"
    )
    with pytest.raises(BuildError) as err:
        FSD50KBuilder(n_items=2, source=str(empty)).build(tmp_path / "x", progress=False)
    assert str(err.value) == (
        f"no eval.csv in {empty} or any of its subfolders: --source must hold the FSD50K ground truth "
        "FSD50K.ground_truth/eval.csv (fname,labels,mids)"
    )
    with pytest.raises(BuildError) as err:
        AudioCapsBuilder(n_items=2).build(tmp_path / "y", progress=False)
    assert str(err.value) == "building 'audiocaps' needs --source DIR (the dataset as you have it on disk)"
    with pytest.raises(BuildError) as err:
        AudioCapsBuilder(n_items=2, source=str(tmp_path / "nope")).build(tmp_path / "y", progress=False)
    assert str(err.value) == (
        f"audiocaps: --source {tmp_path / 'nope'} does not exist (no such folder; expected the dataset as you have it on disk)"
    )
    (empty / "test.csv").write_text("ytid,caption\nabc,a dog barks\n")
    with pytest.raises(BuildError) as err:
        AudioCapsBuilder(n_items=2, source=str(empty)).build(tmp_path / "y", progress=False)
    assert str(err.value) == (
        f"{empty / 'test.csv'} is not the AudioCaps test list test.csv (audiocap_id,youtube_id,start_time,caption): "
        "it has no column(s) audiocap_id, youtube_id, start_time (expected audiocap_id,youtube_id,start_time,caption "
        "in its header)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing was created


def test_three_sets_names_every_missing_part(trees, tmp_path):
    root, _ = trees
    three = tmp_path / "three"
    three.mkdir()
    (three / "clotho").symlink_to(root / "clotho")
    with pytest.raises(BuildError) as err:
        ThreeSetsBuilder(n_items=4, source=str(three)).build(tmp_path / "out", progress=False)
    assert str(err.value) == (
        f"three_sets needs all three datasets, each in its own layout; no folder for audiocaps at {three / 'audiocaps'}; "
        f"fsd50k at {three / 'fsd50k'} (put them under --source as audiocaps/, clotho/, fsd50k/ or give "
        "--set PART_source=DIR)"
    )
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory):
    root = tmp_path_factory.mktemp("lopsided")
    return root, fx.make_fsd50k_lopsided(root, ONTO)


def test_a_target_without_any_partner_is_skipped_and_listed(lopsided, tmp_path):
    root, planted = lopsided
    lonely = f"fsd50k/{planted['lonely']}"
    path = FSD50KBuilder(n_items=12, source=str(root)).build(tmp_path / "set", progress=False)
    ts = TestSet(path)
    assert ts.validate() == [] and len(ts) == 12
    card = json.loads((path / "card.json").read_text())
    assert card["sources"]["skipped"] == {
        "count": 1,
        "items": [f"{lonely}: no interferer without a shared class (its classes: Bark + Meow; every other usable "
                  "clip shares one)"],
    }  # fmt: skip
    assert card["redraw_budget"] == {"per_item": 2000, "exhausted": 1}
    targets = [r.source["target"]["file"] for r in ts]
    assert f"FSD50K.eval_audio/{planted['lonely']}.wav" not in targets
    pairs = [(r.source["target"]["file"], r.source["interferer"]["file"]) for r in ts]
    assert len(set(pairs)) == 12
    for row in ts:
        assert not (ONTO.closed(row.source["target"]["mids"]) & ONTO.closed(row.source["interferer"]["mids"]))
    again = FSD50KBuilder(n_items=12, source=str(root)).build(tmp_path / "again", progress=False)
    assert _fingerprint(again) == _fingerprint(path)


def test_a_pool_that_cannot_yield_n_items_fails_and_leaves_nothing(lopsided, tmp_path):
    root, planted = lopsided
    out = tmp_path / "new" / "deeper" / "fsd50k" / "v1"
    with pytest.raises(BuildError) as err:
        FSD50KBuilder(n_items=30, source=str(root)).build(out, progress=False)
    assert str(err.value) == (
        f"fsd50k: could make {planted['valid_pairs']} of 30 items from 7 usable clip(s) under {root}: "
        f"1 target clip(s) have no partner without a shared class (e.g. fsd50k/{planted['lonely']}); "
        f"6 target clip(s) have used up every partner without a shared class (e.g. fsd50k/{planted['clips'][1]}); "
        f"build fewer with --n-items {planted['valid_pairs']} or add source clips"
    )
    assert list(tmp_path.iterdir()) == []  # no set, no temporary sibling, no parent folder
    # the number the message gives is one the same seed can make
    made = FSD50KBuilder(n_items=planted["valid_pairs"], source=str(root)).build(out, progress=False)
    assert len(TestSet(made)) == planted["valid_pairs"]


def test_a_failed_rebuild_keeps_the_previous_set(lopsided, tmp_path):
    root, _ = lopsided
    out = tmp_path / "set"
    FSD50KBuilder(n_items=6, source=str(root)).build(out, progress=False)
    before = _fingerprint(out)
    with pytest.raises(BuildError, match="could make 18 of 30 items"):
        FSD50KBuilder(n_items=30, source=str(root)).build(out, progress=False)
    assert _fingerprint(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_a_folder_that_is_not_a_test_set_is_never_replaced(lopsided, tmp_path):
    root, _ = lopsided
    mine = tmp_path / "my_music"
    mine.mkdir()
    (mine / "song.wav").write_bytes(b"keep me")
    with pytest.raises(BuildError) as err:
        FSD50KBuilder(n_items=4, source=str(root)).build(mine, progress=False)
    assert str(err.value) == (
        f"the output folder {mine} exists and is not a built test set (no card.json); it is left untouched: "
        "remove it yourself or choose a new or empty output folder (--out)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["my_music"]
    assert [p.name for p in mine.iterdir()] == ["song.wav"] and (mine / "song.wav").read_bytes() == b"keep me"


class _ImpatientFSD50K(FSD50KBuilder):
    max_redraws = 1  # nearly every item goes through the pick among all valid partners


def test_after_the_redraw_budget_a_valid_partner_is_picked_deterministically(trees, tmp_path):
    root, _ = trees
    a = _ImpatientFSD50K(n_items=20, source=str(root / "fsd50k")).build(tmp_path / "a", progress=False)
    b = _ImpatientFSD50K(n_items=20, source=str(root / "fsd50k")).build(tmp_path / "b", progress=False)
    assert _fingerprint(a) == _fingerprint(b)
    card = json.loads((a / "card.json").read_text())
    assert card["redraw_budget"]["exhausted"] == sum(card["class_rule_rejections"].values())
    assert card["redraw_budget"]["exhausted"] > 0 and card["sources"]["skipped"]["count"] == 0
    ts = TestSet(a)
    pairs = [(r.source["target"]["file"], r.source["interferer"]["file"]) for r in ts]
    assert len(ts) == 20 and len(set(pairs)) == 20
    for row in ts:
        assert not (ONTO.closed(row.source["target"]["mids"]) & ONTO.closed(row.source["interferer"]["mids"]))


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
