"""On-the-fly training triplets (mixture, target, instruction) for HSM-TSS (arXiv 2505.21025, §IV-A1).

The paper builds triplets on the fly from labelled/captioned clips, mixes two clips only if
they share no audio class, uses 10-s 16-kHz clips (cropped or padded), and "generate[s]
bidirectional instructions for each triplet and randomly select[s] one during training".
:class:`MixtureStream` follows the recipe of our real-dataset builders (:mod:`testsets.pools`)
and reuses their pieces: :func:`testsets.mixing.mix_at_snr` (DCASE 2024 task 9 arithmetic,
SNR rounded to 1e-4 dB as the writer does), :func:`testsets.mixing.crop_or_pad`, the
builders' :class:`~testsets.pools.ClipLoader`, and :func:`testsets.instructions.instruction`.

Per example, from one ``numpy.random.default_rng([seed, worker, index])``, in this order:
target clip (uniform over the pool); interferer (uniform, redrawn while it is the target or
shares a class with it; after ``max_redraws`` a uniform pick among all valid partners, or a
new target when there is none); a crop offset for each (uniform over length - window;
shorter clips are zero-padded at the end); the SNR (uniform in ``snr_range``, rounded to
1e-4 dB); the task ("extract" or "remove", 1/2 each: one of the two directions of the
triplet); the description of the described clip (uniform over its captions, or its label
text for label queries or clips without captions); the instruction template. A window the
mixing rule calls silent is drawn again from the same generator.

As in the manifests of our test sets (:mod:`testsets.base`, :mod:`testsets.demo`), ``target``
is always the sound that should come out: for "extract" the described clip, for "remove" the
*other* clip (the description is of the interferer, which is removed). So ``target`` and
``interferer`` are the same stems for both tasks; only the described clip changes.
``mixture == target + interferer`` to float32 rounding.

Determinism: example ``index`` of worker ``w`` depends only on (seed, w, index) and the pool.
A stream read without a DataLoader, or by ``num_workers=0``, is worker 0. With ``num_workers=W``
each worker yields its own stream (0, 1, 2, ... of its own generator), different from the other
workers'; the same seed and W give the same examples in the same order per worker (and the
DataLoader interleaves workers in a fixed round-robin order). With ``num_examples`` set, worker
``w`` of ``W`` yields the ``ceil((num_examples - w) / W)`` examples of global positions w, w+W, ...
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from hsm_bench.errors import ConfigError
from testsets.instructions import instruction
from testsets.mixing import SilentSourceError, crop_or_pad, mix_at_snr
from training.sources import TrainClip, from_pool_clip

TASKS = ("extract", "remove")
QUERY_STYLES = ("caption", "label")
SILENT_RETRIES = 100  # draws of a new example after a silent window before giving up


class MixtureStream(IterableDataset):
    """Endless (or ``num_examples`` long) stream of training triplets; see the module doc for the recipe."""

    def __init__(self, clips: Sequence[Any], seed: int = 0, snr_range: tuple[float, float] = (-15.0, 15.0),
                 seconds: float = 10.0, sample_rate: int = 16000, tasks: Sequence[str] = TASKS,
                 query_style: str = "caption", num_examples: int | None = None, max_redraws: int = 200,
                 roots: dict[str, str] | None = None):  # fmt: skip
        super().__init__()
        if sample_rate != 16000:
            raise ConfigError(f"sample_rate={sample_rate}: training clips are read and mixed at 16000 Hz "
                              "(the paper's rate); use sample_rate=16000")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r}: use a non-negative integer")
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks:
            raise ConfigError(f"tasks={tuple(tasks)!r}: use one or both of {TASKS}")
        if query_style not in QUERY_STYLES:
            raise ConfigError(f"query_style={query_style!r}: use one of {QUERY_STYLES}")
        lo, hi = (float(v) for v in snr_range)
        if not lo <= hi:
            raise ConfigError(f"snr_range={tuple(snr_range)}: the low end must not exceed the high end")
        self.clips = [self._as_train_clip(c, roots) for c in clips]
        if len({c.key for c in self.clips}) != len(self.clips):
            raise ConfigError("the training pool holds clips with the same key twice")
        speechless = [c.key for c in self.clips if not (c.captions or c.label_text)]
        if speechless:
            raise ConfigError(f"{len(speechless)} pool clip(s) have neither captions nor a label text "
                              f"(e.g. {speechless[0]}); give each clip one or the other")
        self.seed = int(seed)
        self.snr_range = (lo, hi)
        self.window = round(seconds * sample_rate)
        self.sample_rate = sample_rate
        self.tasks = tuple(tasks)
        self.query_style = query_style
        self.num_examples = num_examples
        self.max_redraws = int(max_redraws)
        self._require_a_pair()
        self._partners: dict[int, list[int]] = {}  # filled lazily by the fallback scan (pure cache)
        self._loader = None

    @staticmethod
    def _as_train_clip(clip: Any, roots: dict[str, str] | None) -> TrainClip:
        if isinstance(clip, TrainClip):
            return clip
        if roots is None or clip.dataset not in roots:
            raise ConfigError(f"pool clip {clip.key} is a builder PoolClip: pass roots={{{clip.dataset!r}: FOLDER}}")
        return from_pool_clip(clip, roots[clip.dataset])

    def _require_a_pair(self) -> None:
        for a, x in enumerate(self.clips):
            if any(not (x.classes & y.classes) for y in self.clips[a + 1 :]):
                return
        raise ConfigError(f"no two of the {len(self.clips)} pool clips are free of a shared class, so nothing can be "
                          "mixed: add clips of other classes")

    # -- drawing --------------------------------------------------------------------
    def _valid(self, t: int, i: int) -> bool:
        return i != t and not (self.clips[t].classes & self.clips[i].classes)

    def _pair(self, rng: np.random.Generator) -> tuple[int, int]:
        n = len(self.clips)
        while True:
            t = int(rng.integers(n))
            for _ in range(self.max_redraws):
                i = int(rng.integers(n))
                if self._valid(t, i):
                    return t, i
            if t not in self._partners:
                self._partners[t] = [i for i in range(n) if self._valid(t, i)]
            partners = self._partners[t]
            if partners:
                return t, partners[int(rng.integers(len(partners)))]

    def _audio(self, clip: TrainClip) -> np.ndarray:
        if clip.audio is not None:
            return clip.audio
        if self._loader is None:  # made in each worker; not pickled with the dataset
            from testsets.pools import ClipLoader

            self._loader = ClipLoader({})
        self._loader.roots.setdefault(clip.root, Path(clip.root))
        return self._loader.audio(clip.root, clip.path)

    def _crop(self, clip: TrainClip, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        offset = int(rng.integers(0, max(clip.length - self.window, 0) + 1))
        audio = self._audio(clip)
        segment = audio[clip.start : clip.start + clip.length]
        return crop_or_pad(segment, self.window, offset), offset

    def example(self, index: int, worker: int = 0) -> dict[str, Any]:
        """Example ``index`` of worker ``worker``'s stream (what iteration yields there)."""
        rng = np.random.default_rng([self.seed, int(worker), int(index)])
        for _ in range(SILENT_RETRIES):
            t, i = self._pair(rng)
            tc, ic = self.clips[t], self.clips[i]
            target, t_off = self._crop(tc, rng)
            interferer, i_off = self._crop(ic, rng)
            snr = round(float(rng.uniform(*self.snr_range)), 4)
            task = self.tasks[int(rng.integers(len(self.tasks)))] if len(self.tasks) > 1 else self.tasks[0]
            described = tc if task == "extract" else ic
            style = "caption" if self.query_style == "caption" and described.captions else "label"
            options = described.captions if style == "caption" else (described.label_text,)
            caption = options[int(rng.integers(len(options)))]
            text = instruction(task, caption, style, rng)
            try:
                mix = mix_at_snr(target, interferer, snr)
            except SilentSourceError:
                continue
            return {
                "mixture": torch.from_numpy(mix.mixture),
                "target": torch.from_numpy(mix.target),
                "interferer": torch.from_numpy(mix.interferer),
                "task": task,
                "caption": caption,
                "query_style": style,
                "instruction": text,
                "snr_db": snr,
                "target_labels": list(tc.labels),
                "interferer_labels": list(ic.labels),
                "target_captions": list(tc.captions or (tc.label_text,)),
                "source": {
                    "seed": self.seed,
                    "worker": int(worker),
                    "index": int(index),
                    "target": {"key": tc.key, "offset": t_off},
                    "interferer": {"key": ic.key, "offset": i_off},
                    "gains": mix.gains(),
                },
            }
        raise ConfigError(f"{SILENT_RETRIES} draws in a row gave a silent window (power below -80 dBFS): "
                          "the pool's clips are (nearly) silent; check the audio")  # fmt: skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.num_examples is None:
            k = 0
            while True:
                yield self.example(k, worker)
                k += 1
        for k in range(max(0, math.ceil((self.num_examples - worker) / workers))):
            yield self.example(k, worker)


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad ``mixture``/``target``/``interferer`` to the longest item ([B, T], zeros at the end), with
    ``lengths`` [B] and ``snr_db`` [B] as tensors; every other field as a list."""
    lengths = torch.tensor([len(b["mixture"]) for b in batch], dtype=torch.long)
    longest = int(lengths.max()) if len(batch) else 0
    out: dict[str, Any] = {"lengths": lengths}
    for role in ("mixture", "target", "interferer"):
        padded = torch.zeros(len(batch), longest, dtype=torch.float32)
        for row, b in enumerate(batch):
            padded[row, : len(b[role])] = torch.as_tensor(b[role], dtype=torch.float32)
        out[role] = padded
    out["snr_db"] = torch.tensor([float(b["snr_db"]) for b in batch], dtype=torch.float32)
    for key in batch[0] if batch else ():
        if key not in out:
            out[key] = [b[key] for b in batch]
    return out
