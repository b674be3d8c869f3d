"""Scoring benchmark: `hsm-bench score` with the signal metrics on N pairs of 10-s audio.

Reports, for the same generated pairs:

* end-to-end wall time and items/s of ``hsm-bench score PRED REF --mix-dir MIX --metrics
  signal`` (a subprocess, start-up included) and its peak resident memory, at N and at N/4
  items (streaming: peak memory must not grow with N);
* the floor: the time of the STFTs the definitions require per pair, measured with
  batched ``torch.stft`` on this machine: LSD's prime-length 743-point STFT (float64, as
  librosa computes it) of the reference, the estimate and the offset estimate, and the
  float32 512-point mel STFT of estimate and reference; the float32 two-signal 743-point
  figure is printed too for comparison with estimates that assume it;
* audioldm-eval 0.0.3's LSD + PSNR on the same pairs, run with
  ``benchmarks/audioldm_eval_runner.py`` in the side venv ``benchmarks/.side/aldm`` (made by
  ``bash benchmarks/setup_side_envs.sh aldm``; another with ``--aldm-python PATH``; skipped
  with ``--no-aldm`` or when the venv is absent), its wall time, and the largest per-file
  difference between its LSD/PSNR and ours.

Usage: python benchmarks/bench_score.py [--n 1000] [--workdir DIR] [--aldm-python PATH | --no-aldm]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource  # noqa: F401  (used by the child wrapper)
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 16000
SECONDS = 10
ALDM_PYTHON = Path(__file__).resolve().parent / ".side" / "aldm" / "bin" / "python"


def make_pairs(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """N (estimate, reference, mixture) triples: tones and noises, estimates part-way separated."""
    pred, ref, mix = root / "pred", root / "ref", root / "mix"
    for d in (pred, ref, mix):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(SR * SECONDS) / SR
    for k in range(n):
        name = f"item-{k:05d}.wav"
        if (mix / name).exists():
            continue
        f0 = rng.uniform(100, 1000)
        target = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 3) * t))
        target += 0.01 * rng.standard_normal(len(t))
        noise = 0.2 * rng.standard_normal(len(t)) * (t % 1.0 < rng.uniform(0.3, 0.9))
        mixture = target + noise
        est = target + rng.uniform(0.05, 0.5) * noise
        sf.write(ref / name, target.astype(np.float32), SR, subtype="PCM_16")
        sf.write(mix / name, mixture.astype(np.float32), SR, subtype="PCM_16")
        sf.write(pred / name, est.astype(np.float32), SR, subtype="FLOAT")
    return pred, ref, mix


def stft_floor(pred: Path, ref: Path, n_pairs: int = 64) -> dict[str, float]:
    """Per-pair seconds of the STFTs the metric definitions require: torch.stft, the best of
    batches of 1, 2 and 8 pairs (large batches are slower here: memory bound)."""
    runs = [_stft_floor(pred, ref, n_pairs, b) for b in (1, 2, 8)]
    best = {k: min(r[k] for r in runs) for k in runs[0] if k != "floor"}
    best["floor"] = best["lsd_743_float64_3sig"] + best["mel_512_float32_2sig"]
    return best


def _stft_floor(pred: Path, ref: Path, n_pairs: int, batch: int) -> dict[str, float]:
    torch.set_num_threads(os.cpu_count() or 1)
    names = sorted(p.name for p in pred.glob("*.wav"))[:n_pairs]
    est = np.stack([sf.read(pred / n, dtype="float32")[0] for n in names])
    tgt = np.stack([sf.read(ref / n, dtype="float32")[0] for n in names])
    off = est[:, 1120:]

    def timed(fn) -> float:
        fn()  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(names), batch):
            fn(s)
        return (time.perf_counter() - t0) / len(names)

    def stft(x: np.ndarray, n_fft: int, dtype: torch.dtype, mode: str) -> None:
        xt = torch.from_numpy(x).to(dtype)
        w = torch.hann_window(n_fft, periodic=True, dtype=dtype)
        torch.stft(xt, n_fft, 160, n_fft, w, center=True, pad_mode=mode, return_complex=True).abs()

    lsd64 = timed(lambda s=0: [stft(a[s : s + batch], 743, torch.float64, "constant") for a in (est, tgt, off)])
    lsd32 = timed(lambda s=0: [stft(a[s : s + batch], 743, torch.float32, "constant") for a in (est, tgt)])
    mel32 = timed(lambda s=0: [stft(a[s : s + batch], 512, torch.float32, "reflect") for a in (est, tgt)])
    return {"lsd_743_float64_3sig": lsd64, "lsd_743_float32_2sig": lsd32, "mel_512_float32_2sig": mel32,
            "floor": lsd64 + mel32}  # fmt: skip


PEAK_WRAPPER = (
    "import atexit, resource, runpy, sys;"
    "atexit.register(lambda: print('PEAK_RSS_KB=%d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr));"
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (MB) of a Python script run as ``[python, script, args...]``."""
    t0 = time.perf_counter()
    proc = subprocess.run([cmd[0], "-c", PEAK_WRAPPER, *cmd[1:]], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    peak = [int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB=")]
    return wall, (peak[-1] / 1024 if peak else float("nan")), proc


def subset(src: tuple[Path, Path, Path], root: Path, n: int) -> tuple[Path, Path, Path]:
    out = []
    for d in src:
        dst = root / f"{d.name}_{n}"
        dst.mkdir(parents=True, exist_ok=True)
        for p in sorted(d.glob("*.wav"))[:n]:
            if not (dst / p.name).exists():
                os.symlink(p, dst / p.name)
        out.append(dst)
    return tuple(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--aldm-python", default=None, help=f"python of a venv with audioldm-eval 0.0.3 (default {ALDM_PYTHON})")
    ap.add_argument("--no-aldm", action="store_true", help="skip the audioldm-eval comparison")
    a = ap.parse_args()
    if a.no_aldm:
        a.aldm_python = None
    elif a.aldm_python is None:
        a.aldm_python = str(ALDM_PYTHON) if ALDM_PYTHON.exists() else None
    elif not Path(a.aldm_python).exists():
        sys.exit(f"--aldm-python {a.aldm_python}: not found")
    root = Path(a.workdir or tempfile.mkdtemp(prefix="hsm-bench-score-"))
    t0 = time.perf_counter()
    pairs = make_pairs(root, a.n)
    print(f"{a.n} pairs of {SECONDS}-s audio in {root} ({time.perf_counter() - t0:.1f} s to generate)")

    floor = stft_floor(pairs[0], pairs[1])
    import hsm_bench.cli

    exe = [sys.executable, hsm_bench.cli.__file__, "score"]
    small = subset(pairs, root, max(a.n // 4, 1))
    results = {}
    for label, (pred, ref, mix) in (("quarter", small), ("full", pairs)):
        out = root / f"ours_{label}.csv"
        wall, peak, _ = run_timed([*exe, str(pred), str(ref), "--mix-dir", str(mix), "--metrics", "signal",
                                   "--out", str(out), "--no-progress"])  # fmt: skip
        n = len(list(pred.glob("*.wav")))
        results[label] = {"n": n, "wall_s": wall, "peak_rss_mb": peak, "per_pair_s": wall / n, "items_per_s": n / wall}

    full = results["full"]
    print("\nfloor per pair (batched torch.stft, this machine):")
    for k, v in floor.items():
        print(f"  {k:<24} {1000 * v:7.1f} ms")
    print("\nhsm-bench score --metrics signal (lsd, lsd_aligned, psnr, sdr, sdri, si_sdr, si_sdri):")
    for label, r in results.items():
        print(f"  {r['n']:>5} pairs: {r['wall_s']:6.1f} s end to end, {1000 * r['per_pair_s']:6.1f} ms/pair, "
              f"{r['items_per_s']:5.1f} items/s, peak RSS {r['peak_rss_mb']:6.0f} MB")  # fmt: skip
    print(f"  cost / floor: {full['per_pair_s'] / floor['floor']:.2f}x (target <= 1.5x)")

    if a.aldm_python:
        out = root / "aldm.json"
        wall, _, _ = run_timed([a.aldm_python, str(Path(__file__).parent / "audioldm_eval_runner.py"),
                                str(pairs[0]), str(pairs[1]), "--out", str(out), "--per-file"])  # fmt: skip
        ref = json.loads(out.read_text())
        with open(root / "ours_full.csv") as f:
            ours = {r["id"]: r for r in csv.DictReader(f)}
        d_lsd = max(abs(float(ours[Path(k).stem]["lsd"]) - v["lsd"]) for k, v in ref["files"].items())
        d_psnr = max(abs(float(ours[Path(k).stem]["psnr"]) - float(v["psnr"])) for k, v in ref["files"].items()
                     if v["psnr"] != "inf")  # fmt: skip
        # the runner's untimed --per-file pass is not part of the package's own work
        t = ref["timing"]
        wall = t["startup_s"] + t["lsd_loop_s"] + t["psnr_loop_s"]
        print(f"\naudioldm-eval 0.0.3 LSD + PSNR on the same {ref['n']} pairs: {wall:.1f} s end to end "
              f"({1000 * wall / ref['n']:.1f} ms/pair; its own timing: {json.dumps(ref.get('timing', {}))})")  # fmt: skip
        print(f"  speed-up of hsm-bench score (all signal metrics) over it: {wall / full['wall_s']:.2f}x (target >= 2x)")
        print(f"  max |lsd difference| {d_lsd:.2e}, max |psnr difference| {d_psnr:.2e} dB")
        print(f"  corpus: audioldm-eval lsd {ref['lsd']:.6f} psnr {ref['psnr']:.6f}")
    else:
        why = "--no-aldm" if a.no_aldm else f"{ALDM_PYTHON} absent: bash benchmarks/setup_side_envs.sh aldm"
        print(f"\n(audioldm-eval comparison skipped: {why})")
    print(f"\ngrowth of peak memory from {results['quarter']['n']} to {full['n']} pairs: "
          f"{full['peak_rss_mb'] - results['quarter']['peak_rss_mb']:+.0f} MB")
    if math.isfinite(full["wall_s"]):
        (root / "bench_score.json").write_text(json.dumps({"floor": floor, "ours": results}, indent=2))


if __name__ == "__main__":
    main()
