"""One token interface over the neural codecs HSM-TSS's acoustic decoder can generate tokens of.

HSM-TSS (arXiv 2505.21025, §III-E, §IV-C) generates the tokens of a 6 kbps causal TF-Codec and reconstructs
the waveform with TF-Codec's decoder; its Table (§V-E) compares that codec with EnCodec and DAC at 6 kbps.
:class:`TokenCodec` is what the acoustic decoder and the system see: a wave ``[B, T]`` at the codec's
``sample_rate`` becomes codes ``[B, F, n_codebooks]`` (``F = ceil(T * frame_rate / sample_rate)``) and back.

* :class:`TFCodecTokens`: :class:`systems.hsm_tss.tfcodec.TFCodec`, 16 kHz, 50 tokens/s, 16 group-VQ
  codebooks of 1024 (6 kbps); weights: the official ``tfcodec_6k_514000.ckpt`` layout, or random (seeded).
* :class:`EncodecTokens`: ``transformers.EncodecModel`` (``facebook/encodec_24khz``: 24 kHz, hop 320, so 75
  frames/s; ``bandwidth`` 6.0 kbps = 8 residual codebooks of 1024). The caller resamples to 24 kHz. Only the
  unchunked, unnormalised mono model fits codes-only tokens (the 48 kHz model also needs per-chunk scales).
* :class:`DacTokens`: ``transformers.DacModel`` (``descript/dac_16khz``: 16 kHz, hop 320, 50 frames/s, 12
  residual codebooks of 1024 = 6 kbps; ``n_quantizers`` keeps the first ones). The input is right-padded to a
  whole hop, as DAC's own ``preprocess`` does.

Every ``decode`` returns ``F * hop`` samples (``hop = sample_rate / frame_rate``): the decoder's output cut, or
zero-extended at the end, to that length. DAC's transposed convolutions lose a few samples at odd strides (its
own ``decompress`` likewise cuts the output to length, aligned at the start); EnCodec's and TF-Codec's outputs
already have it.

``config()`` names what rebuilds a codec (kind, architecture, weights name or folder, bitrate argument) and
:func:`build_codec` rebuilds it; weights are never stored in a config. A ``weights`` entry is a path that
exists, else a name registered in :mod:`hsm_bench.weights` (resolved offline, never downloaded).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TokenCodec(Protocol):
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int

    def encode(self, wave: torch.Tensor) -> torch.Tensor: ...  # [B, T] float -> LongTensor [B, F, n_codebooks]

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...  # LongTensor [B, F, K] -> [B, T'] float

    def config(self) -> dict: ...


def locate_weights(ref: str | Path) -> Path:
    """A weights reference as a local path: an existing file/folder, else a registered weights name."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    from hsm_bench import weights

    return weights.resolve(str(ref))


def _wave(wave: torch.Tensor, device: torch.device) -> torch.Tensor:
    if wave.ndim != 2:
        raise ValueError(f"wave must be [batch, samples], got shape {list(wave.shape)}")
    return wave.to(device, torch.float32)


