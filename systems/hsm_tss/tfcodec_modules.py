"""The layers of TF-Codec's inference path (Jiang et al., "Latent-Domain Predictive Neural Speech Coding",
TASLP 2023; microsoft/TF-Codec at 1a4d327, MIT), re-implemented for :mod:`systems.hsm_tss.tfcodec`.

Each class states the official class it stands for (``models/modules.py``). Attribute names are the official
ones, because the official generator's state dict is loaded into these modules as it is; the class names and
the code are ours. Only inference is covered: the perplexity/entropy bookkeeping and the learnable compression
exponent (off in the 6 kbps config) are not. The Gumbel-softmax of training is
:meth:`CodebookQuantizer.relaxed` (used by ``TFCodec.forward_train`` and ``training/stage_codec.py``).

* :func:`compressed_stft`: ``Time2Freq2`` (L10-59): centred STFT (Hann, zero-padded at both ends), magnitude
  raised to ``power`` with the phase kept: ``|X|^p * X / max(|X|, 1e-7)``, as 2 channels (re, im), ``[B, 2, T, F]``.
* :class:`SpectrumToWave`: ``Freq2TimeCodec`` + ``ISTFT`` (L61-162): undo the compression
  (``a = sqrt(re^2 + im^2 + 1e-7)``, ``a^(1/p) * x / (a + 1e-7)``), then an overlap-add ISTFT by a transposed
  convolution whose kernel ``inverse_basis`` is the real inverse DFT times ``w / sum_k w^2(n - k hop)``.
  The buffer is in the official state dict, so a checkpoint brings its own copy.
* :class:`CausalConv`: ``ConvLayer`` (L231-252): zero-pad (frequency both sides, time ``k_t - 1`` on the left),
  Conv2d without bias, BatchNorm (eps 1e-3), PReLU (one slope, initialised at 0.5).
* :class:`CausalDeconv`: ``DeconvLayer`` (L254-288, not last): ConvTranspose2d without bias, then the last
  ``k_t - 1`` frames and the frequency overhang are cut, BatchNorm, PReLU. :class:`LastDecoderConv` is the
  ``is_last`` variant, a :class:`CausalConv` under the official name ``conv2d_dec_1``.
* :class:`TCMBlock`: ``TCMLayer`` (L290-329): 1x1 conv, BN, PReLU, causal dilated depthwise conv along time,
  BN, PReLU, 1x1 conv, residual.
* :class:`CodebookQuantizer`: ``GumbelVectorQuantizer`` in eval mode (L349-494). The official code scores
  codes by ``-5 * (|e|^2 + |x|^2 - 2 x.e)`` (one ``addmm``) and takes the first maximum, i.e. the nearest
  code in Euclidean distance; the quantised vector is the one-hot row times the codebook, i.e. that row of
  ``embedding``. ``dequantize`` (L392-418) maps indices back the same way. The same arithmetic is used here,
  so near-ties resolve as they do officially.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-7  # the official _eps of Time2Freq2 / Freq2TimeCodec
BN_EPS = 1e-3
PRELU_INIT = 0.5
DISTANCE_SCALE = -5.0  # GumbelVectorQuantizer.alpha: logits = alpha * squared distance


def compressed_stft(wave: torch.Tensor, window: torch.Tensor, hop: int, power: float) -> torch.Tensor:
    """``[B, T]`` samples -> ``[B, 2, 1 + T // hop, n_fft // 2 + 1]`` power-law compressed spectrum."""
    n_fft = window.shape[0]
    spec = torch.stft(wave.float(), n_fft, hop, n_fft, window.to(wave.device, torch.float32), center=True,
                      pad_mode="constant", return_complex=True)  # fmt: skip
    spec = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, T, F]
    mag = (spec[:, 0] ** 2 + spec[:, 1] ** 2).pow(0.5).unsqueeze(1)
    unit = spec / torch.clamp(mag, min=EPS)
    return mag.pow(power) * unit


def inverse_basis(n_fft: int, hop: int) -> torch.Tensor:
    """``[2 (n_fft/2 + 1), 1, n_fft]``: the real inverse DFT (rows: re of bins, then im of bins) times the
    periodic Hann window divided by its squared overlap sum, so that overlap-adding the frames inverts a
    Hann-windowed STFT. Built in float64, stored in float32, like the official buffer."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    weight = np.where((k == 0) | (2 * k == n_fft), 1.0, 2.0) / n_fft  # bins 1..N/2-1 stand for two
    angle = 2 * np.pi * k * n / n_fft
    basis = np.concatenate([weight * np.cos(angle), -weight * np.sin(angle)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    overlap = np.zeros(hop)
    for start in range(0, n_fft, hop):  # sum of w^2 over every frame covering a sample, per phase
        chunk = window[start : start + hop] ** 2
        overlap[: len(chunk)] += chunk
    norm = window / np.tile(overlap, math.ceil(n_fft / hop))[:n_fft]
    return torch.from_numpy(basis * norm).float().unsqueeze(1)


class OverlapAddISTFT(nn.Module):
    """Official ``ISTFT``: the frames' inverse DFTs overlap-added with stride ``hop``, not trimmed."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.hop = hop
        self.register_buffer("inverse_basis", inverse_basis(n_fft, hop))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # [B, 2, T, F] -> [B, (T - 1) hop + n_fft]
        stacked = torch.cat([spec[:, 0].transpose(1, 2), spec[:, 1].transpose(1, 2)], dim=1)
        return F.conv_transpose1d(stacked, self.inverse_basis, stride=self.hop).squeeze(1)


