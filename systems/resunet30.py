"""AudioSep's separation network, ResUNet30 with FiLM biases (Audio-AGI/AudioSep ``models/resunet.py``).

The module tree reproduces the official one, so the official Lightning checkpoint loads into
it key for key once its ``ss_model.`` prefix is removed:

* ``base.stft`` / ``base.istft``: the frozen DFT kernels (:mod:`systems.audiosep_stft`).
* ``base.bn0``: BatchNorm over the ``n_fft / 2 + 1`` frequency bins of the magnitude.
* ``base.pre_conv`` (1x1, 1 -> w0), ``base.encoder_block{1..6}.conv_block1``,
  ``base.conv_block7a.conv_block1``, ``base.decoder_block{1..6}.{conv1,bn1,bn2,conv_block2}``,
  ``base.after_conv`` (1x1, w1 -> 3). Each ``conv_block*`` is a residual block
  BN -> +beta1 -> LeakyReLU(0.01) -> 3x3 conv -> BN -> +beta2 -> LeakyReLU -> 3x3 conv, with a
  1x1 ``shortcut`` (with bias) when the width changes. Encoders average-pool by (2, 2) (the sixth
  by (1, 2)); decoders upsample with a transposed convolution (kernel = stride, no bias) after
  BN -> +beta1 -> LeakyReLU, concatenate the skip and run ``conv_block2``. The decoders' ``bn2``
  and their ``beta2`` are in the checkpoint but the official forward never uses them.
* ``film``: one ``Linear(condition, C)`` per bias, registered under the path of the block it
  feeds joined with ``->`` (``film.decoder_block3->conv_block2->beta1.weight``), because the
  official FiLM module names its layers that way.

Forward (eval mode), for ``[B, 1, T]`` audio and a ``[B, condition]`` query embedding: STFT ->
magnitude ``sqrt(max(re^2 + im^2, 1e-10))`` and the mixture phase (cos, sin) -> ``bn0`` -> zero-pad
frames to a multiple of 32 -> drop the last bin -> U-Net -> pad the bin back with a zero column,
cut to the original frames -> channel 0: sigmoid magnitude mask; channels 1, 2: tanh real and
imaginary parts normalised to a unit phasor (its modulus clamped at 1e-10) that rotates the
mixture phase -> ``relu(|X| * mask)`` with the rotated phase -> ISTFT to ``T`` samples. The
Nyquist bin of the estimate is therefore always zero, as in the official model.

``widths`` (w0..w6; default 32, 32, 64, 128, 256, 384, 384) shrink the network for tests
without changing any key name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from systems.audiosep_stft import ConvISTFT, ConvSTFT

WIDTHS = (32, 32, 64, 128, 256, 384, 384)
ENCODER_POOL = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))
DECODER_UP = ((1, 2), (2, 2), (2, 2), (2, 2), (2, 2), (2, 2))
TIME_MULTIPLE = 2**5  # five encoders halve the frames
BN_MOMENTUM = 0.01  # training-only, kept for a faithful module repr


class ConvBlockRes(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)
        self.bn2 = nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def film_sizes(self) -> dict[str, int]:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features}

    def forward(self, x: torch.Tensor, betas: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.bn1(x) + betas["beta1"], 0.01))
        h = self.conv2(F.leaky_relu(self.bn2(h) + betas["beta2"], 0.01))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


class EncoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pool: tuple[int, int]):
        super().__init__()
        self.conv_block1 = ConvBlockRes(cin, cout)
        self.pool = pool

    def film_sizes(self) -> dict:
        return {"conv_block1": self.conv_block1.film_sizes()}

    def forward(self, x: torch.Tensor, betas: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_block1(x, betas["conv_block1"])
        return F.avg_pool2d(h, kernel_size=self.pool), h


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, up: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, kernel_size=up, stride=up, bias=False)
        self.bn1 = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)
        self.conv_block2 = ConvBlockRes(2 * cout, cout)
        self.bn2 = nn.BatchNorm2d(cin, momentum=BN_MOMENTUM)  # in the checkpoint, unused

    def film_sizes(self) -> dict:
        return {"beta1": self.bn1.num_features, "beta2": self.bn2.num_features, "conv_block2": self.conv_block2.film_sizes()}

    def forward(self, x: torch.Tensor, skip: torch.Tensor, betas: dict) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.bn1(x) + betas["beta1"], 0.01))
        return self.conv_block2(torch.cat((h, skip), dim=1), betas["conv_block2"])


class ResUNet30Base(nn.Module):
    def __init__(self, n_fft: int = 2048, hop: int = 320, widths: Sequence[int] = WIDTHS):
        super().__init__()
        w = [int(c) for c in widths]
        if len(w) != 7:
            raise ValueError(f"ResUNet30 takes 7 widths (w0..w6), got {len(w)}")
        self.stft = ConvSTFT(n_fft, hop)
        self.istft = ConvISTFT(n_fft, hop)
        self.bn0 = nn.BatchNorm2d(n_fft // 2 + 1, momentum=BN_MOMENTUM)
        self.pre_conv = nn.Conv2d(1, w[0], 1)
        for k, pool in enumerate(ENCODER_POOL, start=1):
            setattr(self, f"encoder_block{k}", EncoderBlock(w[k - 1], w[k], pool))
        self.conv_block7a = EncoderBlock(w[6], w[6], (1, 1))
        # decoder j takes the previous output (w6 for the first) back to the width of skip 7 - j
        dec_in = [w[6], w[6], w[5], w[4], w[3], w[2]]
        for j, up in enumerate(DECODER_UP, start=1):
            setattr(self, f"decoder_block{j}", DecoderBlock(dec_in[j - 1], w[7 - j], up))
        self.after_conv = nn.Conv2d(w[1], 3, 1)

    def blocks(self) -> list[str]:
        return [f"encoder_block{k}" for k in range(1, 7)] + ["conv_block7a"] + [f"decoder_block{j}" for j in range(1, 7)]

    def spectrum(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real, imag = self.stft(wave)
        mag = torch.clamp(real**2 + imag**2, 1e-10, np.inf) ** 0.5
        return mag, real / mag, imag / mag

    def forward(self, mixture: torch.Tensor, betas: dict) -> torch.Tensor:
        """``[B, 1, T]`` -> ``[B, 1, T]``."""
        length = mixture.shape[-1]
        mag, cos_in, sin_in = self.spectrum(mixture[:, 0])
        x = self.bn0(mag.transpose(1, 3)).transpose(1, 3)
        frames = x.shape[2]
        x = F.pad(x, (0, 0, 0, -frames % TIME_MULTIPLE))
        x = self.pre_conv(x[..., :-1])
        skips = []
        for k in range(1, 7):
            x, h = getattr(self, f"encoder_block{k}")(x, betas[f"encoder_block{k}"])
            skips.append(h)
        x, _ = self.conv_block7a(x, betas["conv_block7a"])
        for j in range(1, 7):
            x = getattr(self, f"decoder_block{j}")(x, skips[6 - j], betas[f"decoder_block{j}"])
        x = F.pad(self.after_conv(x), (0, 1))[:, :, :frames]
        return self.to_wave(x, mag, cos_in, sin_in, length)

    def to_wave(self, x: torch.Tensor, mag: torch.Tensor, cos_in: torch.Tensor, sin_in: torch.Tensor, length: int) -> torch.Tensor:
        mask = torch.sigmoid(x[:, 0:1])
        re, im = torch.tanh(x[:, 1:2]), torch.tanh(x[:, 2:3])
        modulus = torch.clamp((re**2 + im**2) ** 0.5, 1e-10, np.inf)
        m_cos, m_sin = re / modulus, im / modulus
        out_cos = cos_in * m_cos - sin_in * m_sin
        out_sin = sin_in * m_cos + cos_in * m_sin
        out_mag = F.relu(mag * mask)
        return self.istft(out_mag * out_cos, out_mag * out_sin, length)[:, None, :]


class FiLM(nn.Module):
    """One Linear per FiLM bias, named by its block path joined with ``->``."""

    def __init__(self, sizes: dict, condition_size: int):
        super().__init__()
        self.paths: list[tuple[str, ...]] = []
        self._add(sizes, (), condition_size)

    def _add(self, sizes: dict, prefix: tuple[str, ...], condition_size: int) -> None:
        for key, value in sizes.items():
            path = (*prefix, key)
            if isinstance(value, dict):
                self._add(value, path, condition_size)
            else:
                self.add_module("->".join(path), nn.Linear(condition_size, value))
                self.paths.append(path)

    def forward(self, condition: torch.Tensor) -> dict:
        betas: dict = {}
        for path in self.paths:
            node = betas
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = getattr(self, "->".join(path))(condition)[:, :, None, None]
        return betas


class ResUNet30(nn.Module):
    def __init__(self, n_fft: int = 2048, hop: int = 320, widths: Sequence[int] = WIDTHS, condition_size: int = 512):
        super().__init__()
        self.base = ResUNet30Base(n_fft, hop, widths)
        self.film = FiLM({name: getattr(self.base, name).film_sizes() for name in self.base.blocks()}, condition_size)

    def forward(self, mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.base(mixture, self.film(condition))
