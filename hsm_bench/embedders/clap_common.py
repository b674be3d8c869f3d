"""What the CLAP embedders share: windowing, checkpoint checks, Hub folders, the base class.

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

Checkpoints
-----------
:func:`check_state_dict` compares a checkpoint with the model key for key and shape for
shape and raises :class:`CheckpointError` (one line: missing, unexpected and mis-shaped
keys, plus a hint when the file is another model's). The only tolerated extras are
buffers older transformers versions stored (GPT-2's causal ``attn.bias`` /
``attn.masked_bias``, BERT/RoBERTa ``embeddings.position_ids``), checked for their values.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from hsm_bench import weights
from hsm_bench.embedders.base import Embedder


class CheckpointError(weights.WeightsError):
    """A checkpoint file that does not fit the model it is loaded into."""


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


# -- the references' resampler ------------------------------------------------------------
def torchaudio_resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """``torchaudio.transforms.Resample(orig_sr, new_sr)`` with its defaults, on torch alone.

    Windowed-sinc interpolation (msclap's ``read_audio``, CLAPScore_for_LASS): the rates are
    reduced by their gcd to ``o -> n``; the cutoff is ``min(o, n) * 0.99`` (rolloff) in units
    of the reduced rate; each of the ``n`` output phases has a kernel over ``2 w + o`` input
    taps, ``w = ceil(6 o / cutoff)``: ``sinc(pi t) * cos(pi t / 12)^2 * cutoff / o`` with
    ``t = (tap / o - phase / n) * cutoff`` clamped to [-6, 6] (Hann window, 6 zero
    crossings). The kernel is built in float64 (the phase term in float32, as torchaudio
    does) and applied in float32 as a strided convolution over the signal zero-padded by
    ``w`` before and ``w + o`` after; the output keeps ``ceil(n * len / o)`` samples.
    """
    if orig_sr == new_sr:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(orig_sr), int(new_sr))
    o, n = int(orig_sr) // g, int(new_sr) // g
    kernel, w = _sinc_kernel(o, n)
    wave = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, 1, -1)
    out = torch.nn.functional.conv1d(torch.nn.functional.pad(wave, (w, w + o)), kernel, stride=o)
    out = out.transpose(1, 2).reshape(-1)
    return out[: math.ceil(n * len(x) / o)].numpy()


@lru_cache(maxsize=8)
def _sinc_kernel(o: int, n: int) -> tuple[torch.Tensor, int]:
    cutoff = min(o, n) * 0.99
    zeros = 6
    w = math.ceil(zeros * o / cutoff)
    taps = torch.arange(-w, w + o, dtype=torch.float64)[None, None] / o
    t = (torch.arange(0, -n, -1)[:, None, None] / n + taps) * cutoff  # [n, 1, 2w + o]
    t = t.clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (cutoff / o)
    return kernel.float(), w


# -- checkpoints ----------------------------------------------------------------------
def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` on CPU: weights-only when the file allows it, memory-mapped if possible.

    Official CLAP checkpoints may hold non-tensor metadata (an argparse namespace, numpy
    scalars) that the weights-only unpickler refuses; such files are loaded in full. They
    are sha256-pinned by ``hsm-bench download-weights``.
    """
    import pickle

    weights_only = True
    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
        except pickle.UnpicklingError as first:  # non-tensor metadata: load in full
            weights_only = False
            try:
                return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
            except RuntimeError as exc:
                if mmap and "mmap" in str(exc):
                    continue
                raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - not a torch file at all
                raise CheckpointError(f"cannot read checkpoint {path}: {first}") from exc
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc):  # legacy (non-zip) format: no memory map
                continue
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        except (EOFError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    raise CheckpointError(f"cannot read checkpoint {path}")  # pragma: no cover


_LEGACY = [
    # GPT-2 causal mask / masked value, stored by transformers < 4.3x
    (re.compile(r"\.h\.\d+\.attn\.bias$"), "causal"),
    (re.compile(r"\.h\.\d+\.attn\.masked_bias$"), "masked_bias"),
    (re.compile(r"\.embeddings\.position_ids$"), "position_ids"),
    (re.compile(r"\.embeddings\.token_type_ids$"), "zeros"),
]


def _legacy_ok(kind: str, t: torch.Tensor) -> bool:
    t = t.detach()
    if kind == "causal":
        n = t.shape[-1]
        return t.ndim >= 2 and bool(torch.equal(t.reshape(n, n).bool(), torch.ones(n, n).tril().bool()))
    if kind == "masked_bias":
        return t.numel() == 1 and float(t) <= -1e4 + 1e-3
    if kind == "position_ids":
        return bool(torch.equal(t.reshape(-1).long(), torch.arange(t.numel())))
    return bool((t == 0).all())


def check_state_dict(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    source: str,
    hints: list[tuple[str, str]] = (),
    optional_prefixes: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors for ``model``, or :class:`CheckpointError`.

    ``hints``: (key prefix, message) pairs; a checkpoint holding such a key (and failing)
    gets the message (e.g. "this is an MS-CLAP 2022 file"). Keys under
    ``optional_prefixes`` may be missing (the caller fills them elsewhere).
    """
    expected = model.state_dict()
    clean: dict[str, torch.Tensor] = {}
    unexpected, bad_legacy = [], []
    for k, v in state.items():
        if k in expected:
            clean[k] = v
            continue
        legacy = next((kind for rx, kind in _LEGACY if rx.search(k)), None)
        if legacy is None or not torch.is_tensor(v):
            unexpected.append(k)
        elif not _legacy_ok(legacy, v):
            bad_legacy.append(k)
    missing = [k for k in expected if k not in clean and not k.startswith(optional_prefixes)]
    shapes = [
        f"{k} {list(clean[k].shape)} (model {list(expected[k].shape)})"
        for k in clean
        if torch.is_tensor(clean[k]) and tuple(clean[k].shape) != tuple(expected[k].shape)
    ]
    nontensor = [k for k, v in clean.items() if not torch.is_tensor(v)]
    if missing or unexpected or shapes or bad_legacy or nontensor:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                            ("unexpected buffer values", bad_legacy), ("not tensors", nontensor)):  # fmt: skip
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        hint = next((msg for prefix, msg in hints if prefix and any(k.startswith(prefix) for k in state)), "")
        raise CheckpointError(f"{source} is not a {what} checkpoint: {'; '.join(parts)}{'. ' + hint if hint else ''}")
    return clean


def file_sha256(path: Path) -> str | None:
    return weights.file_sha256(path) if path.is_file() else None


# -- Hub folders (text models, tokenizers, transformers models) ---------------------------
def hub_folder(name: str) -> Path:
    """Local folder of the Hub repository registered as weights ``name``.

    ``$HSM_BENCH_HOME/weights/<name>/<repo>`` (or ``--weights name=DIR``); failing that, a
    complete copy in the Hugging Face cache (no network); otherwise the resolver's
    one-line :class:`~hsm_bench.weights.WeightsMissingError`.
    """
    try:
        return weights.resolve(name)
    except weights.WeightsMissingError:
        spec = weights.spec(name)
        repo = spec.source.removeprefix("hf://")
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo, local_files_only=True))
            if (path / "config.json").exists():
                return path
        except Exception:  # noqa: BLE001 - not in the cache: report the resolver's error
            pass
        raise


# -- base class -----------------------------------------------------------------------------
class ClapEmbedder(Embedder):
    """A CLAP model: ``embed_audio`` (windowed, see the module docstring) and ``embed_text``.

    Params common to all CLAP embedders: ``hop_s`` (window hop in seconds for clips longer
    than the window; None = the window length), ``batch_size`` (windows per forward pass;
    every pass has exactly this many, the last one zero-filled, so an embedding does not
    depend on the other clips of its batch: same run twice, any order, same numbers),
    ``arch`` (architecture overrides, for tests and benchmarks; a real checkpoint needs the
    default).
    """

    window_s: ClassVar[float] = 10.0
    pad_mode: ClassVar[str] = "repeatpad"  # "tile" (msclap) or "repeatpad" (LAION)
    crop_rule: ClassVar[str] = "laion"  # reference_crop rule: "msclap" or "laion"
    embed_dim: ClassVar[int] = 512

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
            # embedding does not depend on which other windows share its batch
            pad = [np.zeros(self.window, np.float32)] * (self.batch_size - len(chunk))
            batch = torch.from_numpy(np.stack(chunk + pad))
            with torch.inference_mode():
                e = self._embed_windows(batch.to(self.device)).float().cpu()[: len(chunk)]
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
            with torch.inference_mode():  # fixed batch shape, as for audio
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

    tok = AutoTokenizer.from_pretrained(str(folder))
    if fix is not None:
        fix(tok)
    return tok
