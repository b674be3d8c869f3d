"""What the CLAP embedders share: windowing, the base class, the text-folder tokenizer.

Windowing (deterministic; the references crop at random)
---------------------------------------------------------
A CLAP audio encoder takes a fixed window of ``W`` samples at its own rate (MS-CLAP 2023:
7 s at 44.1 kHz; MS-CLAP 2022: 5 s at 44.1 kHz; LAION-CLAP: 10 s at 48 kHz). Clips are
first downmixed to mono (mean over channels; msclap would concatenate the channels).

* ``n <= W`` (shorter or equal): padded as the reference does. msclap ("tile"): repeat
  ``ceil(W / n)`` times, keep the first ``W`` samples. LAION ("repeatpad"): repeat
  ``floor(W / n)`` times, zero-pad to ``W``.
* ``n > W`` (**mean** mode, the default): windows start at ``0, hop, 2 hop, ...`` while they
  end before the clip does, plus one window aligned to the end (start ``n - W``); ``hop``
  defaults to ``W`` (non-overlapping windows, the last one aligned to the end). A 10-s
  clip gives windows at 0 and 3 s for MS-CLAP 2023, at 0, 5 s for 2022. The clip's
  embedding is the **mean of the L2-normalised window embeddings** (not re-normalised;
  cosine scores normalise it).
* **reference_crop** mode (:func:`reference_crop`, applied by the metric before the
  embedder sees the clip): the reference's random crop drawn from an RNG seeded per item,
  msclap: ``random.Random(seed).randrange(n - W)`` (so the last start ``n - W`` is never
  drawn, as in msclap), LAION: ``numpy.random.RandomState(seed).randint(0, n - W + 1)``;
  i.e. what the reference code gives after ``random.seed(seed)`` / ``np.random.seed(seed)``.
  :func:`item_seed` derives the seed from the item id (sha256 of ``"{seed}:{id}"``, 32 bits),
  so estimate, reference and mixture of one item share the crop.

Checkpoints are read and checked with :func:`hsm_bench.weights.load_torch_file` and
:func:`hsm_bench.weights.check_state_dict`; text-model folders are found by
:func:`hsm_bench.weights.resolve` (which also accepts a complete copy in the Hugging Face
cache).
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from hsm_bench.embedders.base import Embedder


# -- windowing ------------------------------------------------------------------------
def to_mono(clip: np.ndarray) -> np.ndarray:
    x = np.asarray(clip, dtype=np.float32)
    if x.ndim == 2:  # [C, T] channels first, as the harness' audio io
        x = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono [T] or [C, T] audio, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("empty audio clip")
    return x


def pad_to_window(x: np.ndarray, window: int, mode: str) -> np.ndarray:
    """Pad a clip of at most ``window`` samples as the reference does."""
    n = len(x)
    if n > window:
        raise ValueError("pad_to_window takes clips no longer than the window")
    if mode == "tile":  # msclap: tile ceil(W/n) times, truncate
        return np.tile(x, math.ceil(window / n))[:window]
    if mode == "repeatpad":  # LAION: tile floor(W/n) times, zero-pad
        out = np.zeros(window, dtype=np.float32)
        reps = np.tile(x, window // n)
        out[: len(reps)] = reps
        return out
    raise ValueError(f"unknown pad mode {mode!r}")


def window_starts(n: int, window: int, hop: int | None = None) -> list[int]:
    """Start offsets of the fixed windows covering ``n`` samples (see the module docstring)."""
    if n <= window:
        return [0]
    hop = int(hop or window)
    if hop <= 0:
        raise ValueError("hop must be positive")
    starts = list(range(0, n - window, hop))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def item_seed(item_id: str, seed: int = 0) -> int:
    """32-bit seed of one item for ``reference_crop`` (same id -> same crop)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def reference_crop(x: np.ndarray, window: int, rule: str, seed: int) -> np.ndarray:
    """The reference's random crop (or padding) of one clip under ``seed``."""
    x = to_mono(x)
    n = len(x)
    if rule == "msclap":
        if n <= window:  # msclap pads when W >= n
            return pad_to_window(x, window, "tile")
        start = random.Random(seed).randrange(n - window)
    elif rule == "laion":
        if n <= window:
            return pad_to_window(x, window, "repeatpad")
        start = int(np.random.RandomState(seed).randint(0, n - window + 1))
    else:
        raise ValueError(f"unknown crop rule {rule!r}")
    return x[start : start + window].copy()


