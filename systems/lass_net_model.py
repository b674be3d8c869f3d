"""LASS-Net's network: a BERT-mini query encoder and a FiLM-conditioned residual U-Net.

Written from the description of liuxubo717/LASS (``model/LASSNet.py``, ``text_encoder.py``,
``resunet_film.py``, ``modules.py``, ``film.py``); the attribute names are the official ones,
so ``state_dict()`` has the key names of ``LASSNet.pt`` without its DataParallel ``module.``
prefix. What the code reproduces:

* Query: BERT (``add_pooling_layer=False``), the last-layer state of the first token, then
  Linear + ReLU: one condition vector for every FiLM layer.
* FiLM is additive only: Linear(cond, 2C) -> ReLU -> Linear(2C, C) -> ReLU, added per channel.
* Residual block: BN -> LeakyReLU(0.01) -> 3x3 conv (no bias) -> FiLM, twice; a 1x1 conv
  (with bias) plus its own FiLM replaces the identity when the width changes. BatchNorms
  keep torch's defaults (the official momentum argument never reaches them).
* Encoder blocks: two residual blocks, then 2x2 average pooling; six of them, a centre
  block, six decoder blocks (BN -> ReLU -> 3x3 stride-2 transposed conv without bias, last
  time row dropped, skip concatenated, two residual blocks), a residual block and a 1x1 conv.
* Input ``[B, 1, T, 513]``: time zero-padded to a multiple of 64, the top two bins dropped
  (511 bins line up with the stride-2 transposed convs), the two bins padded back as zeros
  (logits of 0, so their sigmoid mask is 0.5), time cropped back.

``widths`` and ``cond_dim`` (defaults: the published model) exist so tests can build a
small model with the same key names: the six widths must keep the published pattern of
equal neighbours (only the last two are equal) or the shortcut keys change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (32, 64, 128, 256, 384, 384)
COND_DIM = 256
DOWNSAMPLE = 2**6  # six 2x2 poolings


class Film(nn.Module):
    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.linear = nn.Sequential(nn.Linear(cond_dim, 2 * channels), nn.ReLU(), nn.Linear(2 * channels, channels), nn.ReLU())

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x + self.linear(cond)[:, :, None, None]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.film1 = Film(cout, cond_dim)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.film2 = Film(cout, cond_dim)
        if cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1)
            self.film_res = Film(cout, cond_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.film1(self.conv1(F.leaky_relu(self.bn1(x), 0.01)), cond)
        h = self.film2(self.conv2(F.leaky_relu(self.bn2(h), 0.01)), cond)
        skip = self.film_res(self.shortcut(x), cond) if hasattr(self, "shortcut") else x
        return skip + h


class EncoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.conv_block1 = ResBlock(cin, cout, cond_dim)
        self.conv_block2 = ResBlock(cout, cout, cond_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_block2(self.conv_block1(x, cond), cond)
        return F.avg_pool2d(h, 2), h


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv_block2 = ResBlock(2 * cout, cout, cond_dim)
        self.conv_block3 = ResBlock(cout, cout, cond_dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # a 3x3 stride-2 transposed conv gives 2n + 1 rows and columns: the extra time row
        # goes; the frequency axis was cropped to 2^6 k - 1 bins so that it fits
        h = self.conv1(F.relu(self.bn1(x)))[:, :, :-1, :]
        h = torch.cat([h, skip], dim=1)
        return self.conv_block3(self.conv_block2(h, cond), cond)


class ResUNetFiLM(nn.Module):
    """Mask logits ``[B, 1, T, F]`` for a magnitude spectrogram ``[B, 1, T, F]``."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, cond_dim: int = COND_DIM):
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"LASS-Net's U-Net has six encoder widths, got {list(widths)}")
        ins = (1, *widths[:-1])
        for i, (cin, cout) in enumerate(zip(ins, widths), start=1):
            setattr(self, f"encoder_block{i}", EncoderBlock(cin, cout, cond_dim))
        self.conv_block7 = ResBlock(widths[-1], widths[-1], cond_dim)
        cin = widths[-1]
        for i, cout in enumerate(reversed(widths), start=1):
            setattr(self, f"decoder_block{i}", DecoderBlock(cin, cout, cond_dim))
            cin = cout
        self.after_conv_block1 = ResBlock(widths[0], widths[0], cond_dim)
        self.after_conv2 = nn.Conv2d(widths[0], 1, 1)

    def forward(self, spec: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n_time = spec.shape[2]
        x = F.pad(spec, (0, 0, 0, -n_time % DOWNSAMPLE))[..., :-2]
        skips = []
        for i in range(1, 7):
            x, h = getattr(self, f"encoder_block{i}")(x, cond)
            skips.append(h)
        x = self.conv_block7(x, cond)
        for i in range(1, 7):
            x = getattr(self, f"decoder_block{i}")(x, skips[-i], cond)
        x = self.after_conv2(self.after_conv_block1(x, cond))
        return F.pad(x, (0, 2))[:, :, :n_time]


class TextEncoder(nn.Module):
    """BERT's last-layer state of the first token ([CLS]) -> Linear -> ReLU."""

    def __init__(self, bert_config, cond_dim: int = COND_DIM):
        super().__init__()
        from transformers import BertModel

        self.bert_layer = BertModel(bert_config, add_pooling_layer=False)
        self.linear_layer = nn.Sequential(nn.Linear(bert_config.hidden_size, cond_dim), nn.ReLU())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert_layer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.linear_layer(hidden[:, 0])


class LassNetModel(nn.Module):
    """``text_embedder`` + ``UNet``, the official module names."""

    def __init__(self, bert_config, widths: tuple[int, ...] = WIDTHS, cond_dim: int = COND_DIM):
        super().__init__()
        self.text_embedder = TextEncoder(bert_config, cond_dim)
        self.UNet = ResUNetFiLM(tuple(widths), cond_dim)

    def mask(self, magnitude: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Sigmoid mask for ``magnitude [B, 1, T, F]`` under the condition ``[B, cond_dim]``."""
        return torch.sigmoid(self.UNet(magnitude, cond))
