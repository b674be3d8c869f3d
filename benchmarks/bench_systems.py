"""Separation throughput and peak memory of every baseline system on CPU, with random weights.

For each system (default: every registered system that provides ``load_random``) and each
batch size, a fresh child process builds the system from its config defaults, calls
``load_random("cpu", seed=0)`` (the full-size separator with random weights; see each
system's docstring for its text encoder), and separates random noise mixtures of
``--seconds`` at the system's own rate: one warm-up batch, then ``--repeats`` timed
batches. Reported: seconds of audio separated per wall-clock second (the real-time factor's
inverse), seconds per item, and the child's peak resident memory. The batch size with the
highest throughput is marked as the system's best.

This times the model alone (``System.separate`` under ``torch.inference_mode``), not the
harness's file reading and resampling; the query text is a fixed sentence.

Usage: python benchmarks/bench_systems.py [--systems audiosep,lass_net] [--seconds 10]
       [--batch-sizes 1,2,4] [--repeats 2] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "a dog barks while a car passes by"


def child(name: str, batch_size: int, seconds: float, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch

    from hsm_bench.api.system import SeparationBatch
    from hsm_bench.pipeline.run import make_system
    from hsm_bench.run_config import _compose

    torch.set_num_threads(threads)
    cfg = _compose([f"system={name}"])
    system = make_system(cfg)
    t0 = time.perf_counter()
    system.load_random("cpu", seed=0)
    build_s = time.perf_counter() - t0
    n = int(round(seconds * system.sample_rate))
    rng = np.random.default_rng(0)
    mix = torch.from_numpy((0.1 * rng.standard_normal((batch_size, system.channels, n))).astype(np.float32))
    batch = SeparationBatch(
        item_ids=[f"item{k}" for k in range(batch_size)], mixture=mix, lengths=torch.full((batch_size,), n),
        instructions=[f"Extract the sound described as: {QUERY}."] * batch_size, task=["extract"] * batch_size,
        caption=[QUERY] * batch_size, query_style=["caption"] * batch_size,
    )  # fmt: skip
    with torch.inference_mode():
        system.separate(batch)  # warm-up: lazy allocations, kernel selection
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = system.separate(batch)
            times.append(time.perf_counter() - t)
    assert out.shape[0] == batch_size and torch.isfinite(out).all()
    best = min(times)
    return {
        "system": name, "batch_size": batch_size, "sample_rate": system.sample_rate, "seconds": seconds,
        "build_s": round(build_s, 2), "batch_s": round(best, 3), "s_per_item": round(best / batch_size, 3),
        "audio_s_per_s": round(batch_size * seconds / best, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def systems_with_random_weights() -> list[str]:
    from hsm_bench.registry import SYSTEMS

    return [n for n in SYSTEMS.names() if hasattr(SYSTEMS.get(n), "load_random")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", help="comma list (default: every system with load_random)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each mixture (default 10)")
    ap.add_argument("--batch-sizes", default="1,2,4", help="comma list (default 1,2,4)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--child", nargs=2, metavar=("SYSTEM", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.seconds, a.repeats, a.threads)))
        return
    names = a.systems.split(",") if a.systems else systems_with_random_weights()
    rows = []
    for name in names:
        for bs in [int(b) for b in a.batch_sizes.split(",")]:
            cmd = [sys.executable, __file__, "--child", name, str(bs), "--seconds", str(a.seconds),
                   "--repeats", str(a.repeats), "--threads", str(a.threads)]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})  # fmt: skip
            if res.returncode:
                print(f"{name} batch {bs}: failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{name:<20} bs={bs:<2} {r['audio_s_per_s']:>7.2f} audio-s/s  {r['s_per_item']:>6.2f} s/item  "
                  f"peak {r['peak_rss_mb']:>7.0f} MB  (build {r['build_s']} s)", flush=True)  # fmt: skip
    print("\nsystem               rate   bs=1 audio-s/s  best bs  best audio-s/s  peak MB (best)")
    for name in names:
        mine = [r for r in rows if r["system"] == name]
        if not mine:
            continue
        one = next((r for r in mine if r["batch_size"] == 1), None)
        best = max(mine, key=lambda r: r["audio_s_per_s"])
        print(f"{name:<20} {best['sample_rate']:>5}  {one['audio_s_per_s'] if one else float('nan'):>15.2f}  "
              f"{best['batch_size']:>7}  {best['audio_s_per_s']:>14.2f}  {best['peak_rss_mb']:>14.0f}")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
