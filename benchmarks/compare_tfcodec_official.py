"""Compare hsm-bench's TF-Codec (``systems/hsm_tss/tfcodec.py``) with the official code (not a test).

The official code is microsoft/TF-Codec at commit 1a4d327 (MIT), in ``benchmarks/.side/src/TF-Codec`` (never
committed); its ``models/`` import only torch, numpy and scipy, so it runs in the ``benchmarks/.side/aldm``
venv (torch 2.13 CPU). ``bash benchmarks/setup_side_envs.sh tfcodec`` puts both in place (it clones GitHub when
it answers, else takes ``TFCODEC_SRC=DIR``, a clone, a bare git dir or an extracted archive). Then::

    python benchmarks/compare_tfcodec_official.py [--seconds 10 3.37 0.5] [--seed 0] [--src DIR] [--python PY]

What runs, on the same inputs and the same random weights:

* official (in the side venv: this file with ``--official``): ``TFCodec(config)`` from ``models/tfcodec.py``
  with the ``6k_20ms_redundant`` config as ``inf.py`` assembles it (``configs/tfcodec_config_6k.yaml`` updated
  with ``Model_cfg['6k_20ms_redundant']`` and ``Common_cfg``, written out below because the venv has no yaml);
  every floating tensor randomised (seeded; BatchNorm running means/variances and PReLU slopes included, so
  that they matter), saved as ``{'gen': DDP-style 'module.'-prefixed state dict, 'disc_freq': {}, 'epoch': 0}``
  and reloaded by the official ``TFCodec.load`` into a fresh model (strict), in eval mode. Then per input
  batch: ``encode_to_token_idx(x)['quantization_inds']``, ``decode_from_token_idx`` of those indices and of
  independently drawn random indices, and ``forward(x)['6k']['x_hat']``. The codebooks are seeded with the
  model's own pre-VQ latent groups of other audio plus noise: purely random codebooks lie far from the latents,
  so that nearly every vector picks the same 2-3 codes and index agreement would test little.
* hsm-bench (this venv): ``read_tfcodec_checkpoint`` of that file into ``TFCodec()``, then
  ``encode_official`` / ``decode_official`` / ``reconstruct`` on the same tensors, and the 50-tokens/s
  ``encode`` / ``decode`` against the official outputs' prefixes (equal but for the last 160 samples, which
  miss the overlap-add share of the dropped last token: that difference is printed separately).

Inputs (16 kHz, batch of 2 per length; other seeds for the codebook calibration): Gaussian noise (std 0.1) and a
tonal mix (220 Hz + harmonics, a 1.3 kHz tone with vibrato, a little noise). Printed: fraction of equal
indices, max |difference| of the decoded waveforms (same indices) and of the full encode->decode, each with the
official output's peak for scale, and the mean number of distinct codes per codebook in the official indices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).resolve().parent / ".side"
SR = 16000

# configs/tfcodec_config_6k.yaml + configs/model_config.yaml (Model_cfg['6k_20ms_redundant'], Common_cfg)
OFFICIAL_CONFIG = {
    "model_type": "tfnetv2_interleave_vqvae", "temperature": [2.0, 0.5, 0.9999995], "hop_fraction": 0.5,
    "use_compressed_input": True, "model_cfg": "6k_20ms_redundant", "Train_cfg": {"use_entropy_loss": False},
    "bitrate": "6k", "use_learnable_compression": False, "sampling_rate": 16000, "combineVQ_frames": 4,
    "dft_size": 320, "frame_dur": 0.02, "hop_vqvae": 0.25, "vq_in_dur": 0.005, "latent_dim": 480,
    "codebook_num": 16, "codebook_size": 1024, "target_entropy": 120, "input_cprs_power": 0.3,
}  # fmt: skip


def layout_sha256(pairs) -> str:
    """sha256 over the sorted "key [shape]" lines: one fingerprint of a state-dict layout."""
    return hashlib.sha256("\n".join(sorted(f"{k} {list(s)}" for k, s in pairs)).encode()).hexdigest()


def inputs(seconds: float, seed: int):
    import torch

    n = round(seconds * SR)
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    noise = 0.1 * torch.randn(n, generator=g)
    tonal = sum(0.3 / k * torch.sin(2 * math.pi * 220 * k * t) for k in (1, 2, 3, 5))
    tonal = tonal + 0.2 * torch.sin(2 * math.pi * 1300 * t + 3 * torch.sin(2 * math.pi * 5 * t))
    tonal = tonal + 0.01 * torch.randn(n, generator=g)
    return torch.stack([noise, tonal]).float()


# -- official side (the side venv) ----------------------------------------------------------
def run_official(src: Path, work: Path, seconds: list[float], seed: int) -> None:
    import torch

    sys.path.insert(0, str(src))
    from models.tfcodec import TFCodec  # the official class

    torch.manual_seed(seed)
    model = TFCodec(config=dict(OFFICIAL_CONFIG))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("inverse_basis"):
                continue  # the ISTFT kernel stays the official one: it is a fixed transform
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith(("bn_conv.weight", "bn_deconv.weight", "bn_first.weight", "bn_depthwise.weight")):
                t.copy_(0.8 + 0.4 * torch.rand(t.shape, generator=g))
            elif name.endswith("nonlinearity.weight") or ".nonlinearity" in name:
                t.copy_(0.1 + 0.5 * torch.rand(t.shape, generator=g))
            elif name == "out_conv.weight":  # at xavier scale the decoded waves peak near 1e-3 (|.|^(1/0.3))
                t.copy_(torch.randn(t.shape, generator=g))
            else:  # weights (kept at their initial scale), biases, h0, codebooks
                scale = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 0.1
                t.copy_(scale * torch.randn(t.shape, generator=g))
    # random codebooks sit far from the latents and nearly every vector picks the same 2-3 codes; seeding each
    # codebook with latent groups of other audio (plus noise) makes the nearest-code choice a real test
    model.eval()
    with torch.no_grad():
        calib = torch.cat([inputs(2.0, seed + 1000 + j) for j in range(4)])
        feat = model.encode_to_token_idx(calib)["feat_before_vq"]  # [B, T, 480], before the VQ
        b, t, c = feat.shape
        groups = feat.reshape(b, t // 4, 4, 16, c // 16).permute(3, 0, 1, 2, 4).reshape(16, -1, 4 * c // 16)
        for k, vq in enumerate(model.vq_layer_list):
            pick = torch.randint(0, groups.shape[1], (1024,), generator=g)
            rows = groups[k, pick]
            vq.embedding.copy_((rows + 0.3 * rows.std() * torch.randn(rows.shape, generator=g))[None])
    ckpt = work / "tfcodec_6k_random.ckpt"
    torch.save({"gen": {f"module.{k}": v for k, v in model.state_dict().items()}, "disc_freq": {}, "epoch": 0}, ckpt)
    model = TFCodec(config=dict(OFFICIAL_CONFIG))
    model.load(str(ckpt))  # the official loader (strict)
    model.eval()
    out = {"layout": [[k, list(v.shape)] for k, v in model.state_dict().items()]}
    with torch.no_grad():
        for i, sec in enumerate(seconds):
            x = inputs(sec, seed + 10 + i)
            inds = model.encode_to_token_idx(x)["quantization_inds"]
            gen = torch.Generator().manual_seed(seed + 100 + i)
            rand_inds = torch.randint(0, 1024, inds.shape, generator=gen)
            out[str(sec)] = {"x": x, "inds": inds, "dec": model.decode_from_token_idx(inds),
                             "rand_inds": rand_inds, "rand_dec": model.decode_from_token_idx(rand_inds),
                             "x_hat": model(x)["6k"]["x_hat"]}  # fmt: skip
    torch.save(out, work / "official.pt")


# -- hsm-bench side ----------------------------------------------------------------------------
def compare(work: Path, seconds: list[float]) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from systems.hsm_tss.tfcodec import TFCodec, read_tfcodec_checkpoint

    ref = torch.load(work / "official.pt", weights_only=True)
    model = TFCodec()
    model.load_state_dict(read_tfcodec_checkpoint(work / "tfcodec_6k_random.ckpt", model), strict=True)
    model.eval()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    layout_equal = ours == {k: s for k, s in ref["layout"]}
    official_sha = layout_sha256(ref["layout"])
    report = {"state_dict_layout_equal": layout_equal, "n_keys": len(ours), "official_layout_sha256": official_sha,
              "inputs": {}}  # fmt: skip
    print(f"state dict: {len(ours)} keys, layout equal to the official generator's: {layout_equal}")
    print(f"official generator layout sha256 (tests/test_hsm_tss_codec.py pins it): {official_sha}")
    with torch.inference_mode():
        for sec in seconds:
            r = ref[str(sec)]
            x = r["x"]
            inds = model.encode_official(x)
            dec = model.decode_official(r["inds"])
            rand_dec = model.decode_official(r["rand_inds"])
            x_hat = model.reconstruct(x)
            codes = model.encode(x)
            wave = model.decode(codes)
            f = codes.shape[1]
            # the 50-tokens/s decode equals the official one (same tokens) but for its last 160 samples, which lack
            # the dropped token's overlap-add share; past the official output's end there is nothing to compare
            common = min(wave.shape[1], r["dec"].shape[1])
            exact = max(0, min(common, wave.shape[1] - 160))
            row = {
                "samples": x.shape[1],
                "official_tokens": list(r["inds"].shape), "ours_tokens": list(inds.shape),
                "distinct_codes_per_codebook_mean": float(sum(len(r["inds"][..., k].unique()) for k in range(16)) / 16),
                "indices_equal_fraction": (float((inds == r["inds"]).float().mean())
                                           if inds.shape == r["inds"].shape else 0.0),
                "decode_same_indices_max_abs_diff": float((dec - r["dec"]).abs().max()),
                "decode_random_indices_max_abs_diff": float((rand_dec - r["rand_dec"]).abs().max()),
                "reconstruct_max_abs_diff": float((x_hat - r["x_hat"]).abs().max()),
                "official_decode_peak": float(r["dec"].abs().max()),
                "official_x_hat_peak": float(r["x_hat"].abs().max()),
                "encode_50hz_tokens": f,
                "encode_50hz_equals_official_prefix": bool(torch.equal(codes, r["inds"][:, :f])),
                "decode_50hz_samples": wave.shape[1],
                "decode_50hz_max_abs_diff_vs_official_before_last_160": float(
                    (wave[:, :exact] - r["dec"][:, :exact]).abs().max()) if exact else 0.0,
                "decode_50hz_max_abs_diff_vs_official_last_160": float(
                    (wave[:, exact:common] - r["dec"][:, exact:common]).abs().max()) if common > exact else 0.0,
            }  # fmt: skip
            report["inputs"][str(sec)] = row
            print(f"\n{sec} s ({row['samples']} samples), batch [noise, tonal]:")
            for k, v in row.items():
                print(f"  {k:55s} {v}")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 3.37, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--src", type=Path, default=SIDE / "src" / "TF-Codec")
    ap.add_argument("--python", default=str(SIDE / "aldm" / "bin" / "python"))
    ap.add_argument("--official", type=Path, help=argparse.SUPPRESS)  # internal: run the official side into DIR
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if args.official:
        run_official(args.src, args.official, args.seconds, args.seed)
        return
    if not (args.src / "models" / "tfcodec.py").is_file():
        sys.exit(f"no official TF-Codec source in {args.src}: run `bash benchmarks/setup_side_envs.sh tfcodec`")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [args.python, __file__, "--official", tmp, "--src", str(args.src), "--seed", str(args.seed),
               "--seconds", *map(str, args.seconds)]  # fmt: skip
        env = {**os.environ, "PYTHONWARNINGS": "ignore::UserWarning"}  # torch.stft(return_complex=False) warns
        subprocess.run(cmd, check=True, env=env, cwd=str(args.src))
        report = compare(Path(tmp), args.seconds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
