"""Signal metrics: LSD and mel-PSNR as audioldm-eval 0.0.3 computes them, and the SDR family
as the AudioSep / DCASE 2024 task 9 evaluators compute it.

References (re-implemented from their definitions, no code copied):

* LSD: ``audioldm_eval/eval.py::calculate_lsd`` (0.0.3) feeding ssr_eval's
  ``AudioMetrics(sr)``: channel 0, mean removed on load; then the first 1120 samples
  (7 hops of 160) of the *estimate* dropped, the mean removed again, each signal
  divided by its own peak, both cropped to the shorter one; magnitude STFT with
  ``n_fft = int(2048 / (44100 / sr))`` (743 at 16 kHz), hop ``sr // 100``, periodic Hann,
  centred with zero padding (librosa >= 0.10's default); per bin
  ``log10(R^2 / (E + 1e-12)^2 + 1e-12)^2``, mean over bins, square root, mean over frames,
  in float32 like the reference. ``lsd`` keeps the offset; ``lsd_aligned`` is the same
  pipeline without it, because separation outputs are sample-aligned with the reference
  and the offset (a HiFi-GAN alignment fix) then only adds a spurious distance.
* PSNR: ``calculate_psnr_ssim`` on the 64-bin log-mel "image" of ``TacotronSTFT(512,
  160, 512, 64, 16000, 50, 8000)``: mean removed, waveform clipped to [-1, 1], magnitude
  STFT (reflect padding), Slaney mel, ``log10(max(mel, 1e-5))``, ``(20 v - 20 + 100) / 100``
  clipped to [0, 1], frames cropped to the shorter; skimage's PSNR with data range 1
  (``10 log10(1 / mse)``). Identical images give +inf, which audioldm-eval skips: the value
  is reported as +inf and the aggregator leaves it out of the mean and counts it.
* SDR: ``10 log10(max(mean(ref^2), 1e-10) / max(mean((est - ref)^2), 1e-10))`` (a plain
  SNR, no BSS-eval filter); SI-SDR without mean removal, with float32 machine epsilon;
  SDRi / SI-SDRi against the unprocessed mixture; all signals cropped to the shortest.
"""

from __future__ import annotations

import numpy as np
import torch

from hsm_bench.api.metric import Metric, MetricError, MetricInfo, ScoreItem
from hsm_bench.audio.stft import crop_stft, mel_filterbank, stft, stft_pair

LSD_EPS = 1e-12
SDR_EPS = 1e-10
SISDR_EPS = float(np.finfo(np.float32).eps)


def _centred(x: np.ndarray) -> np.ndarray:
    """audioldm-eval removes the clip mean on load, in float32 with torch."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return (t - t.mean()).numpy()


def _normalised(x: np.ndarray, what: str) -> np.ndarray:
    """calculate_lsd's second mean removal and peak normalisation, in float32 numpy."""
    x = x - np.mean(x)
    return x / _peak(x, what)


def _magnitude(spec: torch.Tensor) -> torch.Tensor:
    """float32 magnitude of a float64 transform, stored as complex64 like librosa does."""
    return spec.to(torch.complex64).abs()


def _lsd_from_spectra(est_mag: torch.Tensor, ref_mag: torch.Tensor) -> float:
    """ssr_eval's LSD core on float32 magnitudes laid out [frames, bins]."""
    d = torch.log10(ref_mag**2 / ((est_mag + LSD_EPS) ** 2) + LSD_EPS) ** 2
    return float(torch.mean(torch.mean(d, dim=1) ** 0.5))


def _peak(x: np.ndarray, what: str) -> np.float32:
    p = np.float32(np.max(np.abs(x)))
    if not np.isfinite(p) or p == 0:
        raise MetricError(f"{what} is silent or non-finite: peak normalisation is undefined")
    return p


class LSD(Metric):
    """Log-spectral distance of audioldm-eval 0.0.3 (``lsd``) and its offset-free twin."""

    info = MetricInfo(
        name="lsd",
        outputs=("lsd", "lsd_aligned"),
        higher_is_better=False,
        version="1",
        reference="audioldm-eval==0.0.3 calculate_lsd + ssr-eval AudioMetrics (LSD)",
        sample_rate=16000,
        description="lsd: with audioldm-eval's 1120-sample offset on the estimate; "
        "lsd_aligned: identical pipeline without the offset",
    )

    def __init__(self, time_offset: int = 1120, sample_rate: int = 16000):
        super().__init__(time_offset=time_offset, sample_rate=sample_rate)
        self.time_offset = int(time_offset)
        self.sr = int(sample_rate)
        self.hop = int(self.sr / 100)
        self.n_fft = int(2048 / (44100 / self.sr))
        if self.time_offset % self.hop:
            raise ValueError("time_offset must be a multiple of the hop (sr / 100)")

    def compute(self, item: ScoreItem) -> dict[str, float]:
        if item.reference is None:
            raise MetricError("lsd needs the reference audio")
        if item.sample_rate != self.sr:
            raise MetricError(f"lsd is defined here at {self.sr} Hz, got {item.sample_rate} Hz")
        off = self.time_offset
        est = _centred(item.estimate)
        ref = _normalised(_centred(item.reference), "reference")
        if len(est) <= off:
            raise MetricError(f"estimate shorter than the {off}-sample offset")
        # Each variant is computed from the exact float32 waveform calculate_lsd builds
        # (weak bins of tonal signals are at the level of its float32 rounding), so the
        # two estimate variants need a transform each; the reference is shared.
        variants = {"lsd": _normalised(est[off:], "estimate"), "lsd_aligned": _normalised(est, "estimate")}
        n_fft, hop = self.n_fft, self.hop
        e_al = variants["lsd_aligned"]
        if len(e_al) == len(ref):  # the usual case: one complex transform for both
            full = dict(zip(("lsd_aligned", "ref"), stft_pair(e_al, ref, n_fft, hop)))
        else:
            full = {"lsd_aligned": stft(e_al, n_fft, hop), "ref": stft(ref, n_fft, hop)}
        full["lsd"] = stft(variants["lsd"], n_fft, hop)
        r = torch.from_numpy(ref)
        r_mags: dict[int, torch.Tensor] = {}
        out = {}
        for key, e in variants.items():
            crop = min(len(e), len(ref))
            e_mag = _magnitude(crop_stft(torch.from_numpy(e), full[key], crop, n_fft, hop))
            if crop not in r_mags:
                r_mags[crop] = _magnitude(crop_stft(r, full["ref"], crop, n_fft, hop))
            out[key] = _lsd_from_spectra(e_mag, r_mags[crop])
        return out


