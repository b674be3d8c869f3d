"""LAION-CLAP embedders: the original ``.pt`` checkpoints and transformers' ``ClapModel``.

**Original checkpoints** (``LaionClapMusicSpeechAudioset``: HTS-AT base + RoBERTa,
``music_speech_audioset_epoch_15_esc_89.98.pt``, AudioSep's query encoder and the
CLAPScore of Xiao et al.; ``LaionClap630kAudioset``: HTS-AT tiny + RoBERTa,
``630k-audioset-best.pt``, the ``laion_clap`` pip default). Files are
``{"state_dict": {"module." + key: tensor}, ...}``; the module tree matches
``laion_clap.clap_module.model.CLAP`` (non-fusion), loaded strictly as ``laion_clap`` does
(``text_branch.embeddings.position_ids``, which it deletes, is accepted and checked):

* ``audio_branch.*``: HTS-AT (:mod:`hsm_bench.embedders.htsat`) with LAION's front end:
  48 kHz, STFT 1024 / hop 480, 64 mels 50-14000 Hz (filterbank stored in the checkpoint);
  10-s windows (480000 samples, 1001 frames stretched to 1024).
* ``audio_projection.{0,2}``: Linear(D, 512) - ReLU - Linear(512, 512); ``audio_transform``
  / ``text_transform`` (``sequential.{0,3}``, training-only MLPs), ``logit_scale_a/t``.
* ``text_branch.*``: ``RobertaModel`` built from the local ``roberta-base`` config;
  ``text_projection.{0,2}`` on its ``pooler_output``. Tokenizer: roberta-base BPE, padded /
  truncated to 77 tokens (``laion_clap.hook``).
* Embeddings are L2-normalised (512-d).

``int16=True`` (default) reproduces ``get_audio_embedding_from_data``'s round trip through
int16 (``clip(x, -1, 1) * 32767`` truncated, then ``/ 32767``).

**transformers** (``LaionClapHF``): ``ClapModel`` + ``ClapProcessor`` from a local folder
(``laion/clap-htsat-unfused`` or ``laion/larger_clap_music_and_speech``, registered as
weights ``laion-clap-hf-htsat-unfused`` / ``laion-clap-hf-larger-music-speech``; param
``model``), its own feature extractor on exact 10-s windows (``truncation="rand_trunc"`` is
then a no-op; fused models are refused: their extractor draws ``is_longer`` at random).

Windowing (repeatpad, mean over 10-s windows, or LAION's ``np.random.randint`` crop):
:mod:`hsm_bench.embedders.clap_common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hsm_bench import weights
from hsm_bench.embedders.base import cpu_float32
from hsm_bench.embedders.clap_common import ClapEmbedder, tokenizer_from
from hsm_bench.weights import CheckpointError, check_state_dict, load_torch_file
from hsm_bench.embedders.htsat import HTSAT, HTSAT_BASE, HTSAT_TINY, HTSATConfig

LAION_AUDIO = dict(sample_rate=48000, n_fft=1024, hop=480, mel_bins=64, fmin=50.0, fmax=14000.0)


def int16_round_trip(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1.0, 1.0) * 32767.0).to(torch.int16).to(torch.float32) / 32767.0


class MLPLayers(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.sequential = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.1), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class LaionCLAPModel(nn.Module):
    def __init__(self, htsat: HTSATConfig, text: nn.Module, text_dim: int, joint: int = 512):
        super().__init__()
        self.audio_branch = HTSAT(htsat)
        self.text_branch = text
        self.text_transform = MLPLayers(joint)
        self.text_projection = _mlp(text_dim, joint)
        self.audio_transform = MLPLayers(joint)
        self.audio_projection = _mlp(htsat.num_features, joint)
        self.logit_scale_a = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.logit_scale_t = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(self.audio_branch(wave)["embedding"])

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_branch(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.text_projection(pooled)


class _LaionOriginal(ClapEmbedder):
    sample_rate: ClassVar[int] = 48000
    window_s: ClassVar[float] = 10.0
    pad_mode: ClassVar[str] = "repeatpad"
    crop_rule: ClassVar[str] = "laion"
    embed_dim: ClassVar[int] = 512
    variant: ClassVar[dict] = HTSAT_TINY
    checkpoint_name: ClassVar[str] = ""
    text_weights: ClassVar[str] = "roberta-base"
    text_len: ClassVar[int] = 77

    def __init__(self, int16: bool = True, **params: Any):
        super().__init__(int16=int16, **params)
        self.int16 = bool(int16)

    def htsat_config(self) -> HTSATConfig:
        fields = {**LAION_AUDIO, **self.variant}
        fields.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in self.arch.items() if k in HTSATConfig.__dataclass_fields__})
        return HTSATConfig(**fields)

    def build(self, folder: Path | None = None, text_config: Any = None) -> LaionCLAPModel:
        from transformers import AutoConfig, AutoModel

        if text_config is None and folder is None:
            text, text_dim = nn.Identity(), 1
        else:
            cfg = text_config if text_config is not None else AutoConfig.from_pretrained(str(folder), local_files_only=True)
            if cfg.model_type != "roberta":
                raise weights.WeightsError(f"{self.name}: {folder} holds a {cfg.model_type!r} model, expected 'roberta'")
            text, text_dim = AutoModel.from_config(cfg), int(cfg.hidden_size)
        joint = int(self.arch.get("joint_dim", 512))
        self.embed_dim = joint
        return LaionCLAPModel(self.htsat_config(), text, text_dim, joint)

    def load(self, device: str = "cpu") -> None:
        ckpt = weights.resolve(self.checkpoint_name)
        folder = weights.resolve(self.text_weights)
        model = self.build(folder)
        raw = load_torch_file(ckpt)
        state = None
        if isinstance(raw, dict):
            state = raw["state_dict"] if "state_dict" in raw else (raw if raw and all(map(torch.is_tensor, raw.values())) else None)
        if not isinstance(state, dict) or not state:
            found = list(raw)[:3] if isinstance(raw, dict) else type(raw).__name__
            hint = " (a {'model': ...} file is an MS-CLAP checkpoint: use msclap-2023 / msclap-2022)" if isinstance(raw, dict) and "model" in raw else ""
            raise CheckpointError(f"{ckpt.name} is not a LAION-CLAP checkpoint: expected {{'state_dict': {{...}}}}, found {found}{hint}")
        if next(iter(state)).startswith("module"):  # laion_clap strips the DDP prefix when the first key has it
            state = {k[7:]: v for k, v in state.items()}
        hints = [("audio_encoder.", "This is an MS-CLAP checkpoint: use msclap-2023 / msclap-2022."),
                 ("audio_branch.layers.2.blocks.11.", "This is an HTSAT-base checkpoint (use laion-clap-music-speech-audioset)."),
                 ("audio_branch.patch_embed.mel_conv2d", "This is a fusion checkpoint; only non-fusion models are supported.")]  # fmt: skip
        clean = check_state_dict(model, state, f"LAION-CLAP {self.__class__.__name__}", ckpt.name, hints)
        model.load_state_dict(clean, strict=True)
        self._finish(model, tokenizer_from(folder), device)
        self.checkpoint_sha256 = weights.checkpoint_sha256(self.checkpoint_name)

    def init_random(self, seed: int = 0, text: bool = False) -> None:
        torch.manual_seed(seed)
        folder = weights.resolve(self.text_weights) if text else None
        self._finish(self.build(folder), tokenizer_from(folder) if text else None, self.device)
        self.checkpoint_sha256 = f"random-{seed}"

    def _finish(self, model: nn.Module, tokenizer: Any, device: str) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.loaded = True

    def _embed_windows(self, batch: torch.Tensor) -> torch.Tensor:
        if self.int16:
            batch = int16_round_trip(batch)
        return self.model.encode_audio(batch)

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.text_len, return_tensors="pt")
        return self.model.encode_text(tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))


class LaionClapMusicSpeechAudioset(_LaionOriginal):
    """HTS-AT base + RoBERTa, ``music_speech_audioset_epoch_15_esc_89.98.pt`` (AudioSep, Xiao et al.)."""

    name = "laion-clap-music-speech-audioset"
    version = "1"
    variant = HTSAT_BASE
    checkpoint_name = "laion-clap-music-speech-audioset"
    weights = ("laion-clap-music-speech-audioset", "roberta-base")


class LaionClap630kAudioset(_LaionOriginal):
    """HTS-AT tiny + RoBERTa, ``630k-audioset-best.pt`` (laion_clap's default model)."""

    name = "laion-clap-630k-audioset"
    version = "1"
    variant = HTSAT_TINY
    checkpoint_name = "laion-clap-630k-audioset"
    weights = ("laion-clap-630k-audioset", "roberta-base")


HF_MODELS = {"htsat-unfused": "laion-clap-hf-htsat-unfused", "larger-music-speech": "laion-clap-hf-larger-music-speech"}


class LaionClapHF(ClapEmbedder):
    """transformers ``ClapModel`` from a local folder (``model``: a key of ``HF_MODELS``)."""

    name = "laion-clap-hf"
    version = "1"
    sample_rate = 48000
    window_s = 10.0
    pad_mode = "repeatpad"
    crop_rule = "laion"
    embed_dim = 512
    weights = ("laion-clap-hf-htsat-unfused",)
    text_len = 77
    windows_on_device = False  # the ClapProcessor computes the features on the CPU

    def __init__(self, model: str = "htsat-unfused", int16: bool = False, **params: Any):
        if model not in HF_MODELS:
            raise ValueError(f"laion-clap-hf: unknown model {model!r}; choose from {sorted(HF_MODELS)}")
        super().__init__(model=model, int16=int16, **params)
        self.model_key = model
        self.int16 = bool(int16)

    def required_weights(self) -> list[str]:
        return [HF_MODELS[self.model_key]]

    def load(self, device: str = "cpu") -> None:
        from transformers import ClapModel, ClapProcessor

        name = HF_MODELS[self.model_key]
        folder = weights.resolve(name)
        model = ClapModel.from_pretrained(str(folder), local_files_only=True)
        if getattr(model.config.audio_config, "enable_fusion", False):
            raise weights.WeightsError(f"{folder}: fused CLAP models are not supported (their feature extractor is random)")
        processor = ClapProcessor.from_pretrained(str(folder), local_files_only=True)
        fe = processor.feature_extractor
        if int(fe.sampling_rate) != self.sample_rate or int(fe.nb_max_samples) != self.window:
            raise weights.WeightsError(
                f"{folder}: feature extractor takes {fe.nb_max_samples} samples at {fe.sampling_rate} Hz, "
                f"expected {self.window} at {self.sample_rate}"
            )
        self.model = model.eval().to(device)
        self.processor = processor
        self.embed_dim = int(model.config.projection_dim)
        self.device = device
        self.loaded = True
        weights_file = next((p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.exists()), None)
        self.checkpoint_sha256 = weights.file_sha256(weights_file) if weights_file else None

    def _embed_windows(self, batch: torch.Tensor) -> torch.Tensor:
        if self.int16:
            batch = int16_round_trip(batch)
        with cpu_float32():
            feats = self.processor.feature_extractor(
                [w.numpy() for w in batch], sampling_rate=self.sample_rate, return_tensors="pt",
                truncation="rand_trunc", padding="repeatpad",
            )  # fmt: skip
        out = self.model.get_audio_features(
            input_features=feats["input_features"].to(self.device), is_longer=feats["is_longer"].to(self.device)
        )
        return getattr(out, "pooler_output", out)

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        tok = self.processor.tokenizer(texts, padding="max_length", truncation=True, max_length=self.text_len, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device))
        return getattr(out, "pooler_output", out)