def _fit(wave: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` samples, zero-extended at the end when the decoder gave fewer."""
    return torch.nn.functional.pad(wave[..., :n], (0, max(0, n - wave.shape[-1])))


def _codes(codes: torch.Tensor, n_codebooks: int, codebook_size: int, device: torch.device) -> torch.Tensor:
    if codes.ndim != 3 or codes.shape[-1] != n_codebooks:
        raise ValueError(f"codes must be [batch, frames, {n_codebooks}], got shape {list(codes.shape)}")
    if codes.is_floating_point() or (codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size)):
        raise ValueError(f"codes must be integers in [0, {codebook_size})")
    return codes.to(device, torch.long)


class TFCodecTokens:
    """TF-Codec 6 kbps tokens (:meth:`TFCodec.encode` / :meth:`TFCodec.decode`: 320 samples per token).

    ``weights``: a ``.ckpt`` in the official layout (path or registered name), loaded strictly; ``None``: random
    weights drawn with ``seed`` (for tests and timing). ``arch``: :class:`TFCodec` arguments (default 6 kbps)."""

    def __init__(self, weights: str | Path | None = None, arch: dict | None = None, seed: int = 0,
                 device: str | torch.device = "cpu"):  # fmt: skip
        from systems.hsm_tss.tfcodec import TFCodec, read_tfcodec_checkpoint

        self.arch = dict(arch or {})
        self.weights = None if weights is None else str(weights)
        self.seed = int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = TFCodec(**self.arch)
        if weights is not None:
            path = locate_weights(weights)
            self.model.load_state_dict(read_tfcodec_checkpoint(path, self.model), strict=True)
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        self.sample_rate = self.model.sample_rate
        self.frame_rate = self.model.frame_rate
        self.n_codebooks = self.model.n_codebooks
        self.codebook_size = self.model.codebook_size

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.encode(_wave(wave, self.device))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.decode(_codes(codes, self.n_codebooks, self.codebook_size, self.device))

    def config(self) -> dict:
        out: dict[str, Any] = {"kind": "tfcodec", "arch": dict(self.arch), "weights": self.weights}
        if self.weights is None:
            out["seed"] = self.seed
        return out


class EncodecTokens:
    """EnCodec residual-VQ tokens from a local ``transformers`` folder; ``bandwidth`` in kbps (one of the
    model's ``target_bandwidths``) sets the number of codebooks."""

    def __init__(self, weights: str | Path, bandwidth: float = 6.0, device: str | torch.device = "cpu"):
        from transformers import EncodecModel

        from hsm_bench.weights import WeightsError

        self.weights = str(weights)
        folder = locate_weights(weights)
        try:
            model = EncodecModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder}: cannot load an EncodecModel ({' '.join(str(exc).split())}); "
                               f"point the weights at a transformers EnCodec folder") from None  # fmt: skip
        cfg = model.config
        if cfg.chunk_length_s is not None or cfg.normalize or cfg.audio_channels != 1:
            raise ValueError(f"{folder}: EncodecTokens takes the mono, unchunked, unnormalised EnCodec (24 kHz); "
                             f"this one has chunk_length_s={cfg.chunk_length_s}, normalize={cfg.normalize}, "
                             f"audio_channels={cfg.audio_channels}")  # fmt: skip
        if float(bandwidth) not in [float(b) for b in cfg.target_bandwidths]:
            raise ValueError(f"bandwidth {bandwidth} kbps: this EnCodec offers {cfg.target_bandwidths}")
        self.bandwidth = float(bandwidth)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.sample_rate = int(cfg.sampling_rate)
        self.hop = math.prod(cfg.upsampling_ratios)
        self.frame_rate = self.sample_rate / self.hop
        self.n_codebooks = int(model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth))
        self.codebook_size = int(cfg.codebook_size)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model.encode(_wave(wave, self.device)[:, None], bandwidth=self.bandwidth)
        return out.audio_codes[0].transpose(1, 2)  # [1 chunk, B, K, F] -> [B, F, K]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _codes(codes, self.n_codebooks, self.codebook_size, self.device)
        with torch.inference_mode():
            out = self.model.decode(codes.transpose(1, 2)[None], [None])
        return _fit(out.audio_values[:, 0], codes.shape[1] * self.hop)

    def config(self) -> dict:
        return {"kind": "encodec", "weights": self.weights, "bandwidth": self.bandwidth}


class DacTokens:
    """DAC residual-VQ tokens from a local ``transformers`` folder; the first ``n_quantizers`` codebooks
    (``None``: all of them; 12 for ``dac_16khz``, 6 kbps)."""

    def __init__(self, weights: str | Path, n_quantizers: int | None = 12, device: str | torch.device = "cpu"):
        from transformers import DacModel

        from hsm_bench.weights import WeightsError

        self.weights = str(weights)
        folder = locate_weights(weights)
        try:
            model = DacModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder}: cannot load a DacModel ({' '.join(str(exc).split())}); "
                               f"point the weights at a transformers DAC folder") from None  # fmt: skip
        cfg = model.config
        total = int(cfg.n_codebooks)
        k = total if n_quantizers is None else int(n_quantizers)
        if not 1 <= k <= total:
            raise ValueError(f"n_quantizers {n_quantizers}: this DAC has {total} codebooks")
        self.n_quantizers = None if n_quantizers is None else k
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.sample_rate = int(cfg.sampling_rate)
        self.hop = int(cfg.hop_length)
        self.frame_rate = self.sample_rate / self.hop
        self.n_codebooks = k
        self.codebook_size = int(cfg.codebook_size)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        x = _wave(wave, self.device)
        x = torch.nn.functional.pad(x, (0, -x.shape[-1] % self.hop))  # whole hops, as DAC's preprocess
        with torch.inference_mode():
            out = self.model.encode(x[:, None], n_quantizers=self.n_codebooks)
        return out.audio_codes[:, : self.n_codebooks].transpose(1, 2)  # [B, K, F] -> [B, F, K]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = _codes(codes, self.n_codebooks, self.codebook_size, self.device)
        with torch.inference_mode():
            out = self.model.decode(audio_codes=codes.transpose(1, 2)).audio_values
        return _fit(out, codes.shape[1] * self.hop)

    def config(self) -> dict:
        return {"kind": "dac", "weights": self.weights, "n_quantizers": self.n_quantizers}


def build_codec(config: dict, device: str | torch.device = "cpu") -> TokenCodec:
    """The codec a ``config()`` describes (weights re-read from their name or folder)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind == "tfcodec":
        return TFCodecTokens(weights=cfg.get("weights"), arch=cfg.get("arch"), seed=cfg.get("seed", 0), device=device)
    if kind == "encodec":
        return EncodecTokens(cfg["weights"], bandwidth=cfg.get("bandwidth", 6.0), device=device)
    if kind == "dac":
        return DacTokens(cfg["weights"], n_quantizers=cfg.get("n_quantizers", 12), device=device)
    raise ValueError(f"unknown codec kind {kind!r}: use 'tfcodec', 'encodec' or 'dac'")