class MelPSNR(Metric):
    """PSNR of the clipped log-mel images, as audioldm-eval 0.0.3 computes it."""

    info = MetricInfo(
        name="psnr",
        outputs=("psnr",),
        higher_is_better=True,
        version="1",
        reference="audioldm-eval==0.0.3 calculate_psnr_ssim (skimage PSNR, data range 1)",
        sample_rate=16000,
        description="+inf for identical mel images (skipped in the mean, as audioldm-eval does)",
    )

    # TacotronSTFT parameters per evaluation rate in audioldm-eval
    _PARAMS = {16000: (512, 160, 64, 50.0, 8000.0), 32000: (1024, 320, 64, 50.0, 14000.0)}

    def __init__(self, sample_rate: int = 16000):
        super().__init__(sample_rate=sample_rate)
        if sample_rate not in self._PARAMS:
            raise ValueError(f"mel-PSNR is defined at {sorted(self._PARAMS)} Hz, not {sample_rate}")
        self.sr = sample_rate

    def mel_image(self, x: np.ndarray) -> np.ndarray:
        n_fft, hop, n_mels, fmin, fmax = self._PARAMS[self.sr]
        x = np.clip(_centred(x), -1.0, 1.0)
        if len(x) <= n_fft // 2:
            raise MetricError(f"audio shorter than {n_fft // 2 + 1} samples: reflect padding undefined")
        mag = stft(x, n_fft, hop, pad_mode="reflect", dtype=torch.float32).abs()  # [frames, bins]
        mel = mag @ mel_filterbank(self.sr, n_fft, n_mels, fmin, fmax).T
        v = torch.log10(torch.clamp(mel, min=1e-5)) * 20 - 20
        return torch.clip((v + 100) / 100, 0.0, 1.0).numpy()

    def compute(self, item: ScoreItem) -> dict[str, float]:
        if item.reference is None:
            raise MetricError("psnr needs the reference audio")
        if item.sample_rate != self.sr:
            raise MetricError(f"psnr is computed at {self.sr} Hz, got {item.sample_rate} Hz")
        a = self.mel_image(item.estimate)
        b = self.mel_image(item.reference)
        n = min(len(a), len(b))
        mse = np.mean((a[:n] - b[:n]) ** 2, dtype=np.float64)
        return {"psnr": float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))}


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """AudioSep / DCASE 2024 task 9 SDR: a plain SNR with both powers clipped at 1e-10."""
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    num = max(np.mean(ref**2), SDR_EPS)
    den = max(np.mean((est - ref) ** 2), SDR_EPS)
    return float(10 * np.log10(num / den))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """AudioSep SI-SDR: no mean removal, float32 machine epsilon in every term."""
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    eps = SISDR_EPS
    alpha = (eps + _dot(ref, est)) / (eps + _dot(ref, ref))
    e_true = alpha * ref
    e_res = est - e_true
    return float(10 * np.log10((eps + _dot(e_true, e_true)) / (eps + _dot(e_res, e_res))))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """numpy's pairwise sum of the products: unlike BLAS ``a @ b``, which splits long vectors
    across threads, the same value whatever the thread count (shards on other processes agree)."""
    return float(np.sum(a * b))


class SDRFamily(Metric):
    """SDR, SDRi, SI-SDR and SI-SDRi with the AudioSep / DCASE 2024 task 9 definitions."""

    info = MetricInfo(
        name="sdr",
        outputs=("sdr", "sdri", "si_sdr", "si_sdri"),
        higher_is_better=True,
        version="1",
        reference="AudioSep utils.calculate_sdr / calculate_sisdr; dcase2024_task9_baseline",
        output_needs={"sdri": ("mixture",), "si_sdri": ("mixture",)},
        sample_rate=None,
        description="improvements (sdri, si_sdri) are against the unprocessed mixture",
    )

    def compute(self, item: ScoreItem) -> dict[str, float]:
        if item.reference is None:
            raise MetricError("sdr needs the reference audio")
        arrays = [item.estimate, item.reference]
        if item.mixture is not None:
            arrays.append(item.mixture)
        n = min(len(a) for a in arrays)
        est, ref = item.estimate[:n], item.reference[:n]
        out = {"sdr": sdr(ref, est), "si_sdr": si_sdr(ref, est)}
        if item.mixture is not None:
            mix = item.mixture[:n]
            out["sdri"] = out["sdr"] - sdr(ref, mix)
            out["si_sdri"] = out["si_sdr"] - si_sdr(ref, mix)
        return out
