"""HSM-TSS training on Lightning (training/): every stage overfits a tiny fixed batch and trains
only its own parameters, a resumed run equals the uninterrupted one, a 2-process DDP run on CPU
completes, and `hsm-bench train` writes a checkpoint the system loads. Tiny random models
(tests/hsm_tss_tiny.py); nothing is downloaded."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from tests.hsm_tss_tiny import tiny_checkpoints

REPO = Path(__file__).resolve().parents[1]
TRAINED = {"qaudio": ("qaudio.",), "global": ("global_sep.",), "local": ("local_sep.",),
           "joint": ("global_sep.", "local_sep."), "decoder": ("acoustic.",)}  # fmt: skip


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("hsm-tss-train"))


pytestmark = pytest.mark.usefixtures("one_thread")


def _overrides(ckpts, out, steps, variant="hsm-tss", **extra):
    base = {"init": ckpts[variant], "text": ckpts["t5"], "out": out, "trainer.max_steps": steps,
            "trainer.accelerator": "cpu", "trainer.devices": 1, "trainer.progress_bar": "false",
            "trainer.log_every_n_steps": 1, "data.batch_size": 4, "data.params.n_items": 4,
            "optim.warmup_steps": 0, "optim.schedule": "constant", "optim.lr": 1e-3}  # fmt: skip
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _train(stage, ckpts, out, steps, variant="hsm-tss", **extra):
    from training.train import compose, train

    return train(compose(stage, _overrides(ckpts, out, steps, variant, **extra)))


def _losses(out: Path) -> dict[int, float]:
    """``{step: train/loss}`` from every CSV log of the run folder (a resumed run adds a version)."""
    rows = {}
    for path in sorted(out.glob("logs/version_*/metrics.csv")):
        for r in csv.DictReader(path.open()):
            if r.get("train/loss"):
                rows[int(r["step"])] = float(r["train/loss"])
    return rows


def _state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("stage,variant", [("qaudio", "hsm-tss"), ("global", "hsm-tss"), ("local", "hsm-tss"),
                                           ("joint", "hsm-tss"), ("decoder", "hsm-tss"),
                                           ("local", "hsm-tss-single")])  # fmt: skip
def test_stage_overfits_one_batch_and_trains_only_its_parameters(stage, variant, ckpts, tmp_path):
    steps = 40
    folder = _train(stage, ckpts, tmp_path / "run", steps, variant)
    losses = _losses(tmp_path / "run")
    assert sorted(losses) == list(range(steps))  # one row per step, logged every step
    first, last = losses[0], losses[steps - 1]
    assert math.isfinite(last) and last <= 0.5 * first, (stage, first, last)  # >= 50 % drop on the fixed batch
    before, after = _state(ckpts[variant]), _state(folder)
    assert before.keys() == after.keys()
    prefixes = TRAINED[stage]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(prefixes) for k in changed), sorted(changed - {k for k in changed
                                                                                      if k.startswith(prefixes)})[:5]  # fmt: skip
    # every trained module moved (not just one tensor of it)
    for p in prefixes:
        assert any(k.startswith(p) for k in changed), p
    info = json.loads((folder / "config.json").read_text())["info"]
    assert info["stage"] == stage and info["steps"] == steps and info["seed"] == 0 and info["trained"] is True
    assert info["data"] == {"kind": "synthetic", "n_items": 4, "seconds": 1.0, "seed": 0}
    assert info["stages"][-1]["stage"] == stage


@pytest.mark.parametrize("stage", ["joint", "qaudio"])  # the P_gt switch; Q-Audio's sampled ITM negatives
def test_resume_equals_uninterrupted(stage, ckpts, tmp_path):
    k = 3
    # a schedule that depends on the total (cosine with warm-up), fixed independently of max_steps
    # and a different batch at every step (16 items, batches of 4), so the data must resume too
    extra = {"optim.schedule": "cosine", "optim.warmup_steps": 2, "optim.total_steps": 10, "loss.p_gt": 0.5,
             "data.params.n_items": 16}
    whole = _train(stage, ckpts, tmp_path / "whole", k + 1, **extra)
    _train(stage, ckpts, tmp_path / "parts", k, **extra)
    assert (tmp_path / "parts" / "checkpoints" / "last.ckpt").is_file()
    resumed = _train(stage, ckpts, tmp_path / "parts", k + 1, **extra)  # same out: resumes from last.ckpt
    versions = sorted((tmp_path / "parts").glob("logs/version_*/metrics.csv"))
    assert len(versions) == 2
    resumed_steps = {int(r["step"]) for r in csv.DictReader(versions[-1].open()) if r.get("train/loss")}
    assert resumed_steps == {k}  # the second run trained one step, from the checkpoint
    a, b = _losses(tmp_path / "whole"), _losses(tmp_path / "parts")
    assert sorted(a) == sorted(b) == list(range(k + 1))
    for step in range(k + 1):  # float32 on one thread: the same kernels in the same order
        assert abs(a[step] - b[step]) <= 1e-6 * max(1.0, abs(a[step])), (step, a[step], b[step])
    sa, sb = _state(whole), _state(resumed)
    worst = max(float((sa[key] - sb[key]).abs().max()) for key in sa if sa[key].is_floating_point())
    assert worst <= 1e-6, worst
    assert json.loads((resumed / "config.json").read_text())["info"]["steps"] == k + 1


def test_resume_refuses_another_seed(ckpts, tmp_path):
    from hsm_bench.weights import CheckpointError

    _train("global", ckpts, tmp_path / "run", 1)
    with pytest.raises(CheckpointError, match="seed"):
        _train("global", ckpts, tmp_path / "run", 2, seed=5)


def test_lr_schedule_hand_values():
    from training.stages import lr_lambda

    assert lr_lambda(0, 4, 20, "cosine", 0.1) == pytest.approx(0.25)
    assert lr_lambda(3, 4, 20, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_lambda(4, 4, 20, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_lambda(12, 4, 20, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert lr_lambda(20, 4, 20, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_lambda(50, 4, 20, "constant", 0.1) == 1.0


def _cli(args, capsys):
    from hsm_bench.cli import main

    status = main(["train", *args])
    return status, capsys.readouterr()


def test_cli_trains_and_writes_a_loadable_checkpoint(ckpts, tmp_path, capsys):
    from systems.hsm_tss.checkpoint import load_checkpoint

    out = tmp_path / "run"
    status, io = _cli(["hsm_tss", "stage=decoder", *_overrides(ckpts, out, 2)], capsys)
    assert status == 0, io.err
    assert str(out / "model") in io.out
    model, config = load_checkpoint(out / "model", variant="hierarchical")
    assert config["info"]["stage"] == "decoder" and config["info"]["steps"] == 2
    assert (out / "checkpoints" / "last.ckpt").is_file() and list(out.glob("logs/version_*/metrics.csv"))
    # the system separates with it (the same loading path as `hsm-bench run --weights hsm-tss=...`)
    from hsm_bench.api.system import SeparationBatch
    from systems.hsm_tss.system import HsmTss
    from systems.hsm_tss.text import TextEncoder

    system = HsmTss(parser="none")
    system._use(model, config, TextEncoder.from_folder(ckpts["t5"]), "cpu")
    n = 8000
    batch = SeparationBatch(item_ids=["a"], mixture=torch.randn(1, 1, n) * 0.1, lengths=torch.tensor([n]),
                            instructions=["extract rain"], task=["extract"], caption=["rain"])  # fmt: skip
    wave = system.separate(batch)
    assert wave.shape == (1, 1, n) and torch.isfinite(wave).all()


@pytest.mark.parametrize("stage,trained", [("codec", "codec."), ("mae", "audiomae.")])
def test_cli_trains_the_codec_and_mae_stages(stage, trained, ckpts, tmp_path, capsys):
    """The stages with modules of their own (training/stage_codec.py, stage_mae.py) through `hsm-bench
    train`: the checkpoint written changes that network only, and is loadable."""
    from safetensors.torch import load_file

    from systems.hsm_tss.checkpoint import load_checkpoint

    out = tmp_path / "run"
    extra = {"seconds": 1.0, "discriminator": "{channels:[32,32,32,32,32,32]}"} if stage == "codec" else {"optim.lr": 1e-3}
    status, io = _cli(["hsm_tss", f"stage={stage}", *_overrides(ckpts, out, 2, **extra)], capsys)
    assert status == 0, io.err
    _, config = load_checkpoint(out / "model", variant="hierarchical")
    assert config["info"]["stage"] == stage and config["info"]["steps"] == 2
    before = load_file(str(ckpts["hsm-tss"] / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert set(before) == set(after)  # the discriminator / MAE decoder stay out of the checkpoint
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(trained) for k in changed), sorted(changed)[:5]


@pytest.mark.parametrize("args,words", [
    (["hsm_tss", "stage=local", "trainer.max_stpes=3"], "trainer.max_steps"),
    (["hsm_tss", "stage=local"], "init="),
    (["audiosep", "stage=local"], "cannot train"),
    (["hsm_tss_single", "stage=global"], "single-stage"),
])  # fmt: skip
def test_cli_usage_errors_are_one_line(args, words, ckpts, tmp_path, capsys):
    if args[0] == "hsm_tss_single":
        args = [*args, *_overrides(ckpts, tmp_path / "run", 1, "hsm-tss-single")]
    elif "trainer.max_stpes=3" in args:
        args = [*args, f"init={ckpts['hsm-tss']}", f"text={ckpts['t5']}", f"out={tmp_path}"]
    status, io = _cli(args, capsys)
    assert status == 2 and len(io.err.strip().splitlines()) == 1 and words in io.err, io.err


def _train_ddp(stage, ckpts, out, **extra):
    """``hsm-bench train hsm_tss stage=...`` for 3 steps with 2 gloo processes on CPU; checks that it
    ran on both ranks, logged finite losses each step and kept Lightning's noise out of its output."""
    args = _overrides(ckpts, out, 3, **{"trainer.devices": 2, "data.batch_size": 2, **extra})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "hsm_bench.cli", "train", "hsm_tss", f"stage={stage}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Lightning's adverts and its deprecation warning are dropped, its run information stays
    assert "GPU available" in proc.stderr and "Tip:" not in proc.stderr and "deprecated" not in proc.stderr
    assert (out / "checkpoints" / "last.ckpt").is_file() and "weights_only" not in proc.stderr
    info = json.loads((out / "model" / "config.json").read_text())["info"]
    assert info["world_size"] == 2 and info["steps"] == 3
    losses = _losses(out)
    assert sorted(losses) == [0, 1, 2] and all(math.isfinite(v) for v in losses.values())


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["joint", "mae", "decoder"])
def test_ddp_two_processes_on_cpu(ckpts, tmp_path, stage):
    """Lightning's strategy=ddp, devices=2, gloo: both ranks step, rank 0 writes the model (DDP without
    find_unused_parameters: a parameter the stage's loss does not reach fails the run)."""
    _train_ddp(stage, ckpts, tmp_path / "run")


