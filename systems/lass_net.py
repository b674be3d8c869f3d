"""LASS-Net (Liu et al., "Separate What You Describe", INTERSPEECH 2022; liuxubo717/LASS).

A text-queried magnitude-mask separator at 32 kHz: BERT-mini encodes the query, a FiLM
residual U-Net (``lass_net_model``) predicts a sigmoid mask on the conv-STFT magnitude
(``lass_net_stft``), and the masked magnitude is resynthesised with the mixture phase. It
extracts only; the harness answers "remove" items with mixture minus extraction.

Inference protocol, as the official ``inference.py`` and ``utils/wav_io.py`` do it:

* Input: the mixture at 32 kHz, zero-padded to 10 s when shorter; a longer input is
  separated whole (the official loader's trimmed copy is never used), so no chunking.
  Every item is separated at its own padded length, whatever else is in the batch.
* Query: ``"[CLS] " + text`` (``inference.py`` L55), tokenised by BERT's uncased WordPiece
  tokenizer with ``add_special_tokens=False`` and padding (``model/text_encoder.py`` L31): one
  leading [CLS], no [SEP]; the tokenizer lower-cases, strips accents and splits punctuation
  into tokens, and nothing else is done to the text. ``text`` is the row's caption, and for
  label queries the class label as given: the LASS-Net paper queries with AudioCaps captions
  only, and AudioSep's evaluation of LASS-style models (``evaluation/evaluate_*.py``) passes
  label text unchanged.
* Output: the official inverse STFT returns the input length rounded down to a multiple of
  512 samples; this system returns those samples unchanged and zeros for the < 512-sample
  (< 16 ms) remainder, so that the harness gets a full-length signal. Raw float output:
  the official ``save_wav`` peak-normalises to int16, which is not reproduced.

Weights: ``lass-net`` (``LASSNet.pt``, ``{"model": state_dict}`` with DataParallel's
``module.`` prefix on every key, loaded strictly like the official ``load_state_dict``;
``embeddings.position_ids`` buffers that older transformers saved are accepted when they
hold the positions) and ``bert-mini`` (config and vocabulary of the query encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.weights import CheckpointError, WeightsError

CHECKPOINT = "lass-net"
TEXT_MODEL = "bert-mini"
QUERY_TEMPLATE = "[CLS] {text}"
PREFIX = "module."  # nn.DataParallel's, on every key of LASSNet.pt

# prajjwal1/bert-mini (Turc et al. 2019, L=4 H=256): what load_random builds without the Hub
BERT_MINI = {"vocab_size": 30522, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "intermediate_size": 1024, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
             "layer_norm_eps": 1e-12, "pad_token_id": 0}  # fmt: skip


def query_text(text: str) -> str:
    """The string LASS-Net's tokenizer receives for a caption or a label."""
    return QUERY_TEMPLATE.format(text=text)


