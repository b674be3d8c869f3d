"""TF-Codec, the 6 kbps causal codec whose tokens HSM-TSS's acoustic decoder generates (paper §III-E, §IV-C).

A re-implementation of the inference path of microsoft/TF-Codec (commit 1a4d327, MIT; Jiang et al., TASLP 2023),
config ``6k_20ms_redundant`` (``configs/tfcodec_config_6k.yaml`` + ``configs/model_config.yaml``), from
``models/tfcodec.py`` (L9-209) and ``models/modules.py`` (layers: see :mod:`systems.hsm_tss.tfcodec_modules`):

1. 16 kHz wave, right-padded with zeros as ``rpad_signal_for_codec`` (modules.py L671-687) does: to a whole
   number of hops (80 samples), then until the centred STFT's frame count ``1 + T / 80`` is a multiple of 4.
2. STFT (Hann 320, hop 80, centred, zero padding), magnitude^0.3 with the phase kept: ``[B, 2, T, 161]``.
3. Encoder: 4 causal convs (kernel (2, 5), channels 16/32/64/64, frequency strides 1/4/4/2: 161 -> 161 -> 41
   -> 11 -> 5 bins), flattened channel-major to 320 features per frame, 4 TCM blocks (dilations 1, 2, 4, 8),
   a GRU (initial state: the learnt ``h0_enc``).
4. Bottleneck (``MultiFrmVQBottleNeck``, modules.py L496-645): 1x1 conv 320 -> 480, then 4 consecutive frames
   form one 20-ms step; the step's ``[4, 480]`` block is cut along channels into 16 groups of 30 and group
   ``k`` (``[4, 30]`` flattened frame-major to 120 values) is quantised by codebook ``k`` (1024 codes). Codes:
   ``[B, T / 4, 16]``, a product (group) VQ, not a residual one. Back: the codebook rows put in place, 1x1 conv
   480 -> 320.
5. Decoder: 4 TCM, a GRU (``h0``), 4 TCM, unflatten to ``[B, 64, T, 5]``, 3 causal transposed convs and a
   causal conv (the encoder mirrored, 5 -> 11 -> 41 -> 161 bins), ``out_conv`` (kernel (2, 5)), inverse
   compression and an overlap-add ISTFT, trimmed by ``n_fft / 2`` at both ends: ``80 (T - 1)`` samples.

Everything is causal in time; the only look-ahead is the STFT window's: a token covering samples
``[320 s, 320 s + 320)`` also sees the next 80 samples (5 ms), and decoding token ``s`` writes samples
``[320 s - 160, 320 s + 400)``.

Framing. The official model gives ``ceil((ceil(T / 80) + 1) / 4)`` tokens for ``T`` samples: 501 for 10 s,
the last one mostly covering padding. The :class:`TokenCodec` contract used by HSM-TSS is 50 tokens/s
exactly, so :meth:`TFCodec.encode` returns the first ``ceil(T / 320)`` official tokens (unchanged: the encoder
is causal) and :meth:`TFCodec.decode` returns ``320 F`` samples for ``F`` tokens: the official decoder output
from the first sample on, with the last 160 samples missing the overlap-add share of the dropped token's
frames. :meth:`TFCodec.encode_official`, :meth:`TFCodec.decode_official` and :meth:`TFCodec.reconstruct` are
the official ``encode_to_token_idx(x)["quantization_inds"]``, ``decode_from_token_idx`` and ``forward``'s
``x_hat``.

Checkpoint: the official ``tfcodec_6k_514000.ckpt`` holds ``{"gen": generator state dict, ...}`` (plus the
discriminator's ``disc_freq`` and possibly ``epoch``/optimizer entries, which are not read). ``TFCodec.load``
(tfcodec.py L107-122) takes ``gen`` (or the whole file when there is no ``gen``), strips ``module.`` (DDP) and
``generator.`` prefixes and loads strictly; :func:`read_tfcodec_checkpoint` does the same. The official
generator has no training-only parameters or buffers: every key (266 for 6 kbps, including BatchNorm's
``num_batches_tracked`` and the ISTFT's ``freq2time.istft.inverse_basis``) has its module here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from systems.hsm_tss.tfcodec_modules import (
    CausalConv,
    CausalDeconv,
    CodebookQuantizer,
    LastDecoderConv,
    SpectrumToWave,
    TCMBlock,
    compressed_stft,
)

SAMPLE_RATE = 16000
N_FFT = 320  # dft_size: 20-ms window
HOP = 80  # dft_size * hop_vqvae: 5 ms
KERNEL = (2, 5)  # (time, frequency) of every encoder/decoder conv and out_conv
FREQ_STRIDES = (1, 4, 4, 2)  # 161 -> 161 -> 41 -> 11 -> 5 bins
FREQ_PADS = ((2, 2), (2, 2), (2, 2), (1, 1))  # tfcodec.py frm_pad, encoder order; the decoder crops them back
ENC_BINS = 5
PREFIXES = ("module.", "generator.")  # what TFCodec.load strips (DDP, older GAN wrappers)

# the 6k_20ms_redundant configuration, in this module's argument names
CONFIG_6K = {"channels": (16, 32, 64, 64), "tcm_channels": 512, "latent_dim": 480, "n_codebooks": 16,
             "codebook_size": 1024, "combine_frames": 4, "n_tcm": 4, "depthwise_kernel": 5, "power": 0.3}  # fmt: skip


class TFCodec(nn.Module):
    """TF-Codec generator (inference). Defaults: the official 6 kbps model; smaller ``channels`` /
    ``tcm_channels`` / ``latent_dim`` / codebooks give a test model of the same structure. Use in eval mode."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        channels: tuple[int, ...] = CONFIG_6K["channels"],
        tcm_channels: int = CONFIG_6K["tcm_channels"],
        latent_dim: int = CONFIG_6K["latent_dim"],
        n_codebooks: int = CONFIG_6K["n_codebooks"],
        codebook_size: int = CONFIG_6K["codebook_size"],
        combine_frames: int = CONFIG_6K["combine_frames"],
        n_tcm: int = CONFIG_6K["n_tcm"],
        depthwise_kernel: int = CONFIG_6K["depthwise_kernel"],
        power: float = CONFIG_6K["power"],
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != len(FREQ_STRIDES):
            raise ValueError(f"channels: {len(FREQ_STRIDES)} encoder widths (the 20-ms layout), got {channels}")
        if latent_dim % n_codebooks:
            raise ValueError(f"latent_dim {latent_dim} must split into {n_codebooks} equal codebook groups")
        self.arch = {"channels": channels, "tcm_channels": tcm_channels, "latent_dim": latent_dim,
                     "n_codebooks": n_codebooks, "codebook_size": codebook_size, "combine_frames": combine_frames,
                     "n_tcm": n_tcm, "depthwise_kernel": depthwise_kernel, "power": power}  # fmt: skip
        self.channels, self.combine_frames, self.power = channels, combine_frames, power
        self.n_codebooks, self.codebook_size = n_codebooks, codebook_size
        self.feat_dim = channels[-1] * ENC_BINS
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)  # not in the official dict

        self.enc_list = nn.ModuleList(
            CausalConv(c_in, c_out, KERNEL, s, p)
            for c_in, c_out, s, p in zip((2, *channels[:-1]), channels, FREQ_STRIDES, FREQ_PADS)
        )
        self.tcm_list_enc = self._tcm_stack(n_tcm, tcm_channels, depthwise_kernel)
        self.gru_enc = nn.GRU(self.feat_dim, self.feat_dim, batch_first=True)
        self.h0_enc = nn.Parameter(torch.zeros(1, 1, self.feat_dim))

        self.conv1x1_1 = nn.Conv2d(self.feat_dim, latent_dim, 1, bias=False)
        self.conv1x1_2 = nn.Conv2d(latent_dim, self.feat_dim, 1, bias=False)
        nn.init.xavier_normal_(self.conv1x1_1.weight)
        nn.init.xavier_normal_(self.conv1x1_2.weight)
        code_dim = latent_dim * combine_frames // n_codebooks
        self.vq_layer_list = nn.ModuleList(CodebookQuantizer(code_dim, codebook_size) for _ in range(n_codebooks))

        self.tcm_list1 = self._tcm_stack(n_tcm, tcm_channels, depthwise_kernel)
        self.gru = nn.GRU(self.feat_dim, self.feat_dim, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(1, 1, self.feat_dim))
        self.tcm_list2 = self._tcm_stack(n_tcm, tcm_channels, depthwise_kernel)

        rev = channels[::-1]
        dec: list[nn.Module] = [
            CausalDeconv(c_in, c_out, KERNEL, s, p)
            for c_in, c_out, s, p in zip(rev[:-1], rev[1:], FREQ_STRIDES[::-1][:-1], FREQ_PADS[::-1][:-1])
        ]
        dec.append(LastDecoderConv(rev[-1], 2, KERNEL, FREQ_PADS[0]))
        self.dec_list = nn.ModuleList(dec)
        self.out_conv = nn.Conv2d(2, 2, KERNEL, bias=False)
        nn.init.xavier_normal_(self.out_conv.weight)
        self.out_pad = (FREQ_PADS[0][0], FREQ_PADS[0][1], KERNEL[0] - 1, 0)
        self.freq2time = SpectrumToWave(N_FFT, HOP, power)

    def _tcm_stack(self, n: int, mid: int, kernel: int) -> nn.ModuleList:
        return nn.ModuleList(TCMBlock(self.feat_dim, mid, kernel, 2**i) for i in range(n))

    # -- framing ---------------------------------------------------------------------------------------------
    @property
    def samples_per_token(self) -> int:
        return HOP * self.combine_frames

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.samples_per_token

    def official_padding(self, n_samples: int) -> int:
        """Zeros ``rpad_signal_for_codec`` appends: to whole hops, then to whole tokens of STFT frames."""
        pad = -n_samples % HOP
        frames = (n_samples + pad) // HOP + 1
        return pad + HOP * (-frames % self.combine_frames)

    def official_token_count(self, n_samples: int) -> int:
        return ((n_samples + self.official_padding(n_samples)) // HOP + 1) // self.combine_frames

    def token_count(self, n_samples: int) -> int:
        """Tokens :meth:`encode` returns: one per started 20 ms."""
        return math.ceil(n_samples / self.samples_per_token)

    # -- encoder / bottleneck ----------------------------------------------------------------------------------
    def latent(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` (padded as officially) -> pre-quantisation latent ``[B, frames, latent_dim]``."""
        x = compressed_stft(wave, self.window, HOP, self.power)  # [B, 2, T, 161]
        for layer in self.enc_list:
            x = layer(x)
        b, c, t, f = x.shape
        h = x.permute(0, 1, 3, 2).reshape(b, c * f, t, 1)  # feature index c * 5 + f
        for tcm in self.tcm_list_enc:
            h = tcm(h)
        h, _ = self.gru_enc(h[..., 0].transpose(1, 2), self.h0_enc.expand(-1, b, -1).contiguous())
        return self.conv1x1_1(h.transpose(1, 2).unsqueeze(-1))[..., 0].transpose(1, 2)

    def _groups(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, T, C]`` -> ``[B, T / n, K, n * C / K]``: per token and codebook, its frames' channel group."""
        b, t, c = latent.shape
        n, k = self.combine_frames, self.n_codebooks
        return latent.reshape(b, t // n, n, k, c // k).permute(0, 1, 3, 2, 4).reshape(b, t // n, k, -1)

    def quantize(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, frames, latent_dim]`` (frames a multiple of ``combine_frames``) -> codes ``[B, frames / n, K]``."""
        groups = self._groups(latent)
        return torch.stack([vq.indices(groups[:, :, i]) for i, vq in enumerate(self.vq_layer_list)], dim=-1)

    def _ungroup(self, rows: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_groups`: ``[B, F, K, n * C / K]`` -> ``[B, F * n, C]``."""
        b, f, k = rows.shape[:3]
        n = self.combine_frames
        return rows.reshape(b, f, k, n, -1).permute(0, 1, 3, 2, 4).reshape(b, f * n, -1)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, F, K]`` -> quantised latent ``[B, F * n, latent_dim]``."""
        rows = torch.stack([vq.vectors(codes[:, :, i]) for i, vq in enumerate(self.vq_layer_list)], dim=2)
        return self._ungroup(rows)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim != 3 or codes.shape[-1] != self.n_codebooks:
            raise ValueError(f"codes must be [batch, tokens, {self.n_codebooks}], got {list(codes.shape)}")
        if codes.is_floating_point() or (codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size)):
            raise ValueError(f"codes must be integers in [0, {self.codebook_size})")
        return codes.long()

    # -- decoder ---------------------------------------------------------------------------------------------
    def _decode_untrimmed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> overlap-add output before the ISTFT's centre trim: ``[B, 80 (4F - 1) + 320]``."""
        return self._decode_latent(self.dequantize(self._check_codes(codes)))

    def _decode_latent(self, quantised: torch.Tensor) -> torch.Tensor:
        """Quantised latent ``[B, 4F, latent_dim]`` -> untrimmed overlap-add output (official ``decoder``)."""
        h = self.conv1x1_2(quantised.transpose(1, 2).unsqueeze(-1))  # [B, 320, T, 1]
        b, t = h.shape[0], h.shape[2]
        for tcm in self.tcm_list1:
            h = tcm(h)
        g, _ = self.gru(h[..., 0].transpose(1, 2), self.h0.expand(-1, b, -1).contiguous())
        h = g.transpose(1, 2).unsqueeze(-1)
        for tcm in self.tcm_list2:
            h = tcm(h)
        x = h[..., 0].reshape(b, self.channels[-1], ENC_BINS, t).transpose(2, 3)  # inverse of the encoder flatten
        for layer in self.dec_list:
            x = layer(x)
        x = self.out_conv(nn.functional.pad(x, self.out_pad))
        return self.freq2time(x)

    # -- the official entry points -----------------------------------------------------------------------------
    def _pad(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim != 2:
            raise ValueError(f"wave must be [batch, samples], got {list(wave.shape)}")
        return nn.functional.pad(wave.float(), (0, self.official_padding(wave.shape[-1])))

    def encode_official(self, wave: torch.Tensor) -> torch.Tensor:
        """Official ``encode_to_token_idx(wave)["quantization_inds"]``: ``[B, official_token_count(T), K]``."""
        return self.quantize(self.latent(self._pad(wave)))

    def decode_official(self, codes: torch.Tensor) -> torch.Tensor:
        """Official ``decode_from_token_idx``: ``[B, 80 (4F - 1)]`` samples, centre-trimmed, not cut to length."""
        out = self._decode_untrimmed(codes)
        return out[:, N_FFT // 2 : out.shape[-1] - N_FFT // 2]

    def reconstruct(self, wave: torch.Tensor) -> torch.Tensor:
        """Official ``forward(wave)[bitrate]["x_hat"]``: encode, decode, cut to ``T`` samples."""
        return self.decode_official(self.encode_official(wave))[:, : wave.shape[-1]]

    # -- training (training/stage_codec.py) ----------------------------------------------------------------------
    def forward_train(self, wave: torch.Tensor, tau: float, generator: torch.Generator | None = None,
                      noise: bool = True) -> dict[str, object]:
        """Official ``forward(wave)`` with the quantisers' Gumbel-softmax of training (tfcodec.py L124-137,
        modules.py L426-494 and L555-607): pad, encode, relaxed group VQ at temperature ``tau``, decode, cut
        to ``T`` samples. Returns ``x_hat [B, T]``, ``codes [B, F, K]`` (the hard choices), ``logits``
        (one ``[B F, M]`` per codebook, for the rate term), ``latent`` and ``quantised`` ``[B, 4F, C]``.
        Use in train mode for training (BatchNorm on batch statistics, as officially); the inference
        entry points above are unchanged."""
        wave_in = self._pad(wave)
        latent = self.latent(wave_in)
        groups = self._groups(latent)
        parts = [vq.relaxed(groups[:, :, i], tau, generator, noise) for i, vq in enumerate(self.vq_layer_list)]
        quantised = self._ungroup(torch.stack([q for q, _, _ in parts], dim=2))
        out = self._decode_latent(quantised)
        x_hat = out[:, N_FFT // 2 : out.shape[-1] - N_FFT // 2][:, : wave.shape[-1]]
        return {"x_hat": x_hat, "codes": torch.stack([i for _, i, _ in parts], dim=-1),
                "logits": [lg for _, _, lg in parts], "latent": latent, "quantised": quantised}  # fmt: skip

    # -- the TokenCodec contract (50 tokens/s) ---------------------------------------------------------------
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` at 16 kHz -> codes ``[B, ceil(T / 320), K]`` (the official codes' prefix)."""
        return self.encode_official(wave)[:, : self.token_count(wave.shape[-1])]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, F, K]`` -> ``[B, 320 F]`` samples."""
        out = self._decode_untrimmed(codes)
        return out[:, N_FFT // 2 : N_FFT // 2 + codes.shape[1] * self.samples_per_token]


def strip_prefixes(key: str) -> str:
    """A generator key as ``TFCodec.load`` sees it: ``module.`` and ``generator.`` wrappers removed."""
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def read_tfcodec_checkpoint(path: str | Path, model: TFCodec) -> dict[str, torch.Tensor]:
    """The generator tensors of an official TF-Codec ``.ckpt`` for ``model`` (strict), or a CheckpointError."""
    from hsm_bench import weights
    from hsm_bench.weights import CheckpointError

    obj = weights.load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} is not a TF-Codec checkpoint: it holds a {type(obj).__name__}, "
                              f"not {{'gen': generator state dict, ...}}")  # fmt: skip
    state = obj.get("gen", obj)  # as TFCodec.load: a bare state dict is accepted too
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} is not a TF-Codec checkpoint: its 'gen' entry is a {type(state).__name__}")
    clean: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = strip_prefixes(str(key))
        if name in clean:
            raise CheckpointError(f"{path} is not a TF-Codec checkpoint: key {name} occurs twice once "
                                  f"'module.'/'generator.' prefixes are removed")  # fmt: skip
        clean[name] = value
    hints = [("disc", "this looks like a discriminator state dict: pass the file whose 'gen' entry is the generator")]
    return weights.check_state_dict(model, clean, "TF-Codec (this configuration)", str(path), hints=hints)
