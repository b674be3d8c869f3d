"""CLAP audio-embedding speed on CPU at the real architecture sizes (random weights).

For each CLAP embedder (MS-CLAP 2023 HTS-AT tiny, MS-CLAP 2022 Cnn14, LAION HTS-AT tiny
and base), 10-s clips at the embedder's rate (what the ``clap`` metric gets for the paper's
10-s test items: 2 windows for MS-CLAP, 1 for LAION):

* **batched**: ``embed_audio`` on N clips with ``batch_size`` windows per forward pass;
* **one clip at a time**: ``embed_audio([clip])`` per clip with ``batch_size=1`` (the
  lowest latency for a single item; every pass holds one window);
* the share of the fixed front end (STFT as a Conv1d + log-mel) in one forward pass.

Usage: python benchmarks/bench_clap.py [--n 16] [--batch 8] [--threads 2] [--only msclap-2023 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

MODELS = ["msclap-2023", "msclap-2022", "laion-clap-630k-audioset", "laion-clap-music-speech-audioset"]


def bench(name: str, n: int, batch: int, seconds: float) -> dict:
    from hsm_bench.registry import EMBEDDERS

    cls = EMBEDDERS.get(name)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(seconds * cls.sample_rate))).astype(np.float32) for _ in range(n)]
    e = cls(batch_size=batch)
    e.init_random(0)
    params = sum(p.numel() for p in e.model.parameters()) / 1e6  # incl. the fixed front end
    windows = int(e.embed_audio(clips[:1])[0]["n_windows"])  # also a warm-up
    t = time.perf_counter()
    e.embed_audio(clips)
    batched = time.perf_counter() - t
    e1 = cls(batch_size=1)
    e1.init_random(0)
    e1.embed_audio(clips[:1])
    t = time.perf_counter()
    for c in clips[: max(2, n // 4)]:
        e1.embed_audio([c])
    single = (time.perf_counter() - t) / max(2, n // 4)
    # front-end share: one batch of windows through the STFT + log-mel only
    base = getattr(e.model, "audio_branch", None) or e.model.audio_encoder.base
    base = getattr(base, "htsat", base)
    w = torch.from_numpy(np.stack([clips[0][: e.window]] * batch))
    with torch.inference_mode():
        t = time.perf_counter()
        base.logmel_extractor(base.spectrogram_extractor(w))
        fe = time.perf_counter() - t
    n_batches = -(-n * windows // batch)
    return {"model": name, "params_M": params, "windows_per_clip": windows, "clips_per_s_batched": n / batched,
            "clips_per_s_single": 1 / single, "ms_per_window_batched": 1000 * batched / (n * windows),
            "front_end_share": fe * n_batches / batched}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="clips per model")
    ap.add_argument("--batch", type=int, default=8, help="windows per forward pass (batched run)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", action="append", choices=MODELS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.n} clips of {a.seconds:g} s, batch {a.batch}")
    print(f"{'model':<34}{'params':>8}{'win/clip':>9}{'batched clips/s':>17}{'single clips/s':>16}{'ms/window':>11}{'front end':>11}")
    for name in a.only or MODELS:
        r = bench(name, a.n, a.batch, a.seconds)
        print(f"{r['model']:<34}{r['params_M']:>7.1f}M{r['windows_per_clip']:>9}{r['clips_per_s_batched']:>17.2f}"
              f"{r['clips_per_s_single']:>16.2f}{r['ms_per_window_batched']:>11.0f}{100 * r['front_end_share']:>10.0f}%")  # fmt: skip


if __name__ == "__main__":
    main()
