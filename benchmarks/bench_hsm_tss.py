"""Seconds per 10-s clip for every stage of HSM-TSS on CPU, full size, random weights.

Builds the paper's architecture (``systems.hsm_tss.model.ARCHITECTURE``: AudioMAE ViT-B,
Q-Audio, 6-layer global and 12-layer local NAR, the 12 x 1024 acoustic decoder, TF-Codec 6
kbps) with random weights, plus a random T5 encoder of FLAN-T5-base's size with a tokenizer
made here, and times each stage on one 10-s clip of noise (batch 1, after a warm-up):

    fbank, AudioMAE, FLAN-T5 (caption), Q-Audio (audio + text branch), global stage,
    local stage, acoustic decoder with the KV cache (500 frames), acoustic decoder without
    the cache, TF-Codec decoder (and encoder, which separation does not use).

Decoding without the cache recomputes the whole sequence (512 prefix features + start +
frames so far) at every step, so its cost grows with the step: ``--nocache-frames N`` times
the first N steps both ways (default 50); ``--nocache-frames 500`` times the whole clip
without the cache (about a quarter of an hour on 2 cores). The speed-up is reported for the
steps timed both ways, and, when fewer than 500, the full-clip figure without the cache is
extrapolated from the measured per-step cost (its growth is linear in the sequence length
for these lengths, where the 12 x 1024 projections dominate), marked as such.

Usage: python benchmarks/bench_hsm_tss.py [--threads 2] [--nocache-frames 50] [--variant hierarchical]
       [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int = 1):
    fn()  # warm-up
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nocache-frames", type=int, default=50)
    ap.add_argument("--variant", default="hierarchical", choices=["hierarchical", "single"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json")
    args = ap.parse_args()

    import numpy as np
    import torch

    from systems.hsm_tss.fbank import audiomae_input
    from systems.hsm_tss.model import HsmTssModel, architecture
    from systems.hsm_tss.text import TextEncoder, local_t5_folder

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    text = TextEncoder.from_folder(local_t5_folder(tempfile.mkdtemp(prefix="bench-t5-"), d_model=768, layers=12,
                                                   heads=12, d_ff=2048))  # fmt: skip
    arch = architecture(args.variant, text={"d_model": text.d_model, "vocab_size": text.vocab_size})
    torch.manual_seed(0)
    model = HsmTssModel(arch).eval()
    build_s = time.perf_counter() - t0
    n_params = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()
                if module is not None}  # fmt: skip

    sr = model.sample_rate
    n = int(round(args.seconds * sr))
    wave = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((1, n))).astype(np.float32))
    lengths = torch.tensor([n])
    caption = ["a dog barks while a man speaks in the background"]
    rows: dict[str, float] = {}
    with torch.inference_mode():
        rows["fbank"], fb = timed(lambda: audiomae_input(wave, lengths), 3)
        rows["audiomae"], s_mix = timed(lambda: model.audiomae(fb))
        rows["flan_t5_caption"], (cap, cap_valid) = timed(lambda: text.captions(caption), 3)
        task, task_valid = text.tasks(["extract"])
        g_hat = None
        if model.qaudio is not None:
            rows["qaudio_audio"], g_mix = timed(lambda: model.qaudio.audio_features(s_mix), 3)
            rows["qaudio_text"], _ = timed(lambda: model.condition(cap, cap_valid, task), 3)
            t_task, t_cap = model.condition(cap, cap_valid, task)
            rows["global_stage"], g_hat = timed(lambda: model.global_sep(g_mix, t_task, task_valid, t_cap, cap_valid), 3)
        else:
            t_task, t_cap = model.condition(cap, cap_valid, task)
        rows["local_stage"], (s_hat, _) = timed(
            lambda: model.local_sep(s_mix, g_hat, t_task, task_valid, t_cap, cap_valid))
        frames = model.n_frames(n)
        t = time.perf_counter()
        codes = model.acoustic.generate(s_hat, frames, use_cache=True)
        rows["acoustic_with_cache"] = time.perf_counter() - t
        k = min(args.nocache_frames, frames)
        t = time.perf_counter()
        model.acoustic.generate(s_hat, k, use_cache=True)
        cached_k = time.perf_counter() - t
        t = time.perf_counter()
        model.acoustic.generate(s_hat, k, use_cache=False)
        nocache_k = time.perf_counter() - t
        if k == frames:
            rows["acoustic_without_cache"] = nocache_k
        else:
            # cost of step i ~ a + b (prefix + i): fit a + b * L on the k measured steps' mean length
            # by timing one step at the start and one at the end of the range
            head = model.acoustic
            s_in = s_hat

            def one_step(i):
                prefix = torch.randint(0, head.codebook_size, (1, i, head.n_codebooks))
                full = torch.cat([head._prefix(s_in), (head.start + head.frame_pos[0]).expand(1, 1, -1),
                                  head._frames(prefix, 0)], 1)  # fmt: skip
                m = full.shape[1]
                t = time.perf_counter()
                head.transformer(full, head._mask(m, m, full.device))
                return time.perf_counter() - t, m

            (c0, l0), (c1, l1) = one_step(1), one_step(k)
            (c0, l0), (c1, l1) = one_step(1), one_step(k)  # second pass: warm
            (ce, le) = one_step(frames - 1)
            slope = (ce - c0) / max(le - l0, 1)
            est = sum(c0 + slope * (l0 + i - 1) for i in range(1, frames + 1))
            rows["acoustic_without_cache_extrapolated"] = est
        rows["tfcodec_decode"], _ = timed(lambda: model.decode_tokens(codes))
        rows["tfcodec_encode"], _ = timed(lambda: model.token_codec.encode(wave))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "variant": args.variant, "threads": args.threads, "clip_seconds": args.seconds, "frames": frames,
        "build_seconds": round(build_s, 2), "parameters": n_params, "seconds_per_clip": {k: round(v, 4) for k, v in rows.items()},
        "nocache_comparison": {"steps": k, "with_cache_s": round(cached_k, 3), "without_cache_s": round(nocache_k, 3),
                               "speedup": round(nocache_k / cached_k, 2)},
        "peak_rss_mb": round(peak_mb),
        "torch": torch.__version__,
    }  # fmt: skip
    separate = sum(v for key, v in rows.items() if key not in ("tfcodec_encode", "acoustic_without_cache",
                                                               "acoustic_without_cache_extrapolated"))  # fmt: skip
    out["separation_seconds_per_clip"] = round(separate, 3)
    print(f"HSM-TSS ({args.variant}), random weights, {args.seconds:g}-s clip, batch 1, {args.threads} thread(s), "
          f"torch {torch.__version__}")  # fmt: skip
    for key, value in rows.items():
        print(f"  {key:38s} {value:9.3f} s")
    print(f"  separation total (with cache)          {separate:9.3f} s")
    c = out["nocache_comparison"]
    print(f"  first {c['steps']} decoding steps: {c['with_cache_s']:.3f} s with the cache, {c['without_cache_s']:.3f} s "
          f"without: {c['speedup']:.1f}x")  # fmt: skip
    if "acoustic_without_cache_extrapolated" in rows:
        full = rows["acoustic_without_cache_extrapolated"] / rows["acoustic_with_cache"]
        print(f"  all {frames} steps without the cache (extrapolated from timed steps): "
              f"{rows['acoustic_without_cache_extrapolated']:.1f} s, {full:.0f}x the cached decode")  # fmt: skip
    elif "acoustic_without_cache" in rows:
        print(f"  all {frames} steps: {rows['acoustic_without_cache'] / rows['acoustic_with_cache']:.1f}x faster with the cache")
    print(f"  parameters: {', '.join(f'{k} {v / 1e6:.1f} M' for k, v in n_params.items())}; peak RSS {peak_mb:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
