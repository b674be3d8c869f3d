"""Run audioldm-eval 0.0.3's own LSD and PSNR on two folders (a reference for hsm-bench).

Run it with the python of the side venv ``benchmarks/.side/aldm`` (audioldm-eval 0.0.3,
torch 2.13.0 CPU, torchaudio 2.11.0 without its CUDA-linked .so files, ...), made by
``bash benchmarks/setup_side_envs.sh aldm``; hsm-bench itself never depends on it.
``bench_score.py --aldm-python`` and ``make_golden.py`` run it there.

Patches applied at run time (the numeric steps stay the package's own):
* ``torchaudio.load`` inside ``audioldm_eval.datasets.load_mel`` reads with soundfile
  (float32 [C, T], like torchaudio) because torchaudio's decoder needs CUDA libraries here;
* ``pad_center`` and ``librosa_mel_fn`` inside ``audioldm_eval.audio.stft`` get keyword
  wrappers: 0.0.3 calls them positionally, which librosa >= 0.10 rejects.

Usage: benchmarks/.side/aldm/bin/python benchmarks/audioldm_eval_runner.py GEN_DIR TARGET_DIR --out results.json [--workers N]
Writes per-file ``lsd`` (calculate_lsd semantics, offset 1120) and ``psnr`` (calculate_psnr_ssim
semantics; "inf" kept per file and left out of the mean), the package's own corpus means,
and timings (start-up, LSD loop, PSNR loop).
"""

from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402


def patch() -> None:
    import librosa
    import audioldm_eval.audio.stft as aldm_stft
    import audioldm_eval.datasets.load_mel as load_mel

    def sf_load(path, *a, **k):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    load_mel.torchaudio.load = sf_load
    aldm_stft.pad_center = lambda x, n, *a, **k: librosa.util.pad_center(x, size=n, **k)
    aldm_stft.librosa_mel_fn = lambda sr, n_fft, n_mels, fmin, fmax, *a, **k: librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, **k
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gen_dir")
    ap.add_argument("target_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=0, help="paired loader workers (the package itself uses 16)")
    ap.add_argument("--per-file", action="store_true", help="also record per-file values (an extra, untimed pass)")
    a = ap.parse_args()

    patch()
    from types import SimpleNamespace

    from audioldm_eval.audio import TacotronSTFT
    from audioldm_eval.datasets.load_mel import MelPairedDataset
    from audioldm_eval.eval import EvaluationHelper
    from skimage.metrics import peak_signal_noise_ratio
    from ssr_eval.metrics import AudioMetrics
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    stft = TacotronSTFT(512, 160, 512, 64, 16000, 50, 8000)  # what EvaluationHelper builds at 16 kHz
    dataset = MelPairedDataset(a.gen_dir, a.target_dir, stft, 16000)
    loader = DataLoader(dataset, batch_size=1, num_workers=a.workers)
    helper = SimpleNamespace(lsd_metric=AudioMetrics(16000))
    helper.lsd = lambda x, y: EvaluationHelper.lsd(helper, x, y)
    startup = time.perf_counter() - T0

    t = time.perf_counter()
    lsd = EvaluationHelper.calculate_lsd(helper, loader)
    t_lsd = time.perf_counter() - t
    t = time.perf_counter()
    psnr = EvaluationHelper.calculate_psnr_ssim(helper, loader)
    t_psnr = time.perf_counter() - t

    files = {}
    if a.per_file:
        for mel_gen, mel_target, name, (audio1, audio2) in DataLoader(dataset, batch_size=1):
            a1 = audio1.numpy()[0, 0][160 * 7 :]
            a2 = audio2.numpy()[0, 0]
            a1, a2 = a1 - np.mean(a1), a2 - np.mean(a2)
            a1, a2 = a1 / np.max(np.abs(a1)), a2 / np.max(np.abs(a2))
            n = min(len(a1), len(a2))
            value_lsd = helper.lsd_metric.evaluation(a1[:n], a2[:n], None)["lsd"]
            value_psnr = peak_signal_noise_ratio(mel_gen.numpy()[0], mel_target.numpy()[0])
            files[name[0]] = {"lsd": float(value_lsd), "psnr": "inf" if np.isinf(value_psnr) else float(value_psnr)}

    import audioldm_eval
    import librosa
    import skimage

    out = {
        "n": len(dataset),
        "lsd": float(lsd["lsd"]),
        "psnr": float(psnr["psnr"]),
        "files": files,
        "timing": {"startup_s": startup, "lsd_loop_s": t_lsd, "psnr_loop_s": t_psnr,
                   "per_pair_ms": 1000 * (t_lsd + t_psnr) / max(len(dataset), 1), "workers": a.workers},  # fmt: skip
        "versions": {"audioldm_eval": getattr(audioldm_eval, "__version__", "0.0.3"), "librosa": librosa.__version__,
                     "torch": torch.__version__, "numpy": np.__version__, "skimage": skimage.__version__},  # fmt: skip
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "files"}, indent=1))


if __name__ == "__main__":
    main()
