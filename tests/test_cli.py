"""The command line: score, run (with sweeps), ls, info, validate, did-you-mean errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from hsm_bench.cli import main
from hsm_bench.registry import UnknownNameError
from hsm_bench.run_config import parse_args
from hsm_bench.score_dirs import load_results


@pytest.fixture
def dirs(tiny_testset, tmp_path):
    ref = tmp_path / "ref"
    mix = tmp_path / "mix"
    pred = tmp_path / "pred"
    shutil.copytree(tiny_testset / "audio/target", ref)
    shutil.copytree(tiny_testset / "audio/mixture", mix)
    pred.mkdir()
    for p in sorted(mix.glob("*.wav")):  # a half-way "separation": mixture pulled to the target
        m, sr = sf.read(p, dtype="float32")
        r, _ = sf.read(ref / p.name, dtype="float32")
        sf.write(pred / p.with_suffix(".flac").name, 0.5 * (m + r), sr, subtype="PCM_24")
    return pred, ref, mix


def test_score_writes_per_item_csv_and_corpus(dirs, tmp_path, capsys):
    pred, ref, mix = dirs
    out = tmp_path / "res.csv"
    assert main(["score", str(pred), str(ref), "--mix-dir", str(mix), "--metrics", "lsd,psnr,sdr", "--out", str(out), "--no-progress"]) == 0
    rows = load_results(out)
    assert len(rows) == 12
    assert list(rows[0]) == ["id", "lsd", "lsd_aligned", "psnr", "sdr", "sdri", "si_sdr", "si_sdri", "error"]
    assert rows[0]["id"] == "tiny-000"
    assert all(float(r["sdri"]) > 0 for r in rows)
    meta = json.loads((tmp_path / "res.csv.meta.json").read_text())
    assert meta["corpus"]["metrics"]["sdr"]["n"] == 12
    assert meta["corpus"]["metric_definitions"]["lsd"]["params"]["time_offset"] == 1120
    printed = capsys.readouterr().out
    assert "si_sdri" in printed and "95% CI" in printed


def test_score_identical_folders(dirs, tmp_path):
    _, ref, _ = dirs
    out = tmp_path / "same.jsonl"
    assert main(["score", str(ref), str(ref), "--metrics", "signal", "--out", str(out), "--no-progress"]) == 0
    rows = load_results(out)
    assert all(r["psnr"] == "+inf" for r in rows)
    assert all(r["lsd_aligned"] < 1e-9 for r in rows)
    assert "sdri" not in rows[0]  # no mixture folder, no improvement


def test_score_lists_unpaired_files(dirs, capsys):
    pred, ref, _ = dirs
    (pred / "tiny-000.flac").unlink()
    sf.write(pred / "extra one.wav", np.zeros(16000, np.float32), 16000)
    assert main(["score", str(pred), str(ref), "--metrics", "sdr", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "extra one" in err and "tiny-000" in err and "do not pair up" in err


def test_score_marks_bad_items_and_goes_on(dirs, tmp_path):
    pred, ref, _ = dirs
    sf.write(pred / "tiny-001.flac", np.zeros(8000, np.float32), 16000)  # 0.5 s instead of 2 s
    sf.write(pred / "tiny-002.flac", np.zeros(64000, np.float32), 32000)  # another rate
    (pred / "tiny-003.flac").write_bytes(b"not a flac file")
    out = tmp_path / "bad.csv"
    # some items failed: exit status 1, and the rows say why
    assert main(["score", str(pred), str(ref), "--metrics", "sdr", "--out", str(out), "--no-progress"]) == 1
    rows = {r["id"]: r for r in load_results(out)}
    assert "length mismatch" in rows["tiny-001"]["error"]
    assert "sample rate mismatch" in rows["tiny-002"]["error"]
    assert "cannot decode" in rows["tiny-003"]["error"]
    assert rows["tiny-004"]["error"] == "" and rows["tiny-004"]["sdr"] != ""
    meta = json.loads((tmp_path / "bad.csv.meta.json").read_text())
    assert meta["corpus"]["metrics"]["sdr"]["n_failed"] == 3


def test_score_allow_resample(dirs, tmp_path):
    pred, ref, _ = dirs
    x, _ = sf.read(ref / "tiny-002.wav", dtype="float32")
    from hsm_bench.audio.resample import resample

    sf.write(pred / "tiny-002.flac", resample(x, 16000, 32000), 32000, subtype="PCM_24")
    out = tmp_path / "rs.csv"
    assert main(["score", str(pred), str(ref), "--metrics", "sdr", "--out", str(out), "--allow-resample", "--no-progress"]) == 0
    row = {r["id"]: r for r in load_results(out)}["tiny-002"]
    assert row["error"] == "" and float(row["sdr"]) > 40  # resampled back and forth: nearly the reference


def test_run_via_cli_and_sweep(tiny_testset, tmp_path, capsys):
    args = ["run", "--system", "oracle_mixture", "--testset", "demo", "--metrics", "sdri",
            f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path}", "runtime.progress=false"]  # fmt: skip
    assert main(args) == 0
    corpus = json.loads(next(tmp_path.rglob("oracle_mixture/*/corpus.json")).read_text())
    assert corpus["metrics"]["sdri"]["mean"] == 0.0
    capsys.readouterr()
    sweep = ["run", "-m", "system=oracle_mixture,oracle_target", "metrics.names=[sdr]",
             f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path}", "runtime.progress=false"]  # fmt: skip
    assert main(sweep) == 0
    assert len(list(tmp_path.rglob("oracle_target/*/corpus.json"))) == 1
    assert "oracle_target on tiny" in capsys.readouterr().out


@pytest.mark.parametrize("metric,weights_name", [("kl", "panns-cnn14-16k"), ("afsim", "audio-flamingo-1-foundation")])
def test_run_without_weights_fails_in_one_line(tiny_testset, tmp_path, monkeypatch, capsys, metric, weights_name):
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    args = ["run", "--system", "oracle_target", "--metrics", metric, f"testset.root={tiny_testset}",
            f"paths.runs_dir={tmp_path / 'runs'}", "runtime.progress=false"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hsm-bench run: error: ")
    assert weights_name in err and "hsm-bench download-weights" in err
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_run_sugar_and_did_you_mean():
    assert parse_args(["--system", "oracle_irm", "--metrics=lsd_aligned,sdri", "x=1", "--keep-errors"]) == (
        ["system=oracle_irm", "metrics.names=[lsd_aligned,sdri]", "x=1", "runtime.keep_errors=true"], [], False,
    )  # fmt: skip
    assert parse_args(["-m", "--cfg", "job", "system=a,b"]) == (["system=a,b"], ["--cfg", "job"], True)
    with pytest.raises(UnknownNameError, match="Did you mean 'oracle_irm'"):
        parse_args(["--system", "oracle_irn"])
    with pytest.raises(UnknownNameError, match="'lsd'"):
        parse_args(["--metrics", "lds"])


def test_cli_unknown_name_exits_with_message(capsys):
    assert main(["build-testset", "audiocap"]) == 2
    assert "Did you mean 'audiocaps'" in capsys.readouterr().err


def test_ls_info_validate(capsys, tiny_testset):
    assert main(["ls", "metrics", "-v"]) == 0
    out = capsys.readouterr().out
    assert "lsd_aligned" in out and "audioldm-eval==0.0.3" in out
    assert main(["info"]) == 0
    assert "packages:" in capsys.readouterr().out
    assert main(["validate", str(tiny_testset)]) == 0
    assert "ok" in capsys.readouterr().out


def test_validate_detects_tampering(tmp_path, capsys):
    from tests.conftest import build_tiny_testset

    root = build_tiny_testset(tmp_path / "t" / "v1", n_items=3)
    x, sr = sf.read(root / "audio/target/tiny-001.wav", dtype="float32")
    sf.write(root / "audio/target/tiny-001.wav", x * 0.99, sr, subtype="PCM_16")
    assert main(["validate", str(root)]) == 1
    assert "tiny-001: target" in capsys.readouterr().out


def test_validate_config_tree(capsys):
    assert main(["validate"]) == 0, capsys.readouterr().out


def test_jsonl_survives_a_torn_last_line(tmp_path):
    from hsm_bench.store.jsonl import JsonlWriter, read_jsonl

    p = tmp_path / "x.jsonl"
    with JsonlWriter(p) as w:
        w.write({"id": "a", "v": 1.0})
        w.write({"id": "b", "v": float("inf")})
    with open(p, "a") as f:
        f.write('{"id": "c", "v"')  # killed mid-write
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b"]
    assert list(read_jsonl(p))[1]["v"] is None  # JSON has no Infinity; the row records why elsewhere
    with JsonlWriter(p) as w:
        w.write({"id": "d"})
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b", "d"]
