"""Signal metrics against independent computations.

The reference functions below follow the published pipelines step by step with other
code paths than hsm-bench uses: librosa's STFT and mel filters, a conv1d STFT built from
an explicit Fourier basis (as audioldm-eval's TacotronSTFT), scikit-image's PSNR, and the
AudioSep SDR formulas in float32 numpy. Closed forms and values derived by hand pin the
rest.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsm_bench.api.metric import MetricError, ScoreItem
from hsm_bench.metrics.signal import LSD, MelPSNR, SDRFamily, sdr, si_sdr

librosa = pytest.importorskip("librosa")
skimage_metrics = pytest.importorskip("skimage.metrics")

SR = 16000


# ---------------------------------------------------------------- reference pipelines
def _load_like_audioldm(x: np.ndarray) -> np.ndarray:
    t = torch.tensor(x, dtype=torch.float32)
    return (t - t.mean()).numpy()


def reference_lsd(gen: np.ndarray, target: np.ndarray, time_offset: int = 1120) -> float:
    """audioldm-eval 0.0.3 calculate_lsd -> ssr_eval AudioMetrics(16000).evaluation -> lsd."""
    a1, a2 = _load_like_audioldm(gen), _load_like_audioldm(target)
    a1 = a1[time_offset:]
    a1 = a1 - np.mean(a1)
    a2 = a2 - np.mean(a2)
    a1 = a1 / np.max(np.abs(a1))
    a2 = a2 / np.max(np.abs(a2))
    n = min(len(a1), len(a2))
    a1, a2 = a1[:n], a2[:n]
    hop, n_fft = int(SR / 100), int(2048 / (44100 / SR))
    est = torch.tensor(np.abs(librosa.stft(a1, hop_length=hop, n_fft=n_fft)).T)
    tgt = torch.tensor(np.abs(librosa.stft(a2, hop_length=hop, n_fft=n_fft)).T)
    d = torch.log10(tgt**2 / ((est + 1e-12) ** 2) + 1e-12) ** 2
    return float(torch.mean(torch.mean(d, dim=1) ** 0.5))


def _tacotron_mel(x: np.ndarray) -> np.ndarray:
    """TacotronSTFT(512, 160, 512, 64, 16000, 50, 8000).mel_spectrogram + audioldm scaling."""
    n_fft, hop = 512, 160
    basis = np.fft.fft(np.eye(n_fft))[: n_fft // 2 + 1]
    basis = np.vstack([basis.real, basis.imag])[:, None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # scipy hann, fftbins=True
    weight = torch.tensor(basis * window, dtype=torch.float32)
    a = torch.clip(torch.tensor(_load_like_audioldm(x))[None], -1, 1)
    a = torch.nn.functional.pad(a[:, None, None], (n_fft // 2, n_fft // 2, 0, 0), mode="reflect")[:, 0]
    out = torch.nn.functional.conv1d(a, weight, stride=hop)
    re, im = out[:, : n_fft // 2 + 1], out[:, n_fft // 2 + 1 :]
    mag = torch.sqrt(re**2 + im**2)
    mel_basis = torch.tensor(librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=64, fmin=50, fmax=8000))
    mel = torch.log10(torch.clamp(torch.matmul(mel_basis, mag), min=1e-5))
    mel = (mel * 20 - 20 + 100) / 100
    return torch.clip(mel, 0, 1)[0].numpy()


def reference_psnr(gen: np.ndarray, target: np.ndarray) -> float:
    g, t = _tacotron_mel(gen), _tacotron_mel(target)
    n = min(g.shape[-1], t.shape[-1])
    return float(skimage_metrics.peak_signal_noise_ratio(g[:, :n], t[:, :n]))


def audiosep_sdr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-10) -> float:
    noise = est - ref
    num = np.clip(np.mean(ref**2), a_min=eps, a_max=None)
    den = np.clip(np.mean(noise**2), a_min=eps, a_max=None)
    return float(10.0 * np.log10(num / den))


def audiosep_sisdr(ref: np.ndarray, est: np.ndarray) -> float:
    eps = np.finfo(ref.dtype).eps
    r, e = ref.reshape(-1, 1), est.reshape(-1, 1)
    a = (eps + np.dot(r.T, e)) / (np.dot(r.T, r) + eps)
    e_true = a * r
    e_res = e - e_true
    return float(10 * np.log10((eps + (e_true**2).sum()) / (eps + (e_res**2).sum())))


# ---------------------------------------------------------------- fixtures
def _signals() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1234)
    t = np.arange(10 * SR) / SR
    noise = (0.1 * rng.standard_normal(10 * SR)).astype(np.float32)
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)
    speechy = (noise * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    noisy = noise + 0.05 * rng.standard_normal(10 * SR).astype(np.float32)
    return {
        "noisy_copy": (noisy, noise),
        "dc_offsets": (noisy + 0.2, noise - 0.1),
        "pure_tone_identical": (sine, sine),
        "tone_plus_weak_tone": (sine + 0.001 * np.sin(2 * np.pi * 1000 * t).astype(np.float32), sine),
        "chirp_vs_modulated_noise": (chirp, speechy),
        "shorter_estimate": (noise[: 9 * SR + 37], noise[: 9 * SR]),
        "longer_estimate": (noise[: 9 * SR], noise[: 9 * SR + 50]),
        "short_clip": ((noise[:3000] * 2).astype(np.float32), noise[:2990]),
    }


SIGNALS = _signals()


# ---------------------------------------------------------------- LSD
@pytest.mark.parametrize("case", sorted(SIGNALS))
def test_lsd_matches_audioldm_eval_pipeline(case):
    est, ref = SIGNALS[case]
    got = LSD().compute(ScoreItem("x", est, SR, ref))
    assert got["lsd"] == pytest.approx(reference_lsd(est, ref, 1120), rel=1e-5, abs=1e-6)
    assert got["lsd_aligned"] == pytest.approx(reference_lsd(est, ref, 0), rel=1e-5, abs=1e-6)


def test_lsd_white_noise_anchor_and_identity():
    # research notes: 10 s of white noise gives LSD(x, x) = 0.789 with the offset, 0 without
    x = SIGNALS["noisy_copy"][1]
    got = LSD().compute(ScoreItem("x", x, SR, x))
    assert got["lsd"] == pytest.approx(0.789, abs=0.003)
    assert got["lsd_aligned"] == 0.0


def test_lsd_is_gain_invariant_through_peak_normalisation():
    est, ref = SIGNALS["noisy_copy"]
    a = LSD().compute(ScoreItem("x", est, SR, ref))
    b = LSD().compute(ScoreItem("x", 0.25 * est, SR, ref))
    assert b["lsd_aligned"] == pytest.approx(a["lsd_aligned"], rel=1e-5)


def test_lsd_silent_estimate_is_an_item_error():
    ref = SIGNALS["noisy_copy"][1]
    with pytest.raises(MetricError, match="silent"):
        LSD().compute(ScoreItem("x", np.zeros_like(ref), SR, ref))


def test_lsd_rejects_other_rates():
    est, ref = SIGNALS["noisy_copy"]
    with pytest.raises(MetricError, match="16000"):
        LSD().compute(ScoreItem("x", est, 32000, ref))


# ---------------------------------------------------------------- PSNR
@pytest.mark.parametrize("case", sorted(set(SIGNALS) - {"pure_tone_identical"}))
def test_psnr_matches_audioldm_eval_pipeline(case):
    est, ref = SIGNALS[case]
    got = MelPSNR().compute(ScoreItem("x", est, SR, ref))["psnr"]
    assert got == pytest.approx(reference_psnr(est, ref), abs=2e-4)


def test_psnr_gain_anchors():
    # research notes, 10 s of noise: 0.5 x -> 24.41 dB, 0.9 x -> 40.77 dB
    x = SIGNALS["noisy_copy"][1]
    assert MelPSNR().compute(ScoreItem("x", 0.5 * x, SR, x))["psnr"] == pytest.approx(24.41, abs=0.01)
    assert MelPSNR().compute(ScoreItem("x", 0.9 * x, SR, x))["psnr"] == pytest.approx(40.77, abs=0.01)


def test_psnr_identical_is_infinite():
    x = SIGNALS["noisy_copy"][1]
    assert MelPSNR().compute(ScoreItem("x", x.copy(), SR, x))["psnr"] == float("inf")


def test_psnr_clips_out_of_range_estimates():
    # audioldm-eval clips the waveform to [-1, 1] before the mel transform
    x = SIGNALS["noisy_copy"][1]
    loud = (x * 40).astype(np.float32)
    assert MelPSNR().compute(ScoreItem("x", loud, SR, x))["psnr"] == pytest.approx(reference_psnr(loud, x), abs=2e-4)


# ---------------------------------------------------------------- SDR family
def test_sdr_family_matches_audiosep_formulas():
    est, ref = SIGNALS["noisy_copy"]
    mix = (ref + 0.3 * SIGNALS["chirp_vs_modulated_noise"][0]).astype(np.float32)
    got = SDRFamily().compute(ScoreItem("x", est, SR, ref, mixture=mix))
    assert got["sdr"] == pytest.approx(audiosep_sdr(ref, est), abs=1e-4)
    assert got["si_sdr"] == pytest.approx(audiosep_sisdr(ref, est), abs=1e-3)
    assert got["sdri"] == pytest.approx(audiosep_sdr(ref, est) - audiosep_sdr(ref, mix), abs=1e-4)
    assert got["si_sdri"] == pytest.approx(audiosep_sisdr(ref, est) - audiosep_sisdr(ref, mix), abs=1e-3)


def test_sdr_closed_forms():
    n = 16000
    ref = np.tile([1.0, -1.0], n // 2).astype(np.float32)  # power 1
    orth = 0.1 * np.tile([1.0, 1.0, -1.0, -1.0], n // 4).astype(np.float32)  # power 0.01, orthogonal to ref
    assert sdr(ref, ref + orth) == pytest.approx(20.0, abs=1e-5)  # 0.1 is not exact in float32
    assert si_sdr(ref, ref + orth) == pytest.approx(20.0, abs=1e-5)
    assert sdr(ref, 2 * ref) == pytest.approx(0.0, abs=1e-12)  # error power equals signal power
    assert sdr(ref, np.zeros_like(ref)) == pytest.approx(0.0, abs=1e-12)
    # the clipping cap: identical signals give 10 log10(P / 1e-10)
    assert sdr(ref, ref) == pytest.approx(100.0, abs=1e-9)
    assert sdr(np.zeros(n), np.zeros(n)) == 0.0
    # scale invariance of SI-SDR; only float32 eps bounds the perfect score
    assert si_sdr(ref, 0.5 * ref + orth) == pytest.approx(si_sdr(ref, ref + 2 * orth), abs=1e-6)
    assert si_sdr(ref, 3 * ref) > 100


def test_mixture_as_estimate_gives_zero_improvement_exactly():
    est, ref = SIGNALS["noisy_copy"]
    got = SDRFamily().compute(ScoreItem("x", est, SR, ref, mixture=est.copy()))
    assert got["sdri"] == 0.0 and got["si_sdri"] == 0.0


def test_sdr_crops_to_the_shortest_signal():
    est, ref = SIGNALS["noisy_copy"]
    got = SDRFamily().compute(ScoreItem("x", est[:-100], SR, ref))
    assert got["sdr"] == pytest.approx(audiosep_sdr(ref[:-100], est[:-100]), abs=1e-4)
    assert "sdri" not in got  # no mixture, no improvement
