"""AudioSep (Liu et al. 2023, Audio-AGI/AudioSep, MIT): text-queried separation with ResUNet30.

Two registered systems share this code:

* ``audiosep``: ``audiosep_base_4M_steps.ckpt`` at 32 kHz, STFT 2048 / hop 320
  (``models/resunet.py`` L271-272, README L27);
* ``audiosep_dcase16k``: the DCASE 2024 task 9 baseline (Audio-AGI/dcase2024_task9_baseline,
  Zenodo record 10887460) at 16 kHz, STFT 1024 / hop 160; otherwise the same network, query
  encoder and loader (that repository's ``models/resunet.py`` differs only in those two numbers).

Inference follows the official evaluators (``evaluation/evaluate_*.py``, ``dcase_evaluator.py``
L93-107): the whole clip in one pass (``ss_model(input_dict)``, no chunking; the README's
``use_chunk`` is a memory-saving option outside the protocol), each item at its own length (zero
padding to a batch's longest item would change the STFT frames and, through ``bn0``, the
network's input), float output as the model returns it (``pipeline.py`` rounds to int16 on
saving; not reproduced). Extraction only: the harness turns a "remove" item into mixture minus
the extraction of the described sound.

Query text: the evaluators pass the caption (AudioCaps, Clotho, DCASE) or the class label
(AudioSet display names, ESC-50, MUSIC, VGGSound) verbatim, with no template
(``evaluate_audiocaps.py`` L77-80, ``evaluate_clotho.py`` L72, ``evaluate_audioset.py`` L99,
``evaluate_esc50.py`` L73, ``evaluate_music.py`` L80, ``evaluate_vggsound.py`` L70/L81,
``dcase_evaluator.py`` L67/L93-97); ``caption_template`` / ``label_template`` (default ``"{}"``)
exist for studies of other prompts. The text path is :mod:`systems.audiosep_query`.

Weights and loading (``utils.py`` ``load_ss_model`` L356-400, ``clap_encoder.py`` L10-36,
``CLAP/open_clip/factory.py`` L141-153): the query encoder is first built from the LAION-CLAP file
(loaded strictly, ``{"state_dict": {"module." + key}}``), then ``AudioSep.load_from_checkpoint(...,
strict=False)`` overwrites every ``query_encoder.model.*`` tensor the Lightning checkpoint holds.
Here the CLAP file is checked against the full HTSAT-base + RoBERTa layout (built on the meta
device: the audio tower is never run), the Lightning file's ``state_dict`` must hold every
``ss_model.*`` tensor (a missing one would leave random weights) and may hold any subset of the
CLAP keys, nothing else; the text tensors in use are the CLAP file's, replaced by the Lightning
file's where it has them. RoBERTa's config and tokenizer come from the ``roberta-base`` folder.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.errors import ConfigError
from hsm_bench.weights import CheckpointError, check_state_dict, load_torch_file

CLAP_WEIGHTS = "laion-clap-music-speech-audioset"
TEXT_WEIGHTS = "roberta-base"
TEXT_PREFIXES = ("text_branch.", "text_projection.")
ARCH_KEYS = ("widths", "clap", "text")
PASS_SECONDS = 20.0  # audio per forward pass (a longer item runs alone, whole)


def _template(value: Any, key: str) -> str:
    """A template with exactly one ``{}`` where the caption or label goes."""
    text = str(value)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError:
        fields = None
    if fields != [""]:
        raise ConfigError(f"system.params.{key}={text!r}: use exactly one '{{}}' where the query text goes (default '{{}}')")
    return text


class AudioSep(System):
    name: ClassVar[str] = "audiosep"
    sample_rate: ClassVar[int] = 32000
    tasks: ClassVar[tuple[str, ...]] = ("extract",)
    version: ClassVar[str] = "1"
    n_fft: ClassVar[int] = 2048
    hop: ClassVar[int] = 320
    separator_weights: ClassVar[str] = "audiosep-base-4m"
    weights: ClassVar[tuple[str, ...]] = ("audiosep-base-4m", CLAP_WEIGHTS, TEXT_WEIGHTS)

    def __init__(self, caption_template: str = "{}", label_template: str = "{}", arch: dict | None = None):
        """``arch`` (tests, benchmarks): ``widths`` (the 7 ResUNet30 widths), ``clap`` (the
        LAION-CLAP embedder's architecture overrides, ``joint_dim`` included) and ``text``
        (RoBERTa config overrides for :meth:`load_random`; :meth:`load` reads the config from the
        ``roberta-base`` folder); a published checkpoint needs the default."""
        super().__init__(caption_template=caption_template, label_template=label_template, arch=arch)
        self.templates = {"caption": _template(caption_template, "caption_template"),
                          "label": _template(label_template, "label_template")}  # fmt: skip
        self.arch = dict(arch or {})
        unknown = sorted(set(self.arch) - set(ARCH_KEYS))
        if unknown:
            raise ConfigError(f"system.params.arch: unknown key(s) {', '.join(unknown)}; known: {', '.join(ARCH_KEYS)}")
        self.model: nn.Module | None = None
        self.text: nn.Module | None = None
        self.tokenizer: Any = None
        self.random_seed: int | None = None
        self._embeddings: dict[str, torch.Tensor] = {}

    # -- architecture
    @property
    def joint_dim(self) -> int:
        return int(self.arch.get("clap", {}).get("joint_dim", 512))

    def network(self) -> nn.Module:
        from systems.resunet30 import WIDTHS, ResUNet30

        return ResUNet30(self.n_fft, self.hop, self.arch.get("widths", WIDTHS), self.joint_dim)

    def clap_layout(self, text_config: Any) -> nn.Module:
        """The full LAION-CLAP module tree (HTSAT-base + RoBERTa) on the meta device: names and
        shapes for the key checks, no memory."""
        from hsm_bench.embedders.laion_clap import LaionClapMusicSpeechAudioset

        with torch.device("meta"):
            return LaionClapMusicSpeechAudioset(arch=self.arch.get("clap")).build(None, text_config)

    # -- loading
    def load(self, device: str | torch.device = "cpu") -> None:
        from transformers import AutoConfig

        from hsm_bench.embedders.clap_common import tokenizer_from
        from systems.audiosep_query import QueryTextEncoder, check_text_config

        sep_path = weights.resolve(self.separator_weights)
        clap_path = weights.resolve(CLAP_WEIGHTS)
        folder = weights.resolve(TEXT_WEIGHTS)
        text_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        check_text_config(text_config, folder)
        layout = self.clap_layout(text_config)
        clap_state = self._clap_state(clap_path, layout)
        sep_state = self._separator_state(sep_path)

        net = self.network()
        holder = nn.Module()
        holder.ss_model = net
        holder.query_encoder = nn.Module()
        holder.query_encoder.model = layout
        clean = check_state_dict(holder, sep_state, f"Lightning AudioSep ({self.name})", sep_path.name,
                                 hints=self._hints(), optional_prefixes=("query_encoder.",))  # fmt: skip
        net.load_state_dict({k[len("ss_model.") :]: v for k, v in clean.items() if k.startswith("ss_model.")}, strict=True)

        text = QueryTextEncoder(text_config, self.joint_dim)
        state = {k: v for k, v in clap_state.items() if k.startswith(TEXT_PREFIXES)}
        prefix = "query_encoder.model."
        override = {k[len(prefix) :]: v for k, v in sep_state.items() if k.startswith(prefix)}
        state.update({k: v for k, v in override.items() if k.startswith(TEXT_PREFIXES)})
        text.load_state_dict(check_state_dict(text, state, "LAION-CLAP text tower", clap_path.name), strict=True)
        self._finish(net, text, tokenizer_from(folder), device)

    def _clap_state(self, path: Path, layout: nn.Module) -> dict[str, torch.Tensor]:
        raw = load_torch_file(path)
        state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
        if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
            found = list(raw)[:3] if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{path.name} is not a LAION-CLAP checkpoint: expected {{'state_dict': {{...}}}}, found {found}")
        if next(iter(state)).startswith("module"):  # the official loader strips DDP prefixes when the first key has one
            state = {k[7:]: v for k, v in state.items()}
        hints = [("ss_model.", f"This is an AudioSep checkpoint: pass it as --weights {self.separator_weights}=PATH."),
                 ("audio_branch.", ("AudioSep's query encoder is LAION-CLAP HTS-AT base + RoBERTa "
                                    "(music_speech_audioset_epoch_15_esc_89.98.pt)."))]  # fmt: skip
        return check_state_dict(layout, state, "LAION-CLAP HTSAT-base (AudioSep's query encoder)", path.name, hints)

    def _separator_state(self, path: Path) -> dict[str, torch.Tensor]:
        raw = load_torch_file(path)
        state = raw.get("state_dict") if isinstance(raw, dict) else None
        if not isinstance(state, dict) or not state:
            found = list(raw)[:3] if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{path.name} is not an AudioSep Lightning checkpoint: expected {{'state_dict': "
                                  f"{{'ss_model.*', 'query_encoder.*'}}}}, found {found}")  # fmt: skip
        bins = state.get("ss_model.base.bn0.running_mean")
        if torch.is_tensor(bins) and bins.shape[0] != self.n_fft // 2 + 1:
            other = {513: "audiosep_dcase16k (16 kHz, 1024-point STFT)", 1025: "audiosep (32 kHz, 2048-point STFT)"}
            use = other.get(int(bins.shape[0]), f"a {2 * (bins.shape[0] - 1)}-point STFT model")
            raise CheckpointError(f"{path.name} has {bins.shape[0]} frequency bins, {self.name} takes "
                                  f"{self.n_fft // 2 + 1}: it belongs to {use}")  # fmt: skip
        return state

    def _hints(self) -> list[tuple[str, str]]:
        clap = f"This is a LAION-CLAP checkpoint: pass it as --weights {CLAP_WEIGHTS}=PATH."
        return [("module.audio_branch.", clap), ("audio_branch.", clap)]

    def load_random(self, device: str | torch.device = "cpu", seed: int = 0) -> None:
        """Random weights at full size (or ``arch``): ResUNet30 and the RoBERTa-base text tower
        (its architecture is known, so it is built offline at full size), with a tokenizer trained
        here on a few sentences (:func:`systems.random_init.local_roberta_tokenizer`). For
        timing; ready to :meth:`separate`."""
        from transformers import RobertaConfig

        from systems.audiosep_query import ROBERTA_BASE, QueryTextEncoder
        from systems.random_init import local_roberta_tokenizer

        torch.manual_seed(seed)
        net = self.network()
        text = QueryTextEncoder(RobertaConfig(**{**ROBERTA_BASE, **self.arch.get("text", {})}), self.joint_dim)
        self._finish(net, text, local_roberta_tokenizer(), device)
        self.random_seed = int(seed)

    def _finish(self, net: nn.Module, text: nn.Module, tokenizer: Any, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.model = net.eval().to(self.device)
        self.text = text.eval().to(self.device)
        self.tokenizer = tokenizer
        self._embeddings = {}

    # -- separation
    def query_text(self, caption: str, style: str = "caption") -> str:
        return self.templates.get(style, self.templates["caption"]).format(caption)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """``[N, joint_dim]`` query embeddings, computed once per distinct text."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._embeddings]
        if todo:
            with torch.inference_mode():
                out = self.text.embed(self.tokenizer, todo)
            self._embeddings.update(zip(todo, out))
        return torch.stack([self._embeddings[t] for t in texts])

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        if self.model is None:
            self.load(self.device)
        styles = list(batch.query_style) or ["caption"] * len(batch)
        condition = self.embed([self.query_text(c, s) for c, s in zip(batch.caption, styles)])
        lengths = [int(n) for n in batch.lengths]
        shortest = self.n_fft // 2 + 1  # the STFT reflects n_fft / 2 samples at each end
        if min(lengths) < shortest:
            raise ValueError(f"{self.name} needs at least {shortest} samples ({shortest / self.sample_rate * 1000:.0f} ms) per item")
        out = torch.zeros_like(batch.mixture)
        for n in sorted(set(lengths)):
            rows = [k for k, m in enumerate(lengths) if m == n]
            # activations grow with the audio in one pass (about 2 GB per 10 s at 32 kHz)
            step = max(1, int(PASS_SECONDS * self.sample_rate) // n)
            for i in range(0, len(rows), step):
                part = rows[i : i + step]
                out[part, :, :n] = self.model(batch.mixture[part, :, :n], condition[part])
        return out

    # -- provenance
    def _digest(self, name: str) -> str | None:
        if self.random_seed is not None:
            return f"random-{self.random_seed}"
        return None if weights.missing([name]) else weights.checkpoint_sha256(name)

    def checkpoint_sha256(self) -> str | None:
        return self._digest(self.separator_weights)

    def info(self) -> dict[str, Any]:
        clap = self._digest(CLAP_WEIGHTS)
        return {
            **super().info(),
            "stft": {"n_fft": self.n_fft, "hop": self.hop, "window": "hann (periodic)", "center": True, "pad_mode": "reflect"},
            "inference": "whole clip, one pass per item at its own length",
            "text_encoder": {
                "model": "LAION-CLAP HTSAT-base + RoBERTa, text tower (pooler output -> text_projection -> L2 norm)",
                "weights": CLAP_WEIGHTS,
                "sha256": clap,
                "override": "query_encoder.model.* tensors of the separator checkpoint",
                "tokenizer": f"{TEXT_WEIGHTS}, padding='max_length', truncation, max_length=512",
            },
            "query_template": dict(self.templates),
        }


class AudioSepDCASE16k(AudioSep):
    """The DCASE 2024 task 9 baseline checkpoint (``audiosep,baseline-16k,step=200000.ckpt``)."""

    name: ClassVar[str] = "audiosep_dcase16k"
    sample_rate: ClassVar[int] = 16000
    n_fft: ClassVar[int] = 1024
    hop: ClassVar[int] = 160
    separator_weights: ClassVar[str] = "audiosep-dcase2024-baseline-16k"
    weights: ClassVar[tuple[str, ...]] = ("audiosep-dcase2024-baseline-16k", CLAP_WEIGHTS, TEXT_WEIGHTS)
