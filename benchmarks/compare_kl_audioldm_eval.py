"""Does hsm-bench's `kl` reproduce audioldm-eval 0.0.3's KL? Same pairs, same Cnn14 weights.

Writes N pairs of 10-s (and some shorter) clips at 16 kHz, a random-weight Cnn14 checkpoint
in the official layout (``{"model": state_dict}``, random BatchNorm statistics too), then
computes KL twice: with audioldm-eval's own ``Cnn14``, ``WaveDataset`` and ``calculate_kl``
in the side venv ``benchmarks/.side/aldm`` (``bash benchmarks/setup_side_envs.sh aldm``), and with
``hsm-bench score --metrics kl`` using the same checkpoint. audioldm-eval loads the file
with ``load_state_dict(strict=True)``, so this also checks that our key names are the
official ones.

Usage: python benchmarks/compare_kl_audioldm_eval.py [--n 16] [--aldm-python PATH]
(``--aldm-python`` defaults to benchmarks/.side/aldm/bin/python)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ALDM_PYTHON = Path(__file__).resolve().parent / ".side" / "aldm" / "bin" / "python"

ALDM_SIDE = r"""
import json, sys, torch, soundfile as sf
import audioldm_eval.datasets.load_mel as load_mel
def sf_load(path, *a, **k):
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), rate
load_mel.torchaudio.load = sf_load
from audioldm_eval.feature_extractors.panns import Cnn14
from audioldm_eval.metrics.kl import calculate_kl
from audioldm_eval.datasets.load_mel import WaveDataset
from audioldm_eval.eval import EvaluationHelper
from types import SimpleNamespace
from torch.utils.data import DataLoader
gen, tgt = sys.argv[1], sys.argv[2]
model = Cnn14(features_list=["2048", "logits"], sample_rate=16000, window_size=512, hop_size=160,
              mel_bins=64, fmin=50, fmax=8000, classes_num=527).eval()
helper = SimpleNamespace(mel_model=model, device=torch.device("cpu"))
f1 = EvaluationHelper.get_featuresdict(helper, DataLoader(WaveDataset(gen, 16000), batch_size=1))
f2 = EvaluationHelper.get_featuresdict(helper, DataLoader(WaveDataset(tgt, 16000), batch_size=1))
kl, _, _ = calculate_kl(f1, f2, "logits", True)
print(json.dumps(kl))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aldm-python", default=str(ALDM_PYTHON), help=f"python of the audioldm-eval venv (default {ALDM_PYTHON})")
    ap.add_argument("--n", type=int, default=16)
    a = ap.parse_args()
    if not Path(a.aldm_python).exists():
        sys.exit(f"{a.aldm_python} not found: run `bash benchmarks/setup_side_envs.sh aldm` (or pass --aldm-python)")
    root = Path(tempfile.mkdtemp(prefix="hsm-kl-"))
    gen, tgt = root / "gen", root / "tgt"
    gen.mkdir()
    tgt.mkdir()
    rng = np.random.default_rng(0)
    for k in range(a.n):
        n = 160000 if k % 4 else 24000  # some clips shorter than the 2-s padding
        t = np.arange(n) / 16000
        ref = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.02 * rng.standard_normal(n) + 0.05
        est = ref + rng.uniform(0.01, 0.3) * rng.standard_normal(n)
        if k % 2:  # a different sound altogether
            est = 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(50, 400) * t)) + 0.1 * rng.standard_normal(n)
        sf.write(tgt / f"{k:03d}.wav", ref.astype(np.float32), 16000, subtype="FLOAT")
        sf.write(gen / f"{k:03d}.wav", est.astype(np.float32), 16000, subtype="FLOAT")

    from hsm_bench.embedders.panns import Cnn14

    torch.manual_seed(0)
    model = Cnn14(16000)
    # calibrate BatchNorm statistics on the clips (train-mode passes, cumulative averages) so
    # activations have realistic scales; then sharpen the classifier so KL is far from 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    model.train()
    with torch.no_grad():
        for p in sorted(gen.glob("*.wav")) + sorted(tgt.glob("*.wav")):
            x, _ = sf.read(p, dtype="float32")
            model(torch.from_numpy(x)[None])
        model.eval()
        model.fc_audioset.weight.mul_(8.0)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    torch.save({"model": model.state_dict()}, ckpt / "Cnn14_16k_mAP=0.438.pth")
    (ckpt / "Cnn14_mAP=0.431.pth").touch()  # audioldm-eval downloads both unless this one exists

    side = subprocess.run([a.aldm_python, "-c", ALDM_SIDE, str(gen), str(tgt)], cwd=root, capture_output=True, text=True)
    if side.returncode:
        sys.exit(f"audioldm-eval side failed:\n{side.stderr[-3000:]}")
    theirs = json.loads(side.stdout.strip().splitlines()[-1])

    out = root / "ours.csv"
    env = {**os.environ, "HSM_BENCH_HOME": str(root / "home")}
    cmd = [sys.executable, "-m", "hsm_bench.cli", "score", str(gen), str(tgt), "--metrics", "kl",
           "--weights", f"panns-cnn14-16k={ckpt / 'Cnn14_16k_mAP=0.438.pth'}", "--out", str(out), "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    import csv

    with open(out) as f:
        rows = list(csv.DictReader(f))
    ours = {"kl": np.mean([float(r["kl"]) for r in rows]), "kl_sigmoid": np.mean([float(r["kl_sigmoid"]) for r in rows])}
    print(f"{a.n} pairs, random Cnn14 weights (loaded strictly by audioldm-eval's own Cnn14)")
    print(f"  audioldm-eval 0.0.3: KL softmax {theirs['kullback_leibler_divergence_softmax']:.8f}  "
          f"KL sigmoid {theirs['kullback_leibler_divergence_sigmoid']:.8f}")  # fmt: skip
    print(f"  hsm-bench kl:        KL softmax {ours['kl']:.8f}  KL sigmoid {ours['kl_sigmoid']:.8f}")
    for key, ref_key in (("kl", "softmax"), ("kl_sigmoid", "sigmoid")):
        ref = theirs[f"kullback_leibler_divergence_{ref_key}"]
        diff = abs(ours[key] - ref)
        print(f"  {key:<11} abs difference {diff:.2e}, relative {diff / abs(ref):.2e}")


if __name__ == "__main__":
    main()
