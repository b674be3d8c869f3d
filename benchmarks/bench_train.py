"""Training throughput of HSM-TSS's stages on CPU, at the paper's sizes (issue 11).

Per stage (codec and mae with their own configs: full-size multi-scale discriminator on 3-s crops,
384-wide MAE decoder; the discriminator and MAE decoder count as trained parameters), in its own process
(so that each peak RSS is the stage's own): the paper's architecture with random weights (AudioMAE ViT-B, Q-Audio, 6-layer global stage, 12x768 local
stage, 12x1024 acoustic decoder, TF-Codec 6 kbps), a random T5 encoder of FLAN-T5-base's size
(``local_t5_folder``: 768 wide, 12 layers, 12 heads, FFN 2048, on a small word vocabulary), a
Lightning Trainer on the CPU in float32 with batches of ``--batch`` synthetic 10-s clips
(``training.data.SyntheticMixtures``); ``--warmup`` untimed steps, then ``--steps`` timed ones.
Prints examples per second (timed steps only: forward, backward, optimizer) and the process's
peak resident memory.

    python benchmarks/bench_train.py                  # every stage, batch 2, 1 + 2 steps
    python benchmarks/bench_train.py --stages local --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("codec", "mae", "qaudio", "global", "local", "joint", "decoder")


def child(stage: str, batch: int, warmup: int, steps: int, threads: int, seconds: float, t5: str) -> dict:
    import lightning as L
    import torch

    from omegaconf import OmegaConf

    from systems.hsm_tss.model import HsmTssModel, architecture
    from systems.hsm_tss.text import TextEncoder
    from training.data import data_module
    from training.stages import HsmTssStage, stage_module
    from training.train import compose

    torch.set_num_threads(threads)
    text = TextEncoder.from_folder(t5)
    arch = architecture("hierarchical", text={"d_model": text.d_model, "vocab_size": text.vocab_size})
    torch.manual_seed(0)
    model = HsmTssModel(arch)
    if stage in ("codec", "mae"):
        # the stage's own configuration (full-size discriminator, 384-wide MAE decoder), constant lr
        cfg = compose(stage, [f"init={t5}", f"text={t5}", f"out={t5}", "optim.warmup_steps=0",
                              "optim.schedule=constant"])  # fmt: skip
        module = stage_module(model, text, stage, OmegaConf.to_container(cfg, resolve=True))
        n_trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
        clip = None  # codec: manual optimisation clips inside the stage; mae: the official run does not clip
    else:
        module = HsmTssStage(model, text, stage, optim={"warmup_steps": 0, "schedule": "constant"})
        n_trained = sum(p.numel() for _, p in module.trainable_parameters())
        clip = 1.0
    data, _ = data_module("synthetic", {"n_items": batch, "seconds": seconds}, 0, batch)
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, b, i):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, b, i):
            times.append(time.perf_counter() - self.t)

    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=warmup + steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Clock()], gradient_clip_val=clip)  # fmt: skip
    trainer.fit(module, datamodule=data)
    timed = times[warmup:]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    return {"stage": stage, "trained_params_M": n_trained / 1e6, "step_s": sum(timed) / len(timed),
            "examples_per_s": batch * len(timed) / sum(timed), "peak_rss_MB": peak_mb, "first_step_s": times[0]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--t5", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.batch, a.warmup, a.steps, a.threads, a.seconds, a.t5)))
        return
    import torch

    from systems.hsm_tss.text import local_t5_folder

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        t5 = local_t5_folder(Path(tmp) / "t5", d_model=768, layers=12, heads=12, d_ff=2048)
        print(f"HSM-TSS training on CPU, paper sizes, random weights; batch {a.batch} x {a.seconds:g}-s clips, "
              f"float32, {a.threads} thread(s), {a.warmup} untimed + {a.steps} timed step(s); torch {torch.__version__}")  # fmt: skip
        print(f"{'stage':<8} {'trained M':>10} {'s/step':>8} {'examples/s':>11} {'peak RSS MB':>12} {'1st step s':>11}")
        for stage in a.stages.split(","):
            cmd = [sys.executable, __file__, "--child", stage, "--t5", str(t5), "--batch", str(a.batch), "--seconds",
                   str(a.seconds), "--warmup", str(a.warmup), "--steps", str(a.steps), "--threads", str(a.threads)]  # fmt: skip
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env(), check=False)
            if proc.returncode:
                print(f"{stage:<8} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{stage:<8} {r['trained_params_M']:>10.1f} {r['step_s']:>8.2f} {r['examples_per_s']:>11.3f} "
                  f"{r['peak_rss_MB']:>12.0f} {r['first_step_s']:>11.2f}", flush=True)  # fmt: skip


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


if __name__ == "__main__":
    main()
