"""BiModalSep (Mahmud, Amizadeh, Koishida, Marculescu, "Weakly-supervised Audio Separation via
Bi-modal Semantic Similarity", ICLR 2024; microsoft/BiModalAudioSeparation at 7b835cf, MIT),
run from its released ``model_weights.pth.tar`` as the official code runs it.

Model (official ``NetWrapper``, hyper-parameters of ``scripts/demo.sh``), at 16 kHz:

* torchlibrosa STFT, n_fft 1022, hop 256, periodic Hann, centred with reflect padding
  (:mod:`systems.bimodalsep_stft`), magnitude ``|X|`` and phase; the U-Net sees ``log1p|X|``.
* Query: LAION-CLAP HTSAT-base ``music_audioset_epoch_15_esc_90.14.pt`` (RoBERTa-base text
  branch). The roberta-base tokenizer pads / truncates to 77 tokens; the text branch gives
  the L2-normalised 512-d CLAP embedding and RoBERTa's ``last_hidden_state`` (77 x 768).
* ``sigmoid(Linear(512 -> 32)(embedding))``: the query vector; the hidden states condition
  the U-Net's attention blocks (:mod:`systems.bimodalsep_unet`, 7 levels, ngf 64).
* Mask ``sigmoid(InnerProd(query vector, U-Net features))`` (soft), times ``|X|``, inverse
  STFT with the mixture's phase.

Inference protocol (``demo.py`` ``separate_audio``): the waveform is clipped to [-1, 1],
zero-padded to a whole number of 131070-sample chunks (8.19 s; a 512 x 512 spectrogram) and
the chunks are separated independently, without overlap, then the padding is cut. The
official demo pads a clip whose length is already a multiple with one more all-zero chunk;
chunks do not interact, so that chunk is not computed here. The model runs in evaluation
mode, as ``main.py``'s ``evaluate`` runs it (``model.eval()``, L705): ``demo.py`` never
calls ``eval()``, so its BatchNorm layers would use the statistics of each chunk and its
RoBERTa dropout would draw at random. No output normalisation: the raw float waveform.

Query text (the official evaluation data loaders): a caption as it is
(``dataset/audiocaps.py`` L172), a class label as ``"The sound of {label}"`` with
underscores turned into spaces (``dataset/music.py`` L156-160, ``dataset/vggsound.py``
L159-163). The model only extracts: the harness answers "remove" items with the mixture
minus the extraction of the described sound.

Checkpoint: ``{"state_dict": {...}, "epoch": ...}`` whose keys carry the DDP ``module.``
prefix (a file saved from the bare ``NetWrapper``, without it, is accepted too), loaded by
the official code with ``strict=False`` after the frozen CLAP was loaded from its own file.
Accepted here: every key of ``net_sound``, ``net_synthesizer`` and ``net_clap.fc`` (required;
BatchNorm ``num_batches_tracked`` may be absent), and, optionally, the STFT kernels
(``stft.*``, ``istft.*``) and the frozen CLAP (``net_clap.model.model.*``, the LAION-CLAP
key set). Tensors present are used, as the official load does (its CLAP copy overrides the
CLAP file's text branch); anything else is rejected with the keys named.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.embedders.htsat import HTSAT_BASE
from hsm_bench.embedders.laion_clap import _LaionOriginal
from hsm_bench.errors import ConfigError
from systems.bimodalsep_stft import ConvISTFT, ConvSTFT, magphase
from systems.bimodalsep_unet import CondAttUNet, InnerProd

# scripts/demo.sh and arguments.py; `clap` holds LAION-CLAP architecture overrides (tests)
ARCH = dict(ngf=64, out_channels=32, num_downs=7, res_layers=1, cond_blocks=1, heads=8, n_fft=1022, hop=256,
            clap={})  # fmt: skip
TEXT_LEN = 77
LABEL_TEMPLATE = "The sound of {label}"
CAPTION_TEMPLATE = "{caption}"
# roberta-base's config, for a full-size text branch with random weights (load_random)
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2)  # fmt: skip
OPTIONAL = ("net_clap.model.", "stft.", "istft.")  # may be absent from a separator file


def chunk_samples(n_fft: int, hop: int) -> int:
    """The official chunk, 131070 = 512 * 256 - 2 samples: as many STFT frames as bins."""
    return (n_fft // 2 + 1) * hop - 2


class ClapText(nn.Module):
    """The text side of a LAION-CLAP model: ``text_branch`` (RoBERTa) and ``text_projection``."""

    def __init__(self, text_branch: nn.Module, text_projection: nn.Module):
        super().__init__()
        self.text_branch = text_branch
        self.text_projection = text_projection


class ClapConditioning(nn.Module):
    """``net_clap``: the frozen CLAP under ``model.model`` (as the official ``CustomCLAP``
    holds a ``CLAP_Module`` holding the model) and the trained ``fc`` to the U-Net width."""

    def __init__(self, clap: nn.Module, clap_dim: int, channels: int):
        super().__init__()
        self.model = nn.Module()
        self.model.model = clap
        self.fc = nn.Linear(clap_dim, channels)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised CLAP text embeddings ``[B, D]`` and RoBERTa's last hidden states ``[B, L, H]``."""
        clap = self.model.model
        out = clap.text_branch(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(clap.text_projection(out.pooler_output), dim=-1), out.last_hidden_state


class BiModalSepNet(nn.Module):
    """The official ``NetWrapper`` at inference, with its module names."""

    def __init__(self, arch: dict, clap: nn.Module, clap_dim: int, text_dim: int):
        super().__init__()
        ch = arch["out_channels"]
        self.net_sound = CondAttUNet(out_ch=ch, ngf=arch["ngf"], num_downs=arch["num_downs"],
                                     res_layers=arch["res_layers"], cond_blocks=arch["cond_blocks"],
                                     heads=arch["heads"], cond_dim=text_dim)  # fmt: skip
        self.net_clap = ClapConditioning(clap, clap_dim, ch)
        self.net_synthesizer = InnerProd(ch)
        self.stft = ConvSTFT(arch["n_fft"], arch["hop"])
        self.istft = ConvISTFT(arch["n_fft"], arch["hop"])

    def mask(self, mag: torch.Tensor, embed: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Soft mask ``[N, 1, F, T]`` for magnitudes ``[N, 1, F, T]`` and the query."""
        feats = self.net_sound(torch.log1p(mag), hidden)
        return torch.sigmoid(self.net_synthesizer(torch.sigmoid(self.net_clap.fc(embed)), feats))

    def forward(self, chunks: torch.Tensor, embed: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Separate ``[N, L]`` chunks, each with its query (``embed [N, D]``, ``hidden [N, 77, H]``)."""
        real, imag = self.stft(chunks)
        mag, cos, sin = magphase(real, imag)
        mag = mag.transpose(-1, -2)  # [N, 1, F, T], frequency first as the U-Net expects
        est = (mag * self.mask(mag, embed, hidden)).transpose(-1, -2)
        return self.istft(est * cos, est * sin, chunks.shape[-1])


class LaionClapMusicAudioset(_LaionOriginal):
    """LAION-CLAP HTSAT-base ``music_audioset_epoch_15_esc_90.14.pt`` through hsm-bench's LAION
    embedder (strict loading, ``roberta-base`` config and tokenizer)."""

    name = "laion-clap-music-audioset"
    variant = HTSAT_BASE
    checkpoint_name = "laion-clap-music-audioset"
    weights = ("laion-clap-music-audioset", "roberta-base")


def separator_state(raw: Any, source: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an official checkpoint, without the DDP ``module.`` prefix."""
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict) or not raw["state_dict"]:
        found = sorted(map(str, raw))[:4] if isinstance(raw, dict) else type(raw).__name__
        raise weights.CheckpointError(
            f"{source} is not a BiModalSep checkpoint: expected {{'state_dict': {{...}}, 'epoch': ...}} "
            f"(model_weights.pth.tar), found {found}"
        )
    state = raw["state_dict"]
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


class BiModalSep(System):
    """BiModalSep, extraction only (see the module docstring).

    Params: ``label_template`` (the query for label-style items; the official
    ``"The sound of {label}"``), ``chunks_per_pass`` (8.19-s chunks per forward pass: memory
    against speed, the numbers only move at float32 rounding level), ``arch`` (architecture
    overrides for tests and benchmarks; the released checkpoint needs the defaults).
    """

    name: ClassVar[str] = "bimodalsep"
    sample_rate: ClassVar[int] = 16000
    tasks: ClassVar[tuple[str, ...]] = ("extract",)
    version: ClassVar[str] = "1"
    weights: ClassVar[tuple[str, ...]] = ("bimodalsep", "laion-clap-music-audioset", "roberta-base")

    def __init__(self, label_template: str = LABEL_TEMPLATE, chunks_per_pass: int = 2, arch: dict | None = None):
        arch = dict(arch or {})
        super().__init__(label_template=label_template, chunks_per_pass=chunks_per_pass, arch=arch)
        unknown = sorted(set(arch) - set(ARCH))
        if unknown:
            raise ConfigError(f"system.params.arch: unknown key(s) {', '.join(unknown)}; known: {', '.join(ARCH)}")
        try:
            ok = "{label}" in label_template and label_template.format(label="x") != label_template
        except (KeyError, IndexError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise ConfigError(f"system.params.label_template={label_template!r}: a text with {{label}} where the "
                              f"class name goes (and no other braces), e.g. {LABEL_TEMPLATE!r}")
        if isinstance(chunks_per_pass, bool) or not isinstance(chunks_per_pass, int) or chunks_per_pass < 1:
            raise ConfigError(f"system.params.chunks_per_pass={chunks_per_pass!r}: expected a positive integer")
        self.label_template = str(label_template)
        self.chunks_per_pass = chunks_per_pass
        self.arch = {**ARCH, **arch, "clap": dict(arch.get("clap") or {})}
        self.chunk = chunk_samples(self.arch["n_fft"], self.arch["hop"])
        self.net: BiModalSepNet | None = None
        self.tokenizer = None
        self._random_seed: int | None = None
        self._clap_sha256: str | None = None

    # -- queries
    def query_text(self, caption: str, style: str = "caption") -> str:
        if style == "label":
            return self.label_template.format(label=caption.replace("_", " "))
        return CAPTION_TEMPLATE.format(caption=caption)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=TEXT_LEN, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """CLAP embeddings ``[B, 512]`` and RoBERTa hidden states ``[B, 77, 768]`` of the query texts."""
        return self.net.net_clap.encode(**self.tokenize(texts))

    # -- loading
    def _build(self, clap: nn.Module, clap_dim: int, text_dim: int) -> BiModalSepNet:
        f, t = self.arch["n_fft"] // 2 + 1, self.chunk // self.arch["hop"] + 1
        if f % 2 ** self.arch["num_downs"] or t % 2 ** self.arch["num_downs"]:
            raise ConfigError(f"system.params.arch: a {f} x {t} spectrogram cannot go through "
                              f"{self.arch['num_downs']} halvings")  # fmt: skip
        return BiModalSepNet(self.arch, clap, clap_dim, text_dim)

    def load(self, device: str | torch.device = "cpu") -> None:
        super().load(device)
        clap_emb = LaionClapMusicAudioset(arch=self.arch["clap"])
        clap_emb.load("cpu")
        clap = clap_emb.model
        net = self._build(clap, clap_emb.embed_dim, int(clap.text_branch.config.hidden_size))
        path = weights.resolve("bimodalsep")
        state = separator_state(weights.load_torch_file(path), path.name)
        expected = net.state_dict()
        # the official load is non-strict: BatchNorm step counters (unused at inference) may be absent
        for k, v in expected.items():
            if k.endswith("num_batches_tracked") and k not in state:
                state[k] = v
        hints = [("audio_branch.", "This is a LAION-CLAP checkpoint: pass it as laion-clap-music-audioset.")]
        clean = weights.check_state_dict(net, state, "BiModalSep", path.name, hints, optional_prefixes=OPTIONAL)
        net.load_state_dict(clean, strict=False)
        # only the text side of the CLAP is used at inference: let the audio branch go
        net.net_clap.model.model = ClapText(clap.text_branch, clap.text_projection)
        self.net = net.eval().to(self.device)
        self.tokenizer = clap_emb.tokenizer
        self._clap_sha256 = clap_emb.checkpoint_sha256
        self._random_seed = None

    def load_random(self, device: str | torch.device = "cpu", seed: int = 0) -> None:
        """Random weights at full size (benchmarks, without checkpoints): the separator and a
        full roberta-base-shaped text branch; the tokenizer is built here
        (:func:`systems.random_init.local_roberta_tokenizer`), so query ids are not roberta-base's."""
        from transformers import RobertaConfig, RobertaModel

        super().load(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            text = RobertaModel(RobertaConfig(**ROBERTA_BASE), add_pooling_layer=True)
            proj = nn.Sequential(nn.Linear(768, 512), nn.ReLU(), nn.Linear(512, 512))
            net = self._build(ClapText(text, proj), 512, 768)
        self.net = net.eval().to(self.device)
        from systems.random_init import local_roberta_tokenizer

        self.tokenizer = local_roberta_tokenizer()
        self._random_seed = seed

    # -- separation
    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        styles = batch.query_style or ["caption"] * len(batch)
        embed, hidden = self.encode_text([self.query_text(c, s) for c, s in zip(batch.caption, styles)])
        chunks, owner = [], []
        for b in range(len(batch)):
            n = int(batch.lengths[b])
            k = max(1, math.ceil(n / self.chunk))
            x = F.pad(batch.mixture[b, 0, :n].clamp(-1.0, 1.0), (0, k * self.chunk - n))
            chunks.append(x.view(k, self.chunk))
            owner += [b] * k
        chunks = torch.cat(chunks)
        owner = torch.tensor(owner, device=chunks.device)
        est = torch.cat([
            self.net(chunks[s : s + self.chunks_per_pass], embed[owner[s : s + self.chunks_per_pass]],
                     hidden[owner[s : s + self.chunks_per_pass]])
            for s in range(0, len(chunks), self.chunks_per_pass)
        ])  # fmt: skip
        out = torch.zeros_like(batch.mixture)
        for b in range(len(batch)):
            n = int(batch.lengths[b])
            out[b, 0, :n] = est[owner == b].reshape(-1)[:n]
        return out

    # -- provenance
    def checkpoint_sha256(self) -> str | None:
        if self._random_seed is not None:
            return f"random-{self._random_seed}"
        return weights.checkpoint_sha256("bimodalsep")

    def info(self) -> dict[str, Any]:
        random = self._random_seed is not None
        clap_sha = f"random-{self._random_seed}" if random else (
            self._clap_sha256 or weights.checkpoint_sha256("laion-clap-music-audioset"))  # fmt: skip
        return {
            **super().info(),
            "text_encoder": {
                "model": "LAION-CLAP HTSAT-base music_audioset_epoch_15_esc_90.14.pt, RoBERTa-base text branch",
                "weights": ["laion-clap-music-audioset", "roberta-base"],
                "checkpoint_sha256": clap_sha,
                "tokens": f"roberta-base BPE, padded / truncated to {TEXT_LEN}",
                "conditioning": "sigmoid(fc(L2-normalised CLAP text embedding)) -> mask inner product; "
                                "RoBERTa last_hidden_state (padding attended) -> U-Net cross-attention",
            },
            "query_template": {"caption": CAPTION_TEMPLATE, "label": self.label_template},
            "inference": {"chunk_samples": self.chunk, "overlap": 0, "padding": "zeros", "clip": [-1.0, 1.0],
                          "mode": "eval", "stft": {"n_fft": self.arch["n_fft"], "hop": self.arch["hop"]}},
        }
