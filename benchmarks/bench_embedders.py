"""Embedding speed and the feature cache at work (Cnn14 for KL; see bench_clap.py for CLAP).

1. Clips per second of PANNs Cnn14 (random weights, full size, 10-s clips at 16 kHz) on
   this CPU, one clip at a time (how audioldm-eval and hsm-bench run it: batch size 1
   keeps features independent of neighbours) and batched (for comparison).
2. The cache: scoring k systems against one test set with `kl` costs k + 1 embedding passes
   over the clips (each system's outputs, plus the references once), not 2k as in
   audioldm-eval, which embeds the reference folder for every evaluation; a rerun costs none.

Usage: python benchmarks/bench_embedders.py [--clips 8] [--systems 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from hsm_bench.embedders.panns import Cnn14, Cnn14_16k
from hsm_bench.metrics.kl import KL
from hsm_bench.store.cache import FeatureCache


def clips(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(160000)).astype(np.float32) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--systems", type=int, default=3)
    a = ap.parse_args()
    model = Cnn14(16000).eval()
    data = clips(a.clips, 0)
    with torch.inference_mode():
        model(torch.from_numpy(data[0])[None])  # warm-up
        t = time.perf_counter()
        for c in data:
            model(torch.from_numpy(c)[None])
        one = a.clips / (time.perf_counter() - t)
        t = time.perf_counter()
        model(torch.from_numpy(np.stack(data)))
        batched = a.clips / (time.perf_counter() - t)
    print(f"Cnn14 (81 M parameters), 10-s clips, {torch.get_num_threads()} threads: "
          f"{one:.2f} clips/s one at a time, {batched:.2f} clips/s in a batch of {a.clips}")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "cnn14.pth"
        torch.save({"model": model.state_dict()}, ckpt)
        emb = Cnn14_16k()
        with weights.overrides({"panns-cnn14-16k": ckpt}):
            emb.load()
        passes = []
        real = emb.embed_audio
        emb.embed_audio = lambda cs: passes.append(len(cs)) or real(cs)
        metric = KL()
        metric.use_embedder(emb, FeatureCache(Path(tmp) / "cache"))
        refs = clips(a.clips, 1)
        systems = [clips(a.clips, 10 + s) for s in range(a.systems)]
        for s, outs in enumerate(systems):
            metric.compute_batch([ScoreItem(f"i{k}", o, 16000, r) for k, (o, r) in enumerate(zip(outs, refs))])
        first = sum(passes) / a.clips
        metric.compute_batch([ScoreItem(f"i{k}", o, 16000, r) for k, (o, r) in enumerate(zip(systems[0], refs))])
        rerun = sum(passes) / a.clips - first
    print(f"kl for {a.systems} systems on one set of {a.clips} clips: {first:.0f} embedding passes "
          f"(k + 1 = {a.systems + 1}; without the cache 2k = {2 * a.systems}); rerun of a system: {rerun:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
