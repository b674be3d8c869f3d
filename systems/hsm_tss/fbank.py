"""Kaldi-compatible log-mel filterbank in plain torch, and the AudioMAE input built from it.

HSM-TSS reads audio through AudioMAE (models.md section 9). AudioMAE's front-end is the official
``dataset.py`` (facebookresearch/AudioMAE at bd60e29, ``_wav2fbank`` L176-228 and ``__getitem__`` L300):

1. the 16 kHz waveform minus its mean (L180);
2. ``torchaudio.compliance.kaldi.fbank(wave, htk_compat=True, sample_frequency=16000, use_energy=False,
   window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)`` (L211), everything else at the
   defaults: 25 ms frames, pre-emphasis 0.97, per-frame DC removal, FFT size rounded up to a power of two
   (400 -> 512 samples), ``snip_edges=True``, mel bands from 20 Hz to Nyquist;
3. zero-padding or truncation to 1024 frames (L215-224), *before*
4. normalisation ``(x - NORM_MEAN) / (2 * NORM_STD)`` (L300), so padded frames hold -NORM_MEAN / (2 NORM_STD).

:func:`kaldi_fbank` re-implements Kaldi's ``compute-fbank-feats`` as torchaudio's
``compliance/kaldi.py`` writes it (``_get_strided``, ``_get_window``, ``get_mel_banks``, ``fbank``), without
dither, VTLN or the energy column (``use_energy=False`` makes ``htk_compat`` and the energy options moot):

* frames of ``int(sr * 25 ms)`` samples every ``int(sr * 10 ms)``; with ``snip_edges`` only whole frames,
  ``1 + (T - 400) // 160`` of them (998 for 10 s at 16 kHz); without it, ``(T + shift // 2) // shift``
  frames over the signal mirrored at both ends;
* each frame minus its mean, then pre-emphasis ``x[j] - 0.97 x[max(j - 1, 0)]``, then the window
  (``hanning``: the symmetric Hann window 0.5 - 0.5 cos(2 pi n / (N - 1)); ``povey``: its 0.85th power;
  ``hamming``; ``rectangular``), zero-padded to the FFT size;
* power spectrum ``|rfft|^2``, times triangular mel filters: ``num_mel_bins`` triangles equally spaced on
  the mel scale ``1127 ln(1 + f / 700)`` between ``mel(low_freq)`` and ``mel(high_freq)`` (edges at
  ``mel_low + k * delta``, ``delta = (mel_high - mel_low) / (bins + 1)``), weights evaluated at the mel of
  each FFT bin ``i * sr / n_fft`` for ``i < n_fft / 2`` (the Nyquist bin gets no weight);
* ``log(max(energy, float32 epsilon))``.

The mel filters and the window are evaluated in float32 as torchaudio does (see :func:`mel_banks` and
:func:`window`): the output then matches torchaudio 2.11 to float32 rounding
(``benchmarks/compare_audiomae_official.py``), while both differ from a float64 evaluation by up to a few 1e-3
in bands whose energy is tiny next to the frame's (float32 FFT rounding).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
TARGET_FRAMES = 1024
NORM_MEAN = -4.2677393  # AudioSet fbank statistics of the official dataset.py (main_pretrain.py L166-170)
NORM_STD = 4.5689974
FLOAT_EPS = torch.finfo(torch.float32).eps  # Kaldi's std::numeric_limits<float>::epsilon() log floor

WINDOWS = ("hanning", "povey", "hamming", "rectangular")


def mel(freq: float) -> float:
    """Kaldi's (HTK's) mel scale, natural-log form."""
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=8)
def mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """``[num_bins, n_fft // 2 + 1]`` float32 triangular filters on the power spectrum (last column zero).

    Evaluated in float32 like Kaldi (``mel-computations.cc``) and torchaudio: the filters AudioMAE was trained
    with. Near ``low_freq`` a band holds one FFT bin whose float32 weight is off by up to ~1e-3 relative to
    exact arithmetic; that shows as up to ~1e-3 in the log-mel value, and reproducing it keeps the inputs
    those of the official front-end.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:  # Kaldi: non-positive high_freq is an offset from Nyquist
        high_freq += nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist) or num_bins < 4:
        raise ValueError(f"mel bands: need 0 <= low_freq < high_freq <= {nyquist} and >= 4 bins, "
                         f"got {low_freq}, {high_freq}, {num_bins}")  # fmt: skip
    mel_low, mel_high = mel(float(low_freq)), mel(float(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    k = torch.arange(num_bins, dtype=torch.float32)[:, None]
    left, centre, right = mel_low + k * delta, mel_low + (k + 1) * delta, mel_low + (k + 2) * delta
    bin_freq = sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float32)
    fft_mel = (1127.0 * torch.log(1.0 + bin_freq / 700.0))[None, :]  # log(1 + x), not log1p: Kaldi's rounding
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    banks = torch.minimum(up, down).clamp_min(0.0)
    return F.pad(banks, (0, 1))


def window(kind: str, size: int) -> torch.Tensor:
    """Kaldi's symmetric windows, from torch's float32 window functions as torchaudio takes them (their
    rounding is what AudioMAE saw: a window evaluated in float64 moves low-energy log-mel values by up to 5e-3)."""
    if kind in ("hanning", "povey"):
        w = torch.hann_window(size, periodic=False, dtype=torch.float32)  # 0.5 - 0.5 cos(2 pi n / (N - 1))
        return w.pow(0.85) if kind == "povey" else w
    if kind == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float32)
    if kind == "rectangular":
        return torch.ones(size, dtype=torch.float32)
    raise ValueError(f"window_type {kind!r}: use one of {', '.join(WINDOWS)}")


