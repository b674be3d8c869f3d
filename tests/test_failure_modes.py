"""Every way a command can go wrong, driven through the CLI: one line on stderr, the documented
exit status (0 ok, 1 some items failed, 2 error / nothing computed, 130 interrupted), no
traceback, no file or folder left behind, nothing computed lost, and a rerun recovers.

The last section drives `build-testset` through bad input (missing sources, list files,
manifests, imports, pools that cannot yield the requested items).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hsm_bench.api.metric import Metric, MetricInfo
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.cli import main
from hsm_bench.registry import METRICS, SYSTEMS
from hsm_bench.store.jsonl import read_jsonl
from tests import dataset_fixtures as fx
from tests import plugin_pkg
from tests.test_pipeline import CrashAfter
from testsets.fsd50k import FSD50KBuilder
from testsets.ontology import load


# -- helpers --------------------------------------------------------------------------
def tree(*roots: Path) -> set[str]:
    """Every file and folder under the roots (to prove nothing was left behind)."""
    out = set()
    for root in roots:
        if root.exists():
            out |= {str(p) for p in root.rglob("*")}
    return out


def cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hsm-bench {command}: error: "), err
    return lines[0]


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HSM_BENCH_HOME"])


@pytest.fixture
def run_args(tiny_testset, tmp_path):
    """`run` on the tiny set into a fresh runs folder, quiet."""
    return [f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}", "runtime.progress=false"]


class Broken(System):
    """Fails on the items listed in ``FAIL`` (all when it holds "*"), returns the mixture otherwise."""

    name = "broken"
    FAIL: set[str] = set()
    calls: list[str] = []

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        Broken.calls.extend(batch.item_ids)
        if "*" in Broken.FAIL or Broken.FAIL & set(batch.item_ids):
            raise RuntimeError("device lost")
        return batch.mixture.clone()


class Crashy(Metric):
    """A metric whose model crashes on every batch (like a CUDA error inside an embedder)."""

    info = MetricInfo(name="crashy", outputs=("crashy",), higher_is_better=True, version="1", reference="none",
                      sample_rate=None)  # fmt: skip

    def compute_batch(self, items):
        raise RuntimeError("CUDA error: out of memory")


@pytest.fixture
def test_plugins():
    """Test systems/metric registered like plugins (so `--system NAME` gets a generated config)."""
    Broken.FAIL, Broken.calls, CrashAfter.seen = set(), [], []
    SYSTEMS.register("broken", Broken, origin="tests")
    SYSTEMS.register("crash_after", CrashAfter, origin="tests")  # Ctrl-C after `limit` items
    METRICS.register("crashy", Crashy, origin="tests")
    yield
    CrashAfter.limit = 5
    for reg, name in ((SYSTEMS, "broken"), (SYSTEMS, "crash_after"), (METRICS, "crashy")):
        reg.unregister(name)


# -- run outcome and exit status ------------------------------------------------------------
def test_every_item_failing_is_status_2_and_a_rerun_retries_them(test_plugins, run_args, tmp_path, capsys):
    Broken.FAIL = {"*"}
    status, out, err = cli(capsys, "run", "--system", "broken", "--metrics", "sdr", *run_args)
    assert status == 2
    line = one_error_line(err, "run")
    assert "no item was separated: all 12 failed" in line and "separate.jsonl" in line and "device lost" in line
    rows = list(read_jsonl(next((tmp_path / "runs").rglob("separate.jsonl"))))
    assert len(rows) == 12 and {r["status"] for r in rows} == {"error"}  # nothing lost: every failure recorded

    # --keep-errors: the failed items stay failed, the system is not called again
    Broken.FAIL, Broken.calls = set(), []
    status, out, err = cli(capsys, "run", "--system", "broken", "--metrics", "sdr", "--keep-errors", *run_args)
    assert status == 2 and Broken.calls == [] and "12 resumed" in out

    # default: a rerun retries them (the cause was environmental) and succeeds
    status, out, err = cli(capsys, "run", "--system", "broken", "--metrics", "sdr", *run_args)
    assert status == 0 and err == "" and len(Broken.calls) == 12
    assert "separate: 12 done, 0 failed, 0 resumed of 12" in out
    corpus = json.loads(next((tmp_path / "runs").rglob("corpus.json")).read_text())
    assert corpus["metrics"]["sdri"]["mean"] == 0.0 and corpus["metrics"]["sdri"]["n"] == 12


def test_some_items_failing_is_status_1_with_counts_and_rows(test_plugins, run_args, tmp_path, capsys):
    Broken.FAIL = {"tiny-002", "tiny-005"}
    status, out, err = cli(capsys, "run", "--system", "broken", "--metrics", "sdr", "runtime.batch_size=4", *run_args)
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hsm-bench run: finished with failures: 2 of 12 items failed")
    assert "separate.jsonl" in lines[0] and "rerun the same command to retry them" in lines[0]
    corpus = json.loads(next((tmp_path / "runs").rglob("corpus.json")).read_text())
    assert corpus["metrics"]["sdr"]["n"] == 10 and corpus["metrics"]["sdr"]["n_failed"] == 2


def test_cuda_on_a_cpu_build_is_a_setup_error(run_args, tmp_path, capsys, home):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    before = tree(tmp_path, home)
    status, _, err = cli(capsys, "run", "runtime.device=cuda", *run_args)
    assert status == 2
    assert "sees no CUDA device; use runtime.device=cpu" in one_error_line(err, "run")
    assert tree(tmp_path, home) == before


# -- one line, never a traceback, nothing left behind --------------------------------------
RUN_CASES = [
    (["runtime.device=gpu"], "runtime.device='gpu' is not a device: use cpu, cuda, cuda:N or mps"),
    (["system.params.beta=abc"], "system.params.beta='abc': system 'oracle_irm' expects a number (default 0.5)"),
    (["+system.params.bta=1"], "system.params.bta: system 'oracle_irm' has no parameter 'bta'. Did you mean 'beta'?"),
    (["runtime.devcie=cpu"], "unknown config key 'runtime.devcie'. Did you mean 'runtime.device'?"),
    (["+runtime.devcie=cpu"], "Did you mean 'runtime.device'?"),
    (["--sytem", "oracle_irm"], "unknown option --sytem. Did you mean '--system'? See `hsm-bench run --help`."),
    (["--system", "oracle_irn"], "unknown system 'oracle_irn'. Did you mean 'oracle_irm'"),
    (["--metrics", "lds"], "unknown metric or metric set 'lds'. Did you mean 'lsd'"),
    (["runtime.batch_size=abc"], "runtime.batch_size='abc': expected a positive integer or null"),
    (["runtime.score_batch_size=0"], "runtime.score_batch_size=0: expected a positive integer"),
    (["runtime.feature_cache=maybe"], "runtime.feature_cache='maybe': expected true or false"),
    (["system=oracle_irm,oracle_target"], "sweeps over several values: add -m"),
    (["foo"], "Error parsing override 'foo': write overrides as KEY=VALUE"),
    (["--weights", "panns-cnn14-16k"], "--weights expects NAME=PATH"),
    (["--weights", "panns-cnn14-16kk=/tmp"], "unknown weights 'panns-cnn14-16kk'. Did you mean 'panns-cnn14-16k'"),
    (["+metrics.params.sdr.bogus=1"], "metrics.params.sdr.bogus: sdr has no parameter 'bogus'. Its parameters: none."),
    (["system=oracle_mixture", "system.params.beta=1"], "system 'oracle_mixture' has no parameter 'beta'"),
    (["stages=[separate,scroe]"], "stages: unknown stage(s) scroe"),
]


@pytest.mark.parametrize("args,expected", RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_run_mistakes_are_one_line(args, expected, run_args, tmp_path, capsys, home):
    before = tree(tmp_path, home)
    status, out, err = cli(capsys, "run", *args, *run_args)
    assert status == 2
    line = one_error_line(err, "run")
    assert expected in line
    if "devcie" in args[0]:
        assert "+runtime" not in line  # never advise `+` for a key that exists under another spelling
    assert tree(tmp_path, home) == before


def test_run_missing_test_set_folder(tmp_path, capsys, home):
    before = tree(tmp_path, home)
    status, _, err = cli(capsys, "run", f"testset.root={tmp_path / 'nowhere'}", f"paths.runs_dir={tmp_path / 'runs'}")
    assert status == 2 and "not a built test set (no card.json there)" in one_error_line(err, "run")
    assert tree(tmp_path, home) == before


def test_run_with_every_weight_missing_names_them_all_at_once(tiny_testset, tmp_path, capsys, monkeypatch):
    from hsm_bench.registry import METRICS as M

    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    expected = list(dict.fromkeys(w for m in ("kl", "clap", "afsim") for w in M.get(m)().required_weights()))
    assert len(expected) >= 5  # Cnn14, CLAP + its text encoder, AF1 + its LM + its CLAP
    status, _, err = cli(capsys, "run", "--system", "oracle_target", "--metrics", "kl,clap,afsim",
                         f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}")  # fmt: skip
    assert status == 2
    line = one_error_line(err, "run")
    assert f"hsm-bench download-weights {' '.join(expected)}" in line
    assert line.count("download-weights") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "empty-home").exists()


def test_interrupt_keeps_finished_items_and_the_rerun_resumes(test_plugins, run_args, tmp_path, capsys):
    CrashAfter.limit = 4
    status, _, err = cli(capsys, "run", "--system", "crash_after", "--metrics", "sdr", "runtime.batch_size=1", *run_args)
    assert status == 130
    assert err == "hsm-bench run: interrupted: finished items are kept; rerun the same command to resume\n"
    rows = list(read_jsonl(next((tmp_path / "runs").rglob("separate.jsonl"))))
    assert [r["status"] for r in rows] == ["ok"] * 4
    CrashAfter.limit, first = 10**6, list(CrashAfter.seen)
    status, out, err = cli(capsys, "run", "--system", "crash_after", "--metrics", "sdr", "runtime.batch_size=1", *run_args)
    assert status == 0 and "8 done, 0 failed, 4 resumed of 12" in out
    assert sorted(CrashAfter.seen) == sorted(set(CrashAfter.seen)) and set(first) <= set(CrashAfter.seen)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    return plugin_pkg.install(tmp_path_factory.mktemp("plugin"), plugin_pkg.GOOD)


@pytest.mark.slow  # two child processes (~9 s); the in-process interrupt test above runs by default
def test_ctrl_c_on_a_real_process(plugin_site, tiny_testset, tmp_path):
    """SIGINT to `hsm-bench run` in a child process: status 130, one line, and the rerun resumes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "hsm_bench.cli", "run", "--system", "slow_copy", "--metrics", "sdr",
           f"testset.root={tiny_testset}", f"paths.runs_dir={runs}", "runtime.progress=false",
           "runtime.batch_size=1"]  # fmt: skip
    # a shell running the tests in the background (`cmd &`) hands its children SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: restore the default in the child, as a terminal has it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = list(runs.rglob("separate.jsonl"))
        if rows and len(list(read_jsonl(rows[0]))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "hsm-bench run: interrupted: finished items are kept; rerun the same command to resume\n"
    done = [r for r in read_jsonl(next(runs.rglob("separate.jsonl"))) if r["status"] == "ok"]
    assert 2 <= len(done) < 12
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{12 - len(done)} done, 0 failed, {len(done)} resumed of 12" in again.stdout


# -- scoring never guesses --------------------------------------------------------------------
@pytest.fixture
def dirs(tiny_testset, tmp_path):
    ref, mix, pred = tmp_path / "ref", tmp_path / "mix", tmp_path / "pred"
    shutil.copytree(tiny_testset / "audio/target", ref)
    shutil.copytree(tiny_testset / "audio/mixture", mix)
    shutil.copytree(tiny_testset / "audio/target", pred)
    return pred, ref, mix


def test_score_bad_out_suffix_leaves_no_file(dirs, tmp_path, capsys):
    pred, ref, _ = dirs
    status, _, err = cli(capsys, "score", pred, ref, "--out", tmp_path / "results.txt", "--no-progress")
    assert status == 2 and "per-item results are written as .csv or .jsonl" in one_error_line(err, "score")
    assert not (tmp_path / "results.txt").exists()


@pytest.mark.parametrize("args,expected", [
    (["--metrics", "sdri"], "nothing to score: sdri skipped: no --mix-dir"),
    (["--captions", "nowhere.csv"], "--captions nowhere.csv: no such file"),
    (["--metrics", "sdr", "--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
    (["--metrics", "kl"], "on a connected machine with `hsm-bench download-weights panns-cnn14-16k`"),
    (["--metrics", "sdr", "--param", "sdr.x=1"], "metrics.params.sdr.x: sdr has no parameter 'x'"),
])  # fmt: skip
def test_score_mistakes_are_one_line(dirs, tmp_path, capsys, args, expected):
    pred, ref, _ = dirs
    out = tmp_path / "res.csv"
    status, _, err = cli(capsys, "score", pred, ref, *args, "--out", out, "--no-progress")
    assert status == 2 and expected in one_error_line(err, "score")
    assert not out.exists()


def test_score_missing_folder_and_other_commands(tmp_path, capsys):
    for args, expected in [
        (["score", tmp_path / "nope", tmp_path], f"{tmp_path / 'nope'} is not a folder"),
        (["aggregate", tmp_path], "is not a run folder (no run.json)"),
        (["validate", "no-such-set"], "no built test set at no-such-set"),
        (["download-weights", "no-such-weights"], "unknown weights 'no-such-weights'"),
        (["build-testset", "audiocap"], "Did you mean 'audiocaps'"),
    ]:
        status, _, err = cli(capsys, *args)
        assert status == 2 and expected in one_error_line(err, str(args[0]))


def test_stereo_estimate_against_mono_reference_is_an_item_error(dirs, tmp_path, capsys):
    pred, ref, _ = dirs
    x, sr = sf.read(ref / "tiny-003.wav", dtype="float32")
    sf.write(pred / "tiny-003.wav", np.stack([x, np.zeros_like(x)], axis=1), sr, subtype="FLOAT")  # left = estimate
    out = tmp_path / "res.csv"
    status, _, err = cli(capsys, "score", pred, ref, "--metrics", "sdr", "--out", out, "--no-progress")
    assert status == 1
    row = {r["id"]: r for r in csv_rows(out)}["tiny-003"]
    assert row["sdr"] == "" and "estimate has 2 channel(s), reference has 1 (pass --downmix" in row["error"]
    # --downmix: averaged to mono as asked; left = reference, right = silence -> 20 log10(2)
    status, _, _ = cli(capsys, "score", pred, ref, "--metrics", "sdr", "--out", out, "--downmix", "--no-progress")
    assert status == 0
    row = {r["id"]: r for r in csv_rows(out)}["tiny-003"]
    assert float(row["sdr"]) == pytest.approx(20 * math.log10(2), abs=1e-4)


def csv_rows(path: Path) -> list[dict]:
    from hsm_bench.score_dirs import load_results

    return load_results(path)


def test_outputs_that_need_a_mixture_are_announced_once_not_failed(dirs, tmp_path, capsys):
    pred, ref, _ = dirs
    out = tmp_path / "res.jsonl"
    status, stdout, err = cli(capsys, "score", pred, ref, "--metrics", "signal", "--out", out, "--no-progress")
    assert status == 0
    assert err == "hsm-bench score: sdri, si_sdri skipped: no --mix-dir\n"
    meta = json.loads((tmp_path / "res.jsonl.meta.json").read_text())
    assert "sdri" not in meta["corpus"]["metrics"] and meta["corpus"]["metrics"]["sdr"]["n_failed"] == 0
    assert "sdri" not in stdout


def test_a_crashing_metric_is_contained_to_its_own_rows(test_plugins, dirs, tmp_path, capsys):
    pred, ref, _ = dirs
    out = tmp_path / "res.csv"
    status, stdout, err = cli(capsys, "score", pred, ref, "--metrics", "crashy,sdr", "--out", out, "--no-progress")
    assert status == 1
    rows = csv_rows(out)
    assert all(r["sdr"] != "" and r["crashy"] == "" for r in rows)
    assert all("crashy: crashy failed on this batch: RuntimeError: CUDA error: out of memory" in r["error"] for r in rows)
    assert "12 item scores failed (crashy 12" in err


def _tiny_cnn14(path: Path) -> Path:
    from hsm_bench.embedders.panns import Cnn14

    torch.manual_seed(0)
    torch.save({"model": Cnn14(16000, widths=(8, 8, 16, 16, 32, 32)).state_dict()}, path)
    return path


def test_a_crash_inside_kl_does_not_stop_the_run(tmp_path, run_args, capsys, monkeypatch):
    from hsm_bench.embedders import panns

    ckpt = _tiny_cnn14(tmp_path / "c.pth")

    def boom(self, clips):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(panns._Cnn14Embedder, "embed_audio", boom)
    status, stdout, err = cli(capsys, "run", "--system", "oracle_irm", "--metrics", "kl,sdr", "--weights",
                              f"panns-cnn14-16k={ckpt}", "+metrics.params.kl.embedder_params.arch.widths=[8,8,16,16,32,32]",
                              *run_args)  # fmt: skip
    assert status == 1 and "12 item scores failed (kl 12" in err
    corpus = json.loads(next((tmp_path / "runs").rglob("corpus.json")).read_text())
    assert corpus["metrics"]["sdr"]["n"] == 12 and corpus["metrics"]["kl"]["n_failed"] == 12
    monkeypatch.undo()  # the model works again: the rerun scores only what failed
    status, stdout, err = cli(capsys, "run", "--system", "oracle_irm", "--metrics", "kl,sdr", "--weights",
                              f"panns-cnn14-16k={ckpt}", "+metrics.params.kl.embedder_params.arch.widths=[8,8,16,16,32,32]",
                              *run_args)  # fmt: skip
    assert status == 0 and "score: 12 done, 0 failed, 0 resumed" in stdout
    corpus = json.loads(next((tmp_path / "runs").rglob("corpus.json")).read_text())
    assert corpus["metrics"]["kl"]["n"] == 12


def test_one_corpus_per_run_folder(run_args, tmp_path, capsys):
    assert cli(capsys, "run", "--metrics", "sdr", *run_args)[0] == 0
    status, stdout, _ = cli(capsys, "run", "--metrics", "lsd_aligned", *run_args)
    assert status == 0
    table = stdout.split("oracle_irm on tiny")[1]
    assert "lsd_aligned" in table and "sdri" not in table and "lsd " not in table  # the table shows what was asked
    corpus_path = next((tmp_path / "runs").rglob("corpus.json"))
    after_run = corpus_path.read_text()
    assert set(json.loads(after_run)["metrics"]) == {"sdr", "sdri", "si_sdr", "si_sdri", "lsd", "lsd_aligned"}
    assert cli(capsys, "aggregate", corpus_path.parent)[0] == 0
    assert corpus_path.read_text() == after_run  # `aggregate` and `run` give one answer


# -- build-testset ----------------------------------------------------------------------------
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


# -- clap in score mode: captions are an input like the mixture ------------------------------
@pytest.fixture
def tiny_clap(tmp_path_factory, monkeypatch):
    """A tiny random MS-CLAP 2023 + GPT-2 pair, given to `score` as --weights and --param."""
    import dataclasses

    from hsm_bench import weights
    from tests import clap_tiny

    d = tmp_path_factory.mktemp("clap")
    arch = {**clap_tiny.TINY_HTSAT, "d_proj": 16}
    gpt2 = clap_tiny.gpt2_folder(d / "gpt2")
    ckpt = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2023.pth", "2023", gpt2, arch, seed=5)
    for name in ("msclap-2023", "gpt2"):  # stand-in files cannot have the published size
        monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.spec(name), size=None, sha256=None))
    params = [f"clap.backend_params.arch.{k}={json.dumps(v)}" for k, v in arch.items()]
    args = ["--weights", f"msclap-2023={ckpt}", "--weights", f"gpt2={gpt2}"]
    for p in params + ["clap.backend_params.batch_size=2"]:
        args += ["--param", p]
    return args


def test_clap_without_captions_is_announced_once_not_failed(tiny_clap, dirs, tmp_path, capsys):
    pred, ref, mix = dirs
    out = tmp_path / "clap.jsonl"
    status, stdout, err = cli(capsys, "score", pred, ref, "--metrics", "clap", *tiny_clap, "--out", out, "--no-progress")
    assert status == 0
    assert err == "hsm-bench score: clap skipped: no --captions; clapi skipped: no --mix-dir and --captions\n"
    rows = csv_rows(out)
    assert len(rows) == 12 and all(set(r) == {"id", "clap_a"} for r in rows)
    assert all(r["clap_a"] == pytest.approx(1.0, abs=1e-6) for r in rows)  # estimate = reference

    captions = tmp_path / "captions.csv"
    captions.write_text("id,caption\n" + "".join(f"{p.stem},a harmonic tone hums\n" for p in sorted(pred.iterdir())))
    status, stdout, err = cli(capsys, "score", pred, ref, "--mix-dir", mix, "--captions", captions, "--metrics", "clap",
                              *tiny_clap, "--out", out, "--no-progress")  # fmt: skip
    assert status == 0 and err == ""
    rows = csv_rows(out)
    assert all(set(r) == {"id", "clap", "clap_a", "clapi"} for r in rows)
    # clapi is the estimate's clap minus the mixture's: here the estimate is the target
    assert len({round(r["clap"], 6) for r in rows}) > 1

    (tmp_path / "partial.csv").write_text("id,caption\ntiny-000,a tone\n")
    status, _, err = cli(capsys, "score", pred, ref, "--captions", tmp_path / "partial.csv", "--metrics", "clap",
                         *tiny_clap, "--no-progress")  # fmt: skip
    assert status == 2 and "11 output(s) have no caption in --captions" in one_error_line(err, "score")


class WithArtifacts(System):
    """Returns the mixture and a per-item artifact; NaN output for the items in ``NAN``, a raised error in
    a batch holding an item of ``RAISE`` (the harness then reruns the batch item by item)."""

    name = "with_artifacts"
    NAN: set[str] = set()
    RAISE: set[str] = set()

    def __init__(self):
        super().__init__()
        self.kept: dict[str, list] = {}

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        for k, item in enumerate(batch.item_ids):
            self.kept.setdefault(item, []).append(float(batch.mixture[k].abs().max()))
        if WithArtifacts.RAISE & set(batch.item_ids) and len(batch) > 1:
            raise RuntimeError("batch failed")
        out = batch.mixture.clone()
        for k, item in enumerate(batch.item_ids):
            if item in WithArtifacts.NAN:
                out[k] = float("nan")
        return out

    def take_artifacts(self, item_id: str):
        kept = self.kept.pop(item_id, None)
        return {f"peaks/{item_id}.npy": np.array(kept)} if kept else {}


def test_artifacts_are_written_once_per_ok_item_and_dropped_for_failures(tiny_testset, tmp_path, capsys):
    """System.take_artifacts: written under features/ beside the outputs for items that succeed, not for
    items that fail, and a batch rerun item by item does not leave the failed batch's copies behind."""
    SYSTEMS.register("with_artifacts", WithArtifacts, origin="tests")
    try:
        ids = sorted(json.loads(x)["id"] for x in (tiny_testset / "manifest.jsonl").read_text().splitlines())
        WithArtifacts.NAN, WithArtifacts.RAISE = {ids[0]}, {ids[3]}
        runs = tmp_path / "runs"
        status = main(["run", "--system", "with_artifacts", "--metrics", "sdr", f"testset.root={tiny_testset}",
                       f"paths.runs_dir={runs}", "runtime.progress=false", "runtime.batch_size=4"])  # fmt: skip
        assert status == 1  # one item failed (NaN output)
        feats = next(runs.glob("**/run.json")).parent / "features" / "peaks"
        written = sorted(p.stem for p in feats.glob("*.npy"))
        assert written == ids[1:]
        for item in written:  # one separation each: the failed batch's attempt was discarded
            assert np.load(feats / f"{item}.npy").shape == (1,)
        assert not list(feats.glob(".*"))  # no temporary files left
    finally:
        SYSTEMS.unregister("with_artifacts")
        WithArtifacts.NAN, WithArtifacts.RAISE = set(), set()
