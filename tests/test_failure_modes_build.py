"""`hsm-bench build-testset` on bad input: exit status 2, one line on stderr naming the path and
what belongs there, no traceback, and nothing new on disk (neither under HSM_BENCH_HOME nor
where the inputs and --out live)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hsm_bench.cli import main
from testsets.fsd50k import FSD50KBuilder
from testsets.ontology import load
from tests import dataset_fixtures as fx

PREFIX = "hsm-bench build-testset: error: "
ONTO = load()


def _tree(*roots: Path) -> set[str]:
    return {str(p) for r in roots if r.exists() for p in (r, *r.rglob("*"))}


def fails(capsys, argv: list[str], *roots: Path) -> str:
    """Run the CLI, check the failure contract, and return the message after the prefix."""
    roots = (Path(os.environ["HSM_BENCH_HOME"]), *roots)
    before = _tree(*roots)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert _tree(*roots) == before
    return lines[0][len(PREFIX) :]


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory):
    root = tmp_path_factory.mktemp("lopsided")
    return root, fx.make_fsd50k_lopsided(root, ONTO)


def test_missing_source_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_dataset"
    msg = fails(capsys, ["build-testset", "audiocaps", "--source", str(missing), "--no-progress"], tmp_path)
    assert msg == f"audiocaps: --source {missing} does not exist (no such folder; expected the dataset as you have it on disk)"


def test_source_that_is_a_file(tmp_path, capsys):
    file = tmp_path / "audiocaps.zip"
    file.write_bytes(b"PK")
    msg = fails(capsys, ["build-testset", "audiocaps", "--source", str(file), "--no-progress"], tmp_path)
    assert msg == f"audiocaps: --source {file} is not a folder (expected the dataset as you have it on disk)"


def test_source_without_the_list_file(tmp_path, capsys):
    src = tmp_path / "audiocaps"
    fx.write(src / "waveforms" / "Yabc.wav", "x", 1.0, 16000)
    out = tmp_path / "out" / "set"
    msg = fails(capsys, ["build-testset", "audiocaps", "--source", str(src), "--out", str(out), "--no-progress"], tmp_path)
    assert msg == (
        f"no test.csv in {src} or any of its subfolders: --source must hold the AudioCaps test list test.csv "
        "(audiocap_id,youtube_id,start_time,caption)"
    )


def test_three_sets_without_one_of_its_datasets(tmp_path, capsys):
    root = tmp_path / "three"
    (root / "audiocaps").mkdir(parents=True)
    (root / "clotho").mkdir()
    msg = fails(capsys, ["build-testset", "three_sets", "--source", str(root), "--no-progress"], tmp_path)
    assert msg == (
        f"three_sets needs all three datasets, each in its own layout; no folder for fsd50k at {root / 'fsd50k'} "
        "(put them under --source as audiocaps/, clotho/, fsd50k/ or give --set PART_source=DIR)"
    )


def test_from_manifest_with_a_missing_file(tmp_path, capsys):
    manifest = tmp_path / "elsewhere" / "manifest.jsonl"
    msg = fails(capsys, ["build-testset", "--from-manifest", str(manifest), "--source", str(tmp_path), "--no-progress"], tmp_path)
    assert msg == f"--from-manifest {manifest}: no such file (expected the manifest.jsonl of a built test set)"


def test_from_manifest_with_a_file_that_is_not_a_manifest(tmp_path, capsys):
    manifest = tmp_path / "test.csv"
    manifest.write_text("audiocap_id,youtube_id,start_time,caption\n1,abc,30,a dog barks\n")
    msg = fails(capsys, ["build-testset", "--from-manifest", str(manifest), "--source", str(tmp_path), "--no-progress"], tmp_path)
    assert msg == (
        f"--from-manifest {manifest}:1 is not the manifest.jsonl of a built test set: line 1 is not JSON "
        "(Expecting value: line 1 column 1 (char 0))"
    )


def test_from_manifest_with_a_source_that_lacks_its_files(lopsided, tmp_path, capsys):
    root, _ = lopsided
    built = FSD50KBuilder(n_items=4, source=str(root)).build(tmp_path / "built", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    rows = [json.loads(line) for line in (built / "manifest.jsonl").read_text().splitlines()]
    files = sorted({str(empty / r["source"][role]["file"]) for r in rows for role in ("target", "interferer")})
    argv = ["build-testset", "--from-manifest", str(built / "manifest.jsonl"), "--source", str(empty),
            "--out", str(tmp_path / "rebuilt"), "--no-progress"]  # fmt: skip
    msg = fails(capsys, argv, tmp_path)
    assert msg == (
        f"{len(files)} source file(s) the manifest {built / 'manifest.jsonl'} refers to are not under --source {empty} "
        f"(e.g. {files[0]}); --source must hold the dataset the manifest was built from, in its own layout"
    )


def test_import_with_a_missing_list(tmp_path, capsys):
    src = tmp_path / "audio"
    src.mkdir()
    csv_path = tmp_path / "nope" / "clotho_eval.csv"
    argv = ["build-testset", "--import", f"audiosep:{csv_path}", "--source", str(src), "--no-progress"]
    assert fails(capsys, argv, tmp_path) == (
        f"--import audiosep:{csv_path}: no such file (expected an AudioSep evaluation list "
        "(idx, caption, [labels], src_wav, noise_wav...))"
    )


def test_import_with_a_malformed_spec(tmp_path, capsys):
    argv = ["build-testset", "--import", "audiosep", "--source", str(tmp_path), "--no-progress"]
    assert fails(capsys, argv, tmp_path) == "--import expects audiosep:CSV or dcase2024:CSV, got 'audiosep'"


def test_import_with_a_source_missing_the_audio(tmp_path, capsys):
    src = tmp_path / "audiosep"
    src.mkdir()
    csv_path = tmp_path / "clotho_eval.csv"
    shutil.copy(fx.DATA / "audiosep_clotho_eval_head.csv", csv_path)
    argv = ["build-testset", "--import", f"audiosep:{csv_path}", "--source", str(src), "--no-progress"]
    assert fails(capsys, argv, tmp_path) == (
        f"--import audiosep: could make 0 of 6 items: no row of {csv_path} found its audio under --source {src} "
        "(row 0: segment-0.wav not found under --source); --source must hold segment-{idx}.wav and "
        "mixture-{idx}.wav of every row"
    )


def test_a_pool_that_cannot_yield_the_requested_items(lopsided, capsys):
    root, planted = lopsided
    argv = ["build-testset", "fsd50k", "--source", str(root), "--n-items", "30", "--no-progress"]
    assert fails(capsys, argv, root) == (
        f"fsd50k: could make {planted['valid_pairs']} of 30 items from 7 usable clip(s) under {root}: "
        f"1 target clip(s) have no partner without a shared class (e.g. fsd50k/{planted['lonely']}); "
        f"6 target clip(s) have used up every partner without a shared class (e.g. fsd50k/{planted['clips'][1]}); "
        f"build fewer with --n-items {planted['valid_pairs']} or add source clips"
    )


def test_an_out_folder_that_is_not_a_test_set(lopsided, tmp_path, capsys):
    root, _ = lopsided
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "draft.txt").write_text("keep me")
    argv = ["build-testset", "fsd50k", "--source", str(root), "--n-items", "4", "--out", str(mine), "--no-progress"]
    assert fails(capsys, argv, tmp_path) == (
        f"the output folder {mine} exists and is not a built test set (no card.json); it is left untouched: "
        "remove it yourself or choose a new or empty output folder (--out)"
    )
    assert (mine / "draft.txt").read_text() == "keep me"


def _built_copy(lopsided, tmp_path) -> Path:
    root, _ = lopsided
    return FSD50KBuilder(n_items=4, source=str(root)).build(tmp_path / "built", progress=False)


def test_from_manifest_whose_card_would_steer_the_output_elsewhere(lopsided, tmp_path, capsys):
    built = _built_copy(lopsided, tmp_path)
    card = json.loads((built / "card.json").read_text())
    (built / "card.json").write_text(json.dumps({**card, "name": "../../../escaped"}))
    argv = ["build-testset", "--from-manifest", str(built / "manifest.jsonl"), "--source", str(lopsided[0]), "--no-progress"]
    assert fails(capsys, argv, tmp_path, lopsided[0]) == (
        f"{built / 'card.json'} gives the test set name/version '../../../escaped', which is not a plain folder name; "
        "give the output folder with --out"
    )


def test_from_manifest_naming_a_builder_that_is_not_registered(lopsided, tmp_path, capsys):
    built = _built_copy(lopsided, tmp_path)
    manifest = built / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for r in rows:
        r["source"]["builder"] = "os:system"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["build-testset", "--from-manifest", str(manifest), "--source", str(lopsided[0]), "--no-progress"]
    assert fails(capsys, argv, tmp_path, lopsided[0]) == (
        f"{manifest} names the builder 'os:system', which is not a registered test-set builder "
        "(hsm-bench ls testsets); rebuild it where that builder is installed"
    )


def test_a_size_of_zero_items(lopsided, capsys):
    root, _ = lopsided
    argv = ["build-testset", "fsd50k", "--source", str(root), "--n-items", "0", "--no-progress"]
    assert fails(capsys, argv, root) == "--n-items 0: a test set needs at least one item"