def frames(wave: torch.Tensor, size: int, shift: int, snip_edges: bool = True) -> torch.Tensor:
    """``[m, size]`` frames of a 1-D signal, Kaldi's framing."""
    if snip_edges:
        if wave.shape[0] < size:
            return wave.new_zeros(0, size)
        return wave.unfold(0, size, shift)
    # Kaldi mirrors the signal at both ends, repeating the edge sample: [2, 1, 0 | 0, 1, 2, ...]
    m = (wave.shape[0] + shift // 2) // shift
    pad = size // 2 - shift // 2
    rev = wave.flip(0)
    padded = torch.cat((rev[-pad:], wave, rev)) if pad > 0 else torch.cat((wave[-pad:], rev))
    return padded.unfold(0, size, shift)[:m]


def kaldi_fbank(
    wave: torch.Tensor,
    sample_rate: float = SAMPLE_RATE,
    num_mel_bins: int = NUM_MEL_BINS,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    window_type: str = "hanning",
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_power: bool = True,
) -> torch.Tensor:
    """Log-mel filterbank ``[frames, num_mel_bins]`` of a 1-D float waveform, as Kaldi / torchaudio's
    ``kaldi.fbank(dither=0, use_energy=False, use_log_fbank=True)`` with the same options (AudioMAE's
    ``window_type='hanning'``, not Kaldi's default ``povey``, is the default here)."""
    if wave.ndim != 1:
        raise ValueError(f"kaldi_fbank takes a 1-D waveform, got shape {list(wave.shape)}")
    size = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    n_fft = 1 << (size - 1).bit_length() if round_to_power_of_two else size
    if size < 2 or shift < 1 or n_fft % 2:
        raise ValueError(f"frame of {size} samples every {shift} samples, FFT size {n_fft}: need an even FFT size")
    if wave.shape[0] < size:
        raise ValueError(f"a {wave.shape[0]}-sample waveform is shorter than one {frame_length_ms:g}-ms frame "
                         f"({size} samples)")  # fmt: skip
    x = frames(wave.to(torch.float32), size, shift, snip_edges)
    if remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    if preemphasis != 0.0:
        previous = torch.cat((x[:, :1], x[:, :-1]), dim=1)  # the first sample is its own predecessor
        x = x - preemphasis * previous
    x = x * window(window_type, size).to(x.device)
    spectrum = torch.fft.rfft(x, n=n_fft).abs()  # rfft's n zero-pads each frame to the FFT size
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = mel_banks(int(num_mel_bins), n_fft, float(sample_rate), float(low_freq), float(high_freq))
    energies = spectrum @ banks.to(spectrum.device).T
    return energies.clamp_min(FLOAT_EPS).log()


def audiomae_input(
    wave: torch.Tensor, lengths: torch.Tensor | None = None, target_frames: int = TARGET_FRAMES
) -> torch.Tensor:
    """``[B, T]`` 16 kHz waveforms -> ``[B, target_frames, 128]`` normalised AudioMAE input.

    Item ``b`` uses its first ``lengths[b]`` samples only (all ``T`` when ``lengths`` is None): its mean and
    frame count are those of the clip alone, whatever padding the batch adds.
    """
    if wave.ndim != 2:
        raise ValueError(f"audiomae_input takes [B, T] waveforms, got shape {list(wave.shape)}")
    n_batch, n = wave.shape
    lengths = [n] * n_batch if lengths is None else [int(v) for v in lengths]
    if len(lengths) != n_batch or any(not 0 < v <= n for v in lengths):
        raise ValueError(f"lengths {lengths} do not fit a batch of {n_batch} waveforms of {n} samples")
    out = wave.new_zeros(n_batch, target_frames, NUM_MEL_BINS, dtype=torch.float32)
    for b, length in enumerate(lengths):
        clip = wave[b, :length].to(torch.float32)
        fb = kaldi_fbank(clip - clip.mean())
        m = min(fb.shape[0], target_frames)
        out[b, :m] = fb[:m]
    return (out - NORM_MEAN) / (NORM_STD * 2)
