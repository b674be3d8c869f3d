"""CLIPSep-NIT (Dong, Takahashi, Mitsufuji, McAuley, Berg-Kirkpatrick, ICLR 2023; sony/CLIPSep).

A U-Net on the log-frequency magnitude spectrogram whose output channels are weighted by a
query from CLIP ViT-B/32's text embedding; a sigmoid mask on the mixture magnitude, inverted
with the mixture phase. Extraction only: the harness answers "remove" items with the mixture
minus the extraction.

Inference follows the official ``clipsep/infer.py`` (sony/CLIPSep 22b6f91), one clip at a
time: tiling of the whole clip to a multiple of 65535 samples (no chunking), librosa 0.9.2's
STFT, the query head only (the noise heads of noise-invariant training are loaded, not run),
the clip to [-1, 1] of ``utils.istft_reconstruction``. The mask is by default the soft sigmoid
mask with which ``evaluate.py`` computes the paper's numbers (``--binary`` off, as its README
commands run it); ``mask="binary"`` thresholds it as ``infer.py`` does (the experiment was
trained with binary mask targets, ``binary_mask: true`` in its train-args). The query texts
follow the paper's evaluation (``clipsep/evaluate.py`` with ``--prompt_ens``; see
systems/clipsep_text.py).

Weights: ``clipsep-nit`` (``best_model.pt``, Google Drive only, with the experiment's
``train-args.json`` beside it or one folder up when available, or the experiment folder
itself) and ``clip-vit-base-patch32`` (a transformers folder; its text tower is used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.weights import CheckpointError

SEPARATOR = "clipsep-nit"
TEXT = "clip-vit-base-patch32"
CHECKPOINT = "best_model.pt"
TRAIN_ARGS = "train-args.json"
# train-args entries infer.py copies into its run that this implementation fixes (the
# experiment published is the only one there is, and the model class asserts the last two)
FIXED_ARGS = {"audio_rate": 16000, "n_fft": 1024, "hop_len": 256, "win_len": 1024, "n_mix": 2, "log_freq": True,
              "binary_mask": True}  # fmt: skip
MODEL_NAMES = ("clipsepnit", "clippit4")  # infer.py's names of CLIPPITSepV4


def experiment_files(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint, train-args.json or None) for a checkpoint file or an experiment folder."""
    path = Path(path)
    if path.is_dir():
        for pt in (path / "checkpoints" / CHECKPOINT, path / CHECKPOINT):
            if pt.is_file():
                args = path / TRAIN_ARGS
                return pt, args if args.is_file() else None
        raise CheckpointError(f"{path} holds neither checkpoints/{CHECKPOINT} nor {CHECKPOINT}: point "
                              f"--weights {SEPARATOR}= at the CLIPSep-NIT experiment folder or its {CHECKPOINT}")  # fmt: skip
    for args in (path.parent / TRAIN_ARGS, path.parent.parent / TRAIN_ARGS):
        if args.is_file():
            return path, args
    return path, None