@pytest.mark.slow
def test_ddp_two_processes_train_the_codec_stage(ckpts, tmp_path):
    """The codec stage under DDP: manual optimisation of a generator and a discriminator, whose
    parameters each sit out the other's backward pass (find_unused_parameters); both ranks step,
    and only the codec changes."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    _train_ddp("codec", ckpts, out, **{"seconds": 0.4, "discriminator": "{hops:[16,32],channels:[32,64]}"})
    before = load_file(str(Path(ckpts["hsm-tss"]) / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"codec"}, changed


class _Numbered:
    def example(self, position):
        return {"position": position}


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_positions_follow_rank_step_and_not_the_worker_count(workers):
    from torch.utils.data import DataLoader

    from training.data import Positions

    def batches(rank, world, start, n):
        loader = DataLoader(Positions(_Numbered(), 2, rank=rank, world=world, start=start), batch_size=2,
                            num_workers=workers, collate_fn=lambda b: [e["position"] for e in b])  # fmt: skip
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                return out

    # rank r of 2 trains global batches 2b + r: positions (2b + r) * 2, +1
    assert batches(0, 2, 0, 3) == [[0, 1], [4, 5], [8, 9]]
    assert batches(1, 2, 0, 3) == [[2, 3], [6, 7], [10, 11]]
    assert batches(1, 2, 5, 2) == [[22, 23], [26, 27]]  # resumed after 5 batches of its own
    assert batches(0, 1, 0, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_mixture_stream_trains_through_the_cli(ckpts, tmp_path, capsys):
    """data.kind=mixtures: training.mixtures' on-the-fly triplets from the held-out demo pool."""
    out = tmp_path / "run"
    args = _overrides(ckpts, out, 2, **{"data.kind": "mixtures", "data.batch_size": 2, "data.params.pool": "demo",
                                        "data.params.pool_args.variants": 1,
                                        "data.params.pool_args.families": "[procedural]",
                                        "data.params.seconds": 2.0})  # fmt: skip
    args = [a for a in args if not a.startswith("data.params.n_items")]
    status, io = _cli(["hsm_tss", "stage=local", *args], capsys)
    assert status == 0, io.err
    info = json.loads((out / "model" / "config.json").read_text())["info"]
    assert info["data"]["kind"] == "mixtures" and info["data"]["pool"] == "demo" and info["data"]["n_clips"] > 1
