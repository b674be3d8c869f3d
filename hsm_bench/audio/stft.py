"""Short-time Fourier transforms and the Slaney mel filterbank, as the references define them.

Shared by the signal metrics (LSD, mel-PSNR) and the embedders' front ends (PANNs Cnn14,
HTS-AT), so neither side imports the other.

librosa-compatible framing (``center=True``: ``n_fft // 2`` samples of padding on both
sides, frame ``t`` centred on sample ``t * hop``), periodic Hann window, one-sided
transform, computed with ``torch.stft`` (multi-threaded, odd sizes supported: LSD at
16 kHz uses the prime-length 743-point transform).

Precision follows the reference: librosa multiplies float32 frames by a float64 window
and transforms in float64 before storing complex64, so LSD's transform runs in float64
(a float32 transform buries the weak bins of tonal signals under rounding noise and
changes LSD by tenths). The mel-PSNR transform is float32, as audioldm-eval's conv1d STFT.

Frames sit on a fixed grid, so the transform of a signal cropped at the end equals the
transform of the whole signal except for the last few frames: :func:`crop_stft` reuses
it (LSD's reference signal is the same for both LSD variants up to that crop).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=16)
def hann(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``)."""
    return torch.from_numpy(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).to(dtype)


def n_frames(length: int, n_fft: int, hop: int) -> int:
    return 1 + (length + 2 * (n_fft // 2) - n_fft) // hop


def stft(x: np.ndarray | torch.Tensor, n_fft: int, hop: int, pad_mode: str = "constant",
         dtype: torch.dtype = torch.float64) -> torch.Tensor:  # fmt: skip
    """Complex STFT of ``x`` ([..., T]) as ``[..., frames, n_fft // 2 + 1]``."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x).to(dtype)
    pad = n_fft // 2
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    # torch pads 'constant' itself only for center=True with pad_mode; do it explicitly
    # so odd n_fft and both modes behave exactly like librosa
    x = torch.nn.functional.pad(x[:, None], (pad, pad), mode=pad_mode)[:, 0]
    spec = torch.stft(x, n_fft, hop, n_fft, hann(n_fft, dtype), center=False, return_complex=True)
    return spec.transpose(-1, -2).reshape(*lead, -1, n_fft // 2 + 1)


def stft_pair(a: np.ndarray, b: np.ndarray, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 STFTs (constant padding) of two real signals of equal length, from one
    complex transform.

    For prime sizes the FFT libraries gain little from real input, so transforming
    ``a + i b`` and separating the halves by conjugate symmetry saves about half the work:
    ``A_k = (Z_k + conj(Z_{N-k})) / 2``, ``B_k = (Z_k - conj(Z_{N-k})) / 2i``.
    """
    if len(a) != len(b):
        raise ValueError("stft_pair needs signals of equal length")
    pad = n_fft // 2
    z = torch.zeros(len(a) + 2 * pad, dtype=torch.complex128)
    z.real[pad:-pad] = torch.from_numpy(np.asarray(a, dtype=np.float32))
    z.imag[pad:-pad] = torch.from_numpy(np.asarray(b, dtype=np.float32))
    spec = torch.stft(z, n_fft, hop, n_fft, hann(n_fft), center=False, onesided=False, return_complex=True)
    half = n_fft // 2 + 1
    zk = spec[:half]
    zr = spec[_mirror(n_fft)].conj()  # Z_{N-k}
    return ((zk + zr) * 0.5).T, ((zk - zr) * -0.5j).T


@lru_cache(maxsize=8)
def _mirror(n_fft: int) -> torch.Tensor:
    return (-torch.arange(n_fft // 2 + 1)) % n_fft


def _frames_direct(seg: torch.Tensor, idx: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    """Frames ``idx`` of the STFT of ``seg`` (constant padding), computed directly."""
    pad = n_fft // 2
    frames = torch.zeros(len(idx), n_fft, dtype=torch.float64)
    for k, t in enumerate(idx):
        start = int(t) * hop - pad
        lo, hi = max(start, 0), min(start + n_fft, len(seg))
        if hi > lo:
            frames[k, lo - start : hi - start] = seg[lo:hi].double()
    return torch.fft.rfft(frames * hann(n_fft), dim=-1)


def crop_stft(x: torch.Tensor, full: torch.Tensor, length: int, n_fft: int, hop: int) -> torch.Tensor:
    """STFT of ``x[:length]`` (constant padding) from ``full = stft(x)``.

    Frames whose window ends inside the crop are the same in both transforms; only the
    last few, whose window reaches past the crop (zero padding instead of signal), are
    recomputed.
    """
    if length == len(x):
        return full
    nf = n_frames(length, n_fft, hop)
    t = np.arange(nf)
    redo = np.flatnonzero(t * hop - n_fft // 2 + n_fft > length)
    out = full[:nf].clone()
    if len(redo):
        out[torch.from_numpy(redo)] = _frames_direct(x[:length], redo, n_fft, hop).to(full.dtype)
    return out


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """Slaney-style mel filterbank with Slaney area normalisation, ``[n_mels, n_fft//2+1]``.

    Same construction as ``librosa.filters.mel(htk=False, norm='slaney')``: triangles
    between mel-spaced edges on the Slaney scale (linear below 1 kHz, logarithmic above),
    each scaled by ``2 / (f_right - f_left)``.
    """
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0

    def hz_to_mel(f: float) -> float:
        return min_log_mel + np.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))