class SpectrumToWave(nn.Module):
    """Official ``Freq2TimeCodec`` (fixed exponent): compressed spectrum -> untrimmed overlap-add output."""

    def __init__(self, n_fft: int, hop: int, power: float):
        super().__init__()
        self.power = power
        self.istft = OverlapAddISTFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        amp = (x[:, 0] ** 2 + x[:, 1] ** 2 + EPS).pow(0.5).unsqueeze(1)
        phase = x / (amp + EPS)
        return self.istft(amp ** (1 / self.power) * phase)


class CausalConv(nn.Module):
    """Official ``ConvLayer``: causal in time, strided in frequency."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], freq_stride: int, freq_pad: tuple[int, int]):
        super().__init__()
        self.pad = (freq_pad[0], freq_pad[1], kernel[0] - 1, 0)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, (1, freq_stride), bias=False)
        self.bn_conv = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.nonlinearity = nn.PReLU(init=PRELU_INIT)
        nn.init.xavier_normal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, F]
        return self.nonlinearity(self.bn_conv(self.conv(F.pad(x, self.pad))))


class CausalDeconv(nn.Module):
    """Official ``DeconvLayer`` (not last): frequency upsampling; the time overhang at the end is dropped,
    so frame t depends on input frames t - k_t + 1 .. t only."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], freq_stride: int, crop: tuple[int, int]):
        super().__init__()
        self.time_cut = kernel[0] - 1
        self.crop = crop
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, kernel, (1, freq_stride), bias=False)
        self.bn_deconv = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.nonlinearity = nn.PReLU(init=PRELU_INIT)
        nn.init.xavier_normal_(self.deconv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.deconv(x)
        y = y[:, :, : y.shape[2] - self.time_cut, self.crop[0] : y.shape[3] - self.crop[1]]
        return self.nonlinearity(self.bn_deconv(y))


class LastDecoderConv(nn.Module):
    """Official ``DeconvLayer(is_last=True)``: a plain causal conv kept under the name ``conv2d_dec_1``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], freq_pad: tuple[int, int]):
        super().__init__()
        self.conv2d_dec_1 = CausalConv(in_ch, out_ch, kernel, 1, freq_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d_dec_1(x)


class TCMBlock(nn.Module):
    """Official ``TCMLayer`` on ``[B, C, T, 1]``: receptive field (kernel - 1) * dilation past frames."""

    def __init__(self, channels: int, mid_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.left = (kernel - 1) * dilation
        self.conv_first = nn.Conv2d(channels, mid_channels, 1, bias=False)
        self.bn_first = nn.BatchNorm2d(mid_channels, eps=BN_EPS)
        self.nonlinearity1 = nn.PReLU(init=PRELU_INIT)
        self.conv_depthwise = nn.Conv2d(mid_channels, mid_channels, (kernel, 1), dilation=(dilation, 1),
                                        groups=mid_channels, bias=False)  # fmt: skip
        self.bn_depthwise = nn.BatchNorm2d(mid_channels, eps=BN_EPS)
        self.nonlinearity2 = nn.PReLU(init=PRELU_INIT)
        self.conv_second = nn.Conv2d(mid_channels, channels, 1, bias=False)
        for conv in (self.conv_first, self.conv_depthwise, self.conv_second):
            nn.init.xavier_normal_(conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.nonlinearity1(self.bn_first(self.conv_first(x)))
        h = self.conv_depthwise(F.pad(h, (0, 0, self.left, 0)))
        h = self.nonlinearity2(self.bn_depthwise(h))
        return self.conv_second(h) + x


class CodebookQuantizer(nn.Module):
    """Official ``GumbelVectorQuantizer`` at inference: nearest code, and code -> codebook row."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, size, dim))
        nn.init.uniform_(self.embedding, -1.0, 1.0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` -> ``[N, M]``: the official ``distances_map``, ``-5 * squared distance`` to every code."""
        codes = self.embedding[0]
        flat = x.reshape(-1, x.shape[-1])
        sq = torch.addmm((codes**2).sum(1) + (flat**2).sum(1, keepdim=True), flat, codes.t(), beta=1.0, alpha=-2.0)
        return DISTANCE_SCALE * sq

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` -> ``[...]`` LongTensor: the first maximum of ``-5 * squared distance``."""
        return self.logits(x).argmax(-1).reshape(x.shape[:-1])

    def relaxed(self, x: torch.Tensor, tau: float, generator: torch.Generator | None = None, noise: bool = True):
        """Training path, official ``GumbelVectorQuantizer.forward`` in train mode (modules.py L426-494):
        ``F.gumbel_softmax(logits, tau, hard=True)`` times the codebook. Returns ``(quantised [..., D],
        indices [...], logits [N, M])``. The forward value is the chosen code's row; the gradient is the
        straight-through one of the softmax of ``(logits + g) / tau``, reaching both ``x`` and ``embedding``.

        ``g`` is Gumbel(0, 1) noise drawn from ``generator`` (so a resumed run draws the same noise; the
        official code uses the global RNG); ``noise=False`` drops it (a deterministic relaxation whose hard
        choice is the nearest code, as :meth:`indices`)."""
        logits = self.logits(x)
        scores = logits.float()
        if noise:
            e = torch.empty_like(scores).exponential_(generator=generator)
            scores = scores - e.log()  # -log(Exp(1)) is Gumbel(0, 1), as torch's gumbel_softmax draws it
        soft = torch.softmax(scores / tau, dim=-1)
        idx = soft.argmax(-1)
        hard = torch.zeros_like(soft).scatter_(-1, idx[:, None], 1.0)
        weights = (hard - soft.detach() + soft).to(self.embedding.dtype)
        quantised = weights @ self.embedding[0]
        return quantised.reshape(*x.shape[:-1], -1), idx.reshape(x.shape[:-1]), logits

    def vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """``[...]`` indices -> ``[..., D]`` codebook rows."""
        return self.embedding[0][idx]