# -- base class -----------------------------------------------------------------------------
class ClapEmbedder(Embedder):
    """A CLAP model: ``embed_audio`` (windowed, see the module docstring) and ``embed_text``.

    Params common to all CLAP embedders: ``hop_s`` (window hop in seconds for clips longer
    than the window; None = the window length), ``batch_size`` (windows per forward pass;
    every pass has exactly this many, the last one zero-filled, so an embedding does not
    depend on the content of the other clips of its batch: the same run repeated gives the
    same numbers. Another batch size, another order (windows in other batch rows) or
    another thread count may change them at float32 rounding level, as GEMM kernels and
    blockings change),
    ``arch`` (architecture overrides, for tests and benchmarks; a real checkpoint needs the
    default).
    """

    window_s: ClassVar[float] = 10.0
    pad_mode: ClassVar[str] = "repeatpad"  # "tile" (msclap) or "repeatpad" (LAION)
    crop_rule: ClassVar[str] = "laion"  # reference_crop rule: "msclap" or "laion"
    embed_dim: ClassVar[int] = 512
    # False for an embedder whose feature extractor reads the windows on the CPU (transformers'
    # ClapProcessor): they would otherwise make a round trip through the GPU
    windows_on_device: ClassVar[bool] = True

    def __init__(self, hop_s: float | None = None, batch_size: int = 8, arch: dict | None = None, **params: Any):
        super().__init__(hop_s=hop_s, batch_size=batch_size, arch=dict(arch or {}), **params)
        self.hop_s = hop_s
        self.batch_size = int(batch_size)
        self.arch = dict(arch or {})
        self.model: torch.nn.Module | None = None
        self._text_cache: dict[str, np.ndarray] = {}

    @property
    def window(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop(self) -> int | None:
        return None if self.hop_s is None else int(round(self.hop_s * self.sample_rate))

    def required_weights(self) -> list[str]:
        """The hsm_bench.weights names this instance loads (class default: ``weights``)."""
        return list(self.weights)

    # -- windowing
    def windows(self, clip: np.ndarray) -> list[np.ndarray]:
        x = to_mono(clip)
        if len(x) <= self.window:
            return [pad_to_window(x, self.window, self.pad_mode)]
        return [x[s : s + self.window] for s in window_starts(len(x), self.window, self.hop)]

    def reference_crop(self, clip: np.ndarray, seed: int) -> np.ndarray:
        return reference_crop(clip, self.window, self.crop_rule, seed)

    # -- embeddings
    def embed_audio(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not self.loaded:
            self.load(self.device)
        wins: list[np.ndarray] = []
        owner: list[int] = []
        for i, clip in enumerate(clips):
            w = self.windows(clip)
            wins.extend(w)
            owner.extend([i] * len(w))
        embs = []
        for s in range(0, len(wins), self.batch_size):
            chunk = wins[s : s + self.batch_size]
            # every forward pass has the same shape (the last one zero-filled), so a window's
            # embedding does not depend on the content of the windows sharing its batch
            pad = [np.zeros(self.window, np.float32)] * (self.batch_size - len(chunk))
            batch = torch.from_numpy(np.stack(chunk + pad))
            with torch.inference_mode():
                e = self._embed_windows(batch.to(self.device) if self.windows_on_device else batch).float().cpu()[: len(chunk)]
            embs.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        emb = np.concatenate(embs, axis=0) if embs else np.zeros((0, self.embed_dim), np.float32)
        owner_arr = np.asarray(owner)
        out = []
        for i in range(len(clips)):
            rows = emb[owner_arr == i]
            out.append({"embedding": rows.mean(axis=0).astype(np.float32), "n_windows": np.int32(len(rows))})
        return out

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """``[N, D]`` L2-normalised text embeddings (memoised per text)."""
        if not self.loaded:
            self.load(self.device)
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            with torch.inference_mode(), self.forward_context():  # fixed batch shape, as for audio
                e = self._embed_texts(chunk + [""] * (self.batch_size - len(chunk))).float().cpu()[: len(chunk)]
            e = torch.nn.functional.normalize(e, dim=-1).numpy()
            self._text_cache.update(zip(chunk, e))
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.stack([self._text_cache[t] for t in texts]).astype(np.float32)

    # -- to implement
    def _embed_windows(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` windows at :attr:`sample_rate` -> ``[B, D]`` (not normalised)."""
        raise NotImplementedError

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def init_random(self, seed: int = 0, text: bool = False) -> None:
        """Random weights at the configured architecture (benchmarks); audio path only unless ``text``."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {**super().info(), "weights": self.required_weights(), "window_samples": self.window,
                "pad_mode": self.pad_mode, "crop_rule": self.crop_rule}  # fmt: skip


def tokenizer_from(folder: Path, fix: Callable | None = None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if fix is not None:
        fix(tok)
    return tok
