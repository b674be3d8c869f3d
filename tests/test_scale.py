"""Scale-out: shards merge to the single-process corpus, concurrent writers are guarded, the
launcher configs compose, and the feature cache survives concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hsm_bench.cli import main
from hsm_bench.store.jsonl import read_jsonl
from tests import plugin_pkg


def _corpus(root: Path, system: str = "oracle_irm") -> dict:
    (path,) = list(root.rglob(f"{system}/*/corpus.json"))
    return json.loads(path.read_text())


def _rows(run: Path, kind: str) -> list[dict]:
    return [r for f in sorted(run.glob(f"{kind}*.jsonl")) for r in read_jsonl(f)]


def _args(tiny_testset, runs: Path, *extra: str) -> list[str]:
    return ["run", "--system", "oracle_irm", "--metrics", "sdr,lsd", f"testset.root={tiny_testset}",
            f"paths.runs_dir={runs}", "runtime.progress=false", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def six_items(tmp_path_factory):
    from tests.conftest import build_tiny_testset

    return build_tiny_testset(tmp_path_factory.mktemp("six") / "tiny" / "v1", n_items=6, seconds=1.0, seed=5)


def test_shards_in_sequence_merge_to_the_single_process_corpus(six_items, tmp_path, capsys):
    assert main(_args(six_items, tmp_path / "one")) == 0
    for index in range(3):
        assert main(_args(six_items, tmp_path / "three", "--shard", f"{index}/3", "runtime.batch_size=3")) == 0
    out = capsys.readouterr().out
    assert out.count("still to do: the last shard writes corpus.json") == 2  # shards 0 and 1 wait, 2 merges
    assert _corpus(tmp_path / "three") == _corpus(tmp_path / "one")
    (run,) = [p.parent for p in (tmp_path / "three").rglob("run.json")]
    assert sorted(p.name for p in run.glob("*.jsonl")) == [f"{k}.shard-{i}-of-3.jsonl" for k in ("items", "separate")
                                                           for i in range(3)]  # fmt: skip
    keys = [(r["id"], r["metric"]) for r in _rows(run, "items")]
    assert len(keys) == len(set(keys)) == 6 * 2  # every (item, metric) exactly once
    # `hsm-bench aggregate` reads every shard's rows and gives the same answer
    before = (run / "corpus.json").read_text()
    assert main(["aggregate", str(run)]) == 0
    assert (run / "corpus.json").read_text() == before


@pytest.mark.slow  # the 200-item demo set, twice
def test_two_processes_through_the_joblib_launcher_on_the_demo_set(tmp_path, capsys):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    # the same thread count in every process: float32 reductions (LSD) round with the number of
    # threads, and the joblib workers run single-threaded (loky sets OMP_NUM_THREADS=1)
    args = ["run", "--system", "oracle_irm", "--metrics", "sdr,lsd", "runtime.progress=false", "runtime.threads=1"]
    assert main([*args, f"paths.runs_dir={tmp_path / 'one'}"]) == 0
    status = main([*args, f"paths.runs_dir={tmp_path / 'two'}", "-m", "hydra/launcher=local_2",
                   "runtime.shard.index=0,1", "runtime.shard.count=2"])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert _corpus(tmp_path / "two") == _corpus(tmp_path / "one")
    (run,) = [p.parent for p in (tmp_path / "two").rglob("run.json")]
    profile = json.loads((run / "profile.json").read_text())
    assert sorted(k.rsplit("-", 1)[1] for k in profile) == ["shard0of2", "shard1of2"]  # two jobs, one each
    assert not list((tmp_path / "two" / ".sweeps").glob("results-*"))  # the results folder is cleaned up


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    return plugin_pkg.install(tmp_path_factory.mktemp("plugin"), plugin_pkg.GOOD)


def _spawn(plugin_site: Path, tiny_testset: Path, runs: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "hsm_bench.cli", "run", "--system", "slow_copy", "--metrics", "sdr",
           "system.params.seconds=1.0", f"testset.root={tiny_testset}", f"paths.runs_dir={runs}",
           "runtime.progress=false", "runtime.batch_size=1", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_rows(runs: Path, n: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(len(list(read_jsonl(f))) for f in runs.rglob("separate*.jsonl")) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the first process never started separating")


@pytest.mark.slow  # two child processes, one of them separating slowly on purpose
def test_a_second_process_on_the_same_shard_stops_in_one_line(plugin_site, tiny_testset, tmp_path):
    runs = tmp_path / "runs"
    first = _spawn(plugin_site, tiny_testset, runs)
    _wait_for_rows(runs)
    second = _spawn(plugin_site, tiny_testset, runs)
    out2, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 2 and err2.count("\n") == 1 and "Traceback" not in err2
    assert f"another hsm-bench process (pid {first.pid}) is working on this run" in err2
    (run,) = [p.parent for p in runs.rglob("run.json")]
    ids = [r["id"] for r in _rows(run, "separate")]
    keys = [(r["id"], r["metric"]) for r in _rows(run, "items")]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 12  # nothing separated twice
    assert len(keys) == len(set(keys)) == 12


@pytest.mark.slow  # two processes separating at once
def test_two_shards_at_once_write_every_row_exactly_once(plugin_site, tiny_testset, tmp_path):
    runs = tmp_path / "runs"
    procs = [_spawn(plugin_site, tiny_testset, runs, "--shard", f"{i}/2") for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    (run,) = [p.parent for p in runs.rglob("run.json")]
    keys = [(r["id"], r["metric"]) for r in _rows(run, "items")]
    assert len(keys) == len(set(keys)) == 12
    corpus = json.loads((run / "corpus.json").read_text())
    assert corpus["metrics"]["sdri"]["n"] == 12 and corpus["metrics"]["sdri"]["mean"] == 0.0
    printed = "".join(out for out, _ in results)
    assert printed.count("oracle") == 0 and "slow_copy on tiny (12 items)" in printed  # the merging shard's table


def test_the_slurm_launcher_config_composes_without_slurm(capsys):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    assert main(["run", "-m", "hydra/launcher=slurm_gpu", "--cfg", "hydra"]) == 0
    out = capsys.readouterr().out
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in out
    assert "gpus_per_node: 1" in out and "max_num_timeout: 5" in out


def _hammer(root: str, seed: int, n: int) -> int:
    """Write the same cache entries over and over, reading them back in between."""
    from hsm_bench.store.cache import FeatureCache

    cache = FeatureCache(root)
    rng = np.random.default_rng(seed)
    bad = 0
    for _ in range(n):
        cache.put("emb@1-x", "k" * 40, {"embedding": np.full(4096, 7.0, dtype=np.float32)})
        got = cache.get("emb@1-x", "k" * 40)
        if got is not None and not np.array_equal(got["embedding"], np.full(4096, 7.0, dtype=np.float32)):
            bad += 1
        rng.random()
    return bad


def test_the_feature_cache_survives_concurrent_writers(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        bad = pool.starmap(_hammer, [(str(tmp_path), 0, 200), (str(tmp_path), 1, 200)])
    assert bad == [0, 0]  # never a torn read
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".npz"]
    assert leftovers == []  # no temporary files left behind
