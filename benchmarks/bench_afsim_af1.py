"""AFSim with Audio Flamingo 1 at its real size on this CPU (random weights, no download).

Builds the full-size model AF1 loads: OPT-IML-MAX-1.3B's configuration (24 layers, 2048
wide, 50272-token embedding), a gated cross-attention block per layer (8 heads of 64, FF x4),
the 3-layer 1024-d audio transformer and MS-CLAP 2023's HTS-AT audio encoder, with random
weights (2.2 B parameters, about 9 GB in float32). The tokenizer is a small word-level
stand-in, so the prompt has 19 tokens (the real OPT tokenizer gives about as many).

Reported: build time, peak RSS, and 10-s clips per second split into the CLAP stage (3 real
windows per clip, the all-zero padding window embedded once) and the Flamingo LM stage,
one clip at a time and in batches.

Usage: python benchmarks/bench_afsim_af1.py [--clips 6] [--batch 3] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def opt_iml_max_1_3b_config():
    from transformers import OPTConfig

    return OPTConfig(vocab_size=50272, hidden_size=2048, num_hidden_layers=24, ffn_dim=8192, num_attention_heads=32,
                     max_position_embeddings=2048, word_embed_proj_dim=2048, do_layer_norm_before=True,
                     pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from transformers import OPTForCausalLM

    from hsm_bench.embedders.audio_flamingo1 import AudioFlamingo1
    from tests.af1_tiny import tokenizer

    t = time.perf_counter()
    lm = OPTForCausalLM(opt_iml_max_1_3b_config()).eval()
    emb = AudioFlamingo1()
    emb.init_random(lm, tokenizer(), seed=0)
    n_params = sum(p.numel() for p in emb.model.parameters()) + sum(p.numel() for p in emb.clap.parameters())
    print(f"built in {time.perf_counter() - t:.1f} s: {n_params / 1e9:.2f} B parameters, hidden {emb.hidden_size}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip

    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(160000)).astype(np.float32) for _ in range(a.clips)]
    emb.embed_audio(clips[:1])  # warm-up (and the padding window's embedding)

    t = time.perf_counter()
    media = [emb.media([c]) for c in clips]
    clap_s = time.perf_counter() - t
    ids = emb.input_ids[None]
    t = time.perf_counter()
    for m, mask in media:
        emb.hidden_state(m, mask, ids)
    lm_s = time.perf_counter() - t
    print(f"one clip at a time: CLAP stage {a.clips / clap_s:.2f} clips/s (3 windows each), "
          f"Flamingo LM stage {a.clips / lm_s:.2f} clips/s, together {a.clips / (clap_s + lm_s):.2f} clips/s")  # fmt: skip

    for bs in (1, a.batch):
        emb.batch_size = bs
        t = time.perf_counter()
        out = emb.embed_audio(clips)
        dt = time.perf_counter() - t
        print(f"embed_audio, batch_size {bs}: {a.clips / dt:.2f} clips/s ({dt / a.clips:.2f} s per clip)")
    assert all(np.all(np.isfinite(o["embedding"])) and o["embedding"].shape == (2048,) for o in out)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.1f} GB")


if __name__ == "__main__":
    main()