class CLIPSep(System):
    """CLIPSep-NIT at 16 kHz: whole clips, tiled; CLIP ViT-B/32 text queries.

    Parameters: ``channels`` / ``layers`` / ``ngf`` (U-Net output channels, levels, base
    width: 32 / 7 / 64 in the published model; checked against its train-args), ``mask``
    ("soft": the sigmoid, what evaluate.py computes the paper's numbers with by default,
    ``--binary`` off at L69-74; "binary": sigmoid > ``threshold`` after unwarping, as infer.py),
    ``caption_template`` and ``label_template`` (a template with one ``{}``, several joined
    by ``|`` whose embeddings are averaged, or "ensemble": evaluate.py's five label prompts).
    """

    name: ClassVar[str] = "clipsep"
    sample_rate: ClassVar[int] = 16000
    tasks: ClassVar[tuple[str, ...]] = ("extract",)
    version: ClassVar[str] = "1"
    weights: ClassVar[tuple[str, ...]] = (SEPARATOR, TEXT)

    def __init__(self, channels: int = 32, layers: int = 7, ngf: int = 64, mask: str = "soft", threshold: float = 0.5,
                 caption_template: str = "a photo of {}", label_template: str = "ensemble"):  # fmt: skip
        from systems.clipsep_text import templates

        super().__init__(channels=channels, layers=layers, ngf=ngf, mask=mask, threshold=threshold,
                         caption_template=caption_template, label_template=label_template)  # fmt: skip
        if mask not in ("binary", "soft"):
            raise ValueError(f"mask={mask!r}: use 'binary' (infer.py) or 'soft' (evaluate.py without --binary)")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold={threshold}: a probability strictly between 0 and 1")
        if int(layers) < 5 or int(channels) < 1 or int(ngf) < 1:
            raise ValueError(f"channels={channels}, layers={layers}, ngf={ngf}: positive, with at least 5 U-Net levels")
        # `channels` names the U-Net's output maps (train-args); System.channels is the audio's
        self.arch = {"channels": int(channels), "layers": int(layers), "ngf": int(ngf)}
        self.mask, self.threshold = mask, float(threshold)
        self.forms = {"caption": templates(caption_template), "label": templates(label_template)}
        self.net = self.text_model = self.tokenizer = None
        self._random_seed: int | None = None

    # -- weights --------------------------------------------------------------------------
    def _files(self) -> tuple[Path, Path | None]:
        return experiment_files(weights.resolve(SEPARATOR))

    def train_args(self) -> dict[str, Any] | None:
        """The entries of the experiment's train-args.json that shape the model, after checking
        them against this system's parameters (None when the file is not beside the checkpoint)."""
        _, path = self._files()
        if path is None:
            return None
        try:
            args = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable train-args.json ({exc})") from exc
        if not isinstance(args, dict):
            raise CheckpointError(f"{path}: not a train-args.json (a JSON object)")
        model = args.get("image_model", "clip")  # infer.py's default for files that lack it
        if model not in MODEL_NAMES:
            raise CheckpointError(f"{path}: image_model {model!r} is not CLIPSep-NIT ({MODEL_NAMES[0]}); "
                                  f"hsm-bench implements only the CLIPSep-NIT experiment")  # fmt: skip
        wanted = {**FIXED_ARGS, "channels": self.arch["channels"], "layers": self.arch["layers"]}
        absent = [k for k in wanted if k not in args]
        if absent:
            raise CheckpointError(f"{path} lacks {', '.join(absent)} (infer.py reads them): not a CLIPSep train-args.json")
        fixed = [f"{k}={args[k]!r} (hsm-bench implements {v!r})" for k, v in FIXED_ARGS.items() if args[k] != v]
        if fixed:
            raise CheckpointError(f"{path} describes a model system {self.name} does not implement: {', '.join(fixed)}")
        params = [k for k in ("channels", "layers") if args[k] != wanted[k]]
        if params:
            said = ", ".join(f"{k}={args[k]!r}" for k in params)
            fix = " ".join(f"system.params.{k}={args[k]}" for k in params)
            raise CheckpointError(f"{path} says {said}, the system is set to "
                                  f"{', '.join(f'{k}={wanted[k]}' for k in params)}: add {fix} to the run")  # fmt: skip
        return {"image_model": model, **{k: args[k] for k in wanted}}

    def checkpoint_sha256(self) -> str | None:
        if self._random_seed is not None:
            return f"random-{self._random_seed}"
        return weights.file_sha256(self._files()[0])

    def text_encoder_sha256(self) -> str | None:
        if self._random_seed is not None:
            return f"random-{self._random_seed}"
        return weights.checkpoint_sha256(TEXT)

    # -- loading --------------------------------------------------------------------------
    def _build(self) -> torch.nn.Module:
        from systems.clipsep_net import CLIPSepNIT

        return CLIPSepNIT(**self.arch)

    def load(self, device: str | torch.device = "cpu") -> None:
        from hsm_bench.weights import check_state_dict, load_torch_file
        from systems.clipsep_net import DataParallelKeys
        from systems.clipsep_text import load_text_encoder

        self.device = torch.device(device)
        self.train_args()  # a mismatch fails before any tensor is read
        pt, _ = self._files()
        state = load_torch_file(pt)
        if not isinstance(state, dict):
            raise CheckpointError(f"{pt.name} is not a CLIPSep-NIT checkpoint: expected a state dict, found "
                                  f"{type(state).__name__}")  # fmt: skip
        net = self._build()
        wrapped = DataParallelKeys(net)  # infer.py loads the file into torch.nn.DataParallel(model), strictly
        hints = [("sound_net.", "Its keys lack the 'module.' prefix of the official DataParallel state dict.")]
        wrapped.load_state_dict(check_state_dict(wrapped, state, "CLIPSep-NIT", pt.name, hints))
        text_model, tokenizer = load_text_encoder(weights.resolve(TEXT))
        self._finish(net, text_model, tokenizer)

    def load_random(self, device: str | torch.device = "cpu", seed: int = 0, text_config: dict | None = None) -> None:
        """The separator at the configured size (full size by default) with random weights and
        BatchNorm statistics, and CLIP ViT-B/32's text tower at full size with random weights
        (``text_config``: CLIPTextConfig entries to change, for quick tests). The tokenizer is
        built here (CLIP's byte alphabet, no merges: words are spelled out by character), since
        the real vocabulary ships only with the Hub folder."""
        from systems.clipsep_net import randomise
        from systems.clipsep_text import byte_level_tokenizer, random_text_model

        self.device = torch.device(device)
        tokenizer = byte_level_tokenizer()
        text_model = random_text_model(tokenizer, seed, **(text_config or {}))
        self._finish(randomise(self._build(), seed), text_model, tokenizer)
        self._random_seed = seed

    def _finish(self, net: torch.nn.Module, text_model: Any, tokenizer: Any) -> None:
        self.net = net.eval().to(self.device)
        self.text_model = text_model.eval().to(self.device)
        self.tokenizer = tokenizer
        self._random_seed = None

    # -- inference ------------------------------------------------------------------------
    def query_prompts(self, text: str, style: str) -> list[str]:
        from systems.clipsep_text import prompts

        return prompts(text, self.forms["label" if style == "label" else "caption"])

    def query_embedding(self, text: str, style: str) -> torch.Tensor:
        """``[512]``: the mean of the prompts' embeddings, encoded together as evaluate.py does."""
        from systems.clipsep_text import encode

        return encode(self.text_model, self.tokenizer, self.query_prompts(text, style), self.device).mean(dim=0)

    def extract(self, mix: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """One clip ``[N]`` (float32, 16 kHz) and its ``[512]`` query -> ``[N]`` extraction."""
        from systems.clipsep_signal import masked_istft, stft, tile, unwarp, warp

        spec = stft(tile(mix.float()))
        mag, phase = spec.abs(), spec.angle()
        log_mag = torch.log(warp((mag + 1e-10)[None, None]))
        prob = unwarp(torch.sigmoid(self.net.mask_logits(log_mag, query[None])))[0, 0]
        mask = (prob > self.threshold).float() if self.mask == "binary" else prob
        return masked_istft(mag, mask, phase, mix.shape[-1])

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError("CLIPSep: call load() (or load_random()) before separate()")
        styles = batch.query_style or ["caption"] * len(batch)
        out = torch.zeros_like(batch.mixture)
        for b in range(len(batch)):  # one clip at a time, as infer.py: no output depends on its batch
            n = int(batch.lengths[b])
            query = self.query_embedding(batch.caption[b], styles[b])
            out[b, 0, :n] = self.extract(batch.mixture[b, 0, :n], query)
        return out

    def info(self) -> dict[str, Any]:
        random = self._random_seed is not None
        return {
            **super().info(),
            "text_encoder": {
                "weights": TEXT,
                "model": "CLIP ViT-B/32 text transformer + text projection (transformers "
                "CLIPTextModelWithProjection), 77 tokens, unnormalised 512-d output",
                "checkpoint_sha256": self.text_encoder_sha256(),
            },
            "query_template": {
                "caption": list(self.forms["caption"]),
                "label": list(self.forms["label"]),
                "several": "mean of the prompts' unnormalised embeddings",
            },
            "inference": {
                "input": "whole clip tiled to 65535 * (N // 65535 + 1) samples, clipped to [-1, 1]",
                "stft": "periodic Hann 1024, hop 256, centred with zero padding (librosa 0.9.2), float64 -> complex64",
                "mask": f"{self.mask}: sigmoid of the query head on 256 log-frequency rows, unwarped to 513 bins"
                + (f", > {self.threshold}" if self.mask == "binary" else ""),
                "output": "mixture phase, float64 ISTFT, clipped to [-1, 1], first N samples",
            },
            "train_args": None if random else self.train_args(),
        }