def read_checkpoint(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of an official ``LASSNet.pt`` for ``model``, or a one-line CheckpointError."""
    obj = weights.load_torch_file(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping):
        held = f"keys {', '.join(map(str, list(obj)[:4]))}" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path} is not a LASS-Net checkpoint: LASSNet.pt holds {{'model': state_dict}}, "
                              f"this file holds {held}")  # fmt: skip
    state = obj["model"]
    bare = [str(k) for k in state if not str(k).startswith(PREFIX)]
    if bare:  # the official DataParallel wrapper accepts nothing else
        raise CheckpointError(
            f"{path} is not a LASS-Net checkpoint: {len(bare)} key(s) lack the DataParallel '{PREFIX}' prefix "
            f"of LASSNet.pt ({', '.join(bare[:3])}{', ...' if len(bare) > 3 else ''})"
        )
    state = {k[len(PREFIX) :]: v for k, v in state.items()}
    return weights.check_state_dict(model, state, "LASS-Net", str(path))


def randomise_statistics(model: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm running statistics away from 0/1, which random initialisation leaves them at."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))


def local_tokenizer():
    """An uncased WordPiece tokenizer built here (letters, digits, punctuation, a few words):
    not BERT's vocabulary, for timing and smoke runs of random weights only."""
    from transformers import BertTokenizer

    words = ["a", "an", "the", "of", "and", "in", "on", "with", "while", "then", "sound", "dog", "barks", "man", "woman",
             "speaks", "music", "plays", "water"]  # fmt: skip
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'-()")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))}, do_lower_case=True)


class LassNet(System):
    """LASS-Net from ``LASSNet.pt``; ``arch`` (``widths``, ``cond_dim``) only for small test models."""

    name: ClassVar[str] = "lass_net"
    sample_rate: ClassVar[int] = 32000
    tasks: ClassVar[tuple[str, ...]] = ("extract",)
    version: ClassVar[str] = "1"
    weights: ClassVar[tuple[str, ...]] = (CHECKPOINT, TEXT_MODEL)

    def __init__(self, pad_to_s: float = 10.0, arch: dict | None = None):
        super().__init__(pad_to_s=pad_to_s, arch=arch)
        self.pad_to = round(float(pad_to_s) * self.sample_rate)
        self.arch = dict(arch or {})
        unknown = set(self.arch) - {"widths", "cond_dim"}
        if unknown:
            raise ValueError(f"arch takes widths and cond_dim, not {', '.join(sorted(unknown))}")
        self.model = self.tokenizer = self.stft = None
        self._random = False
        self._loaded: dict[str, Path] = {}  # the files in use once loaded (resolution may change later)

    # -- loading ------------------------------------------------------------------------------
    def _build(self, bert_config) -> torch.nn.Module:
        from systems.lass_net_model import LassNetModel

        bert_config._attn_implementation = "eager"  # the only attention the official transformers had
        kw = {k: (tuple(v) if k == "widths" else int(v)) for k, v in self.arch.items()}
        return LassNetModel(bert_config, **kw)

    def _ready(self, device: str | torch.device) -> None:
        from systems.lass_net_stft import ConvSTFT

        super().load(device)
        self.model.eval().to(self.device)
        self.stft = ConvSTFT().to(self.device)

    def load(self, device: str | torch.device = "cpu") -> None:
        from transformers import BertConfig, BertTokenizer

        folder = weights.resolve(TEXT_MODEL)
        try:
            config = BertConfig.from_pretrained(str(folder), local_files_only=True)
            # prajjwal1/bert-mini has no tokenizer_config.json: the official BertTokenizer
            # lower-cases by default, pinned here whatever a local copy's config says
            self.tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True, do_lower_case=True)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder}: cannot read the BERT-mini config and vocabulary ({' '.join(str(exc).split())}); "
                               f"re-fetch them with `hsm-bench download-weights --force {TEXT_MODEL}`") from None  # fmt: skip
        path = weights.resolve(CHECKPOINT)
        model = self._build(config)
        model.load_state_dict(read_checkpoint(path, model), strict=True)
        self.model, self._random = model, False
        self._loaded = {CHECKPOINT: path, TEXT_MODEL: folder}
        self._ready(device)

    def load_random(self, device: str | torch.device = "cpu", seed: int = 0) -> None:
        """Full-size LASS-Net (U-Net and BERT-mini) with random weights and random BatchNorm
        statistics, and :func:`local_tokenizer`: for timing without checkpoints."""
        from transformers import BertConfig

        torch.manual_seed(seed)
        self.model = self._build(BertConfig(**BERT_MINI))
        randomise_statistics(self.model, seed)
        self.tokenizer, self._random = local_tokenizer(), True
        self._ready(device)

    # -- separation ---------------------------------------------------------------------------
    def encode_queries(self, texts: list[str]) -> torch.Tensor:
        """Condition vectors ``[B, cond_dim]`` for raw captions or labels."""
        tok = self.tokenizer([query_text(t) for t in texts], add_special_tokens=False, padding=True, return_tensors="pt")
        return self.model.text_embedder(tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))

    def separate_clips(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x [B, T]`` (already padded) -> ``[B, 512 * (T // 512)]``, the official forward pass."""
        magnitude, phase = self.stft.transform(x)
        spec = magnitude.transpose(1, 2)[:, None]  # [B, 1, frames, bins]
        est = (self.model.mask(spec, cond) * spec)[:, 0].transpose(1, 2)
        return self.stft.inverse(est, phase)

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("LassNet.separate() before load()")
        mix = batch.mixture[:, 0]
        n_batch, n = mix.shape
        cond = self.encode_queries(batch.caption)
        out = mix.new_zeros(n_batch, 1, n)
        # each item at its own official length: 10 s, or its whole length when longer
        lengths = [max(int(v), self.pad_to) for v in batch.lengths]
        for length in sorted(set(lengths)):
            rows = [k for k, v in enumerate(lengths) if v == length]
            x = F.pad(mix[rows, :length], (0, max(0, length - n)))
            y = self.separate_clips(x, cond[rows])
            m = min(y.shape[-1], n)
            out[rows, 0, :m] = y[:, :m]
        return out

    # -- provenance ---------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self._loaded.get(name) or weights.resolve(name, verify=False)

    def checkpoint_sha256(self) -> str | None:
        return None if self._random else weights.file_sha256(self._path(CHECKPOINT))

    def info(self) -> dict[str, Any]:
        info = super().info()
        vocab = None
        if not self._random:
            vocab_file = self._path(TEXT_MODEL) / "vocab.txt"
            vocab = weights.file_sha256(vocab_file) if vocab_file.is_file() else None
        info["text_encoder"] = {
            "model": "prajjwal1/bert-mini architecture (BertModel, no pooler), weights from the checkpoint's "
            "module.text_embedder.*",
            "pooling": "last-layer state of the first token ([CLS]) -> Linear -> ReLU",
            "tokenizer": "BERT uncased WordPiece, add_special_tokens=False, padding=True",
            "vocab_sha256": "random weights, local test vocabulary" if self._random else vocab,
        }
        info["query_template"] = QUERY_TEMPLATE
        info["query_text"] = "caption, or the class label as given; the same template for both"
        info["input"] = f"zero-padded to {self.pad_to} samples, longer inputs whole; output tail beyond the last " \
                        "multiple of 512 samples is zero"  # fmt: skip
        return info
