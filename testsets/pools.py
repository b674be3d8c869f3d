"""What the real-dataset builders share: a pool of source clips, pairing under the class
rule, the crop rule, and rendering an item (also used to rebuild from a manifest).

Recipe, drawn from one ``numpy.random.default_rng(seed)`` in this order for every item:
target clip (uniform over the pool), interferer clip (uniform; redrawn while it shares an
ontology class with the target, is the same clip or forms an already used pair — each
redraw is counted in the card), the window, a crop offset for each source (uniform over
the source's length minus the window, in 16 kHz samples after resampling the whole file),
the SNR (uniform in the set's range, rounded to 1e-4 dB), the task ("extract" or "remove",
probability 1/2), the caption or label description of the described clip (uniform over its
captions), and the instruction template. Sources shorter than the window are zero-padded
at the end. Window rules: ``fixed`` (10 s) or ``shorter_source`` (the shorter source's
full length, capped): the shorter source plays whole and the longer one is cropped.

A clip whose audio cannot be decoded is dropped from the pool, listed in the card, and
the item is drawn again: the build goes on and stays deterministic.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from tqdm import tqdm

from hsm_bench.audio.io import AUDIO_EXTENSIONS, AudioReadError, read_audio
from hsm_bench.audio.resample import resampled_length
from testsets.base import CANONICAL_RATE, Builder, ItemSpec, TestSetWriter
from testsets.instructions import instruction
from testsets.mixing import SilentSourceError, crop_or_pad
from testsets.ontology import Ontology, load



@dataclass(frozen=True)
class PoolClip:
    key: str  # unique in the pool
    dataset: str  # "audiocaps", "clotho", "fsd50k", "music"
    path: str  # relative to the dataset's source root
    labels: frozenset[str]  # ontology mids (the class rule uses these)
    captions: tuple[str, ...]  # sentence captions ("" style: none)
    label_text: str  # description for label-style queries ("dog bark", "acoustic guitar")
    length: int  # samples at 16 kHz of the whole file
    segment: tuple[int, int] | None = None  # (offset, length) when the clip is a fixed segment
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def available(self) -> int:
        return self.segment[1] if self.segment else self.length

    @property
    def query_style(self) -> str:
        return "caption" if self.captions else "label"

    def descriptions(self) -> tuple[str, ...]:
        return self.captions if self.captions else (self.label_text,)


@dataclass
class ScanReport:
    found: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)

    def card(self, limit: int = 200) -> dict[str, Any]:
        out: dict[str, Any] = {"found": self.found}
        for key in ("missing", "unreadable", "untagged", "too_short"):
            items = getattr(self, key)
            out[key] = {"count": len(items), "items": sorted(items)[:limit]}
        return out


def file_length_16k(path: Path) -> int:
    """Samples at 16 kHz the whole file will have after resampling (header only)."""
    info = sf.info(str(path))
    if info.frames <= 0:
        raise AudioReadError(f"{path} holds no samples")
    return resampled_length(int(info.frames), int(info.samplerate), CANONICAL_RATE)


def index_audio(root: Path) -> dict[str, Path]:
    """Every audio file under ``root`` by file name (first found in sorted order wins)."""
    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
            out.setdefault(p.name, p)
    return out


class ClipLoader:
    """Decoded 16 kHz mono sources, kept in a small cache (pairs reuse clips)."""

    def __init__(self, roots: dict[str, Path], capacity: int = 256):
        self.roots = roots
        self.cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.capacity = capacity

    def audio(self, dataset: str, path: str) -> np.ndarray:
        key = (dataset, path)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        if dataset not in self.roots:
            raise AudioReadError(f"no source folder for dataset {dataset!r}")
        audio, _ = read_audio(self.roots[dataset] / path, sample_rate=CANONICAL_RATE, mono=True)
        self.cache[key] = audio
        if len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return audio

    def window(self, dataset: str, path: str, offset: int, length: int, window: int) -> np.ndarray:
        """``length`` samples from ``offset`` of the file, zero-padded to ``window``."""
        seg = self.audio(dataset, path)[offset : offset + length]
        return crop_or_pad(seg, window, 0)


def source_record(clip: PoolClip, offset: int, length: int, caption_index: int | None) -> dict[str, Any]:
    return {
        "dataset": clip.dataset, "file": clip.path, "offset": int(offset), "length": int(length),
        "file_length": clip.length, "mids": sorted(clip.labels), "caption_index": caption_index,
    }  # fmt: skip


def render(loader: ClipLoader, source: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Target and interferer windows of an item from its manifest ``source`` record."""
    w = source["window"]
    t, i = source["target"], source["interferer"]
    return (
        loader.window(t["dataset"], t["file"], t["offset"], t["length"], w),
        loader.window(i["dataset"], i["file"], i["offset"], i["length"], w),
    )


class PairBuilder(Builder):
    """Base of the real-dataset builders: subclasses scan their layout into a pool."""

    snr_range: ClassVar[tuple[float, float]] = (-15.0, 15.0)
    window_rule: ClassVar[str] = "fixed"  # or "shorter_source"
    window_s: ClassVar[float] = 10.0  # fixed window, or cap for shorter_source
    extra_stop_names: ClassVar[tuple[str, ...]] = ()
    max_redraws: ClassVar[int] = 2000  # per item
    class_rule_text: ClassVar[str] = (
        "ancestor-closed AudioSet classes of target and interferer do not intersect outside the stop-list"
    )

    def __init__(self, n_items=None, seed=None, source=None, ontology: str | None = None, **params):
        super().__init__(n_items=n_items, seed=seed, source=source, **params)
        self.ontology_path = ontology

    # -- subclass API ---------------------------------------------------------------
    def source_roots(self) -> dict[str, Path]:
        """Dataset name -> folder the manifest's relative paths start from."""
        return {self.name: self._require_source()}

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        raise NotImplementedError

    def sources_card(self) -> dict[str, Any]:
        return {}

    # -- shared ---------------------------------------------------------------------
    def _require_source(self) -> Path:
        if self.source is None:
            raise FileNotFoundError(f"building {self.name!r} needs --source DIR (the dataset as you have it on disk)")
        if not self.source.is_dir():
            raise FileNotFoundError(f"--source {self.source} is not a folder")
        return self.source

    def ontology(self) -> Ontology:
        return load(str(self.ontology_path) if self.ontology_path else None)

    def extra_stop(self, ontology: Ontology) -> frozenset[str]:
        return frozenset(ontology.mid(n) for n in self.extra_stop_names)

    def share_class(self, t: PoolClip, i: PoolClip, closed: dict[str, frozenset[str]]) -> bool:
        return bool(closed[t.key] & closed[i.key])

    def window_for(self, t: PoolClip, i: PoolClip) -> int:
        cap = int(self.window_s * CANONICAL_RATE)
        if self.window_rule == "fixed":
            return cap
        return min(t.available, i.available, cap)

    def draw_offset(self, clip: PoolClip, window: int, rng: np.random.Generator) -> tuple[int, int]:
        """(offset, length) inside the file for a window of ``window`` samples."""
        if clip.segment is not None:
            off, n = clip.segment
            return off, min(n, window)
        if clip.length <= window:
            return 0, clip.length
        return int(rng.integers(0, clip.length - window + 1)), window

    def build(self, out_dir: Path, progress: bool = True) -> Path:
        ontology = self.ontology()
        pool, report = self.scan(ontology)
        stop = self.extra_stop(ontology)
        closed = {c.key: ontology.closed(c.labels, stop) for c in pool}
        if len(pool) < 2:
            raise RuntimeError(f"{self.name}: only {len(pool)} usable source clip(s) found under {self.source}")
        rng = np.random.default_rng(self.seed)
        loader = ClipLoader(self.source_roots())
        writer = TestSetWriter(out_dir)
        alive = list(pool)
        used: set[tuple[str, str]] = set()
        rejected = {"shared_class": 0, "same_clip": 0, "used_pair": 0}
        try:
            bar = tqdm(total=self.n_items, desc=f"build {self.name}", disable=not progress, unit="item")
            k = 0
            while k < self.n_items:
                if len(alive) < 2:
                    raise RuntimeError(f"{self.name}: the pool ran out of readable clips after {k} items")
                t = alive[int(rng.integers(len(alive)))]
                for _ in range(self.max_redraws):
                    i = alive[int(rng.integers(len(alive)))]
                    if i.key == t.key:
                        rejected["same_clip"] += 1
                    elif self.share_class(t, i, closed):
                        rejected["shared_class"] += 1
                    elif (t.key, i.key) in used:
                        rejected["used_pair"] += 1
                    else:
                        break
                else:
                    raise RuntimeError(
                        f"{self.name}: no interferer without a shared class for {t.key} after "
                        f"{self.max_redraws} draws; the pool is too small or too homogeneous"
                    )
                spec = self._item_spec(k, t, i, rng)
                try:
                    target, interferer = render(loader, spec.source)
                    writer.add(ItemSpec(**{**spec.__dict__, "target": target, "interferer": interferer}))
                except (AudioReadError, SilentSourceError) as exc:
                    bad = [c for c in (t, i) if not _decodes(loader, c)]
                    for c in bad:
                        report.unreadable.append(f"{c.path}: {exc}")
                        alive.remove(c)
                    if not bad:  # both decode: a silent window; drop nothing, redraw the item
                        rejected.setdefault("silent_window", 0)
                        rejected["silent_window"] += 1
                    continue
                used.add((t.key, i.key))
                k += 1
                bar.update(1)
            bar.close()
            card = self.base_card()
            card.update(
                sources={**self.sources_card(), "pool": {"usable": len(pool), "after_build": len(alive)}, **report.card()},
                recipe={
                    "snr_db": {"distribution": "uniform", "range": list(self.snr_range), "rounded_to": 1e-4},
                    "window": {"rule": self.window_rule, "seconds": self.window_s},
                    "crop": "uniform offset over (source length - window) at 16 kHz; shorter sources zero-padded at the end",
                    "class_rule": self.class_rule_text,
                    "stop_list": sorted(ontology.name(m) for m in ontology.stop_list | stop),
                    "mixing": "DCASE 2024 task 9 (whole-window power ratio, peak 0.9 protection)",
                    "tasks": "extract / remove with probability 1/2",
                    "ontology": str(ontology.path.name),
                },
                class_rule_rejections=rejected,
            )
            return writer.finish(card)
        except BaseException:
            writer.abort()
            raise

    def _item_spec(self, k: int, t: PoolClip, i: PoolClip, rng: np.random.Generator) -> ItemSpec:
        window = self.window_for(t, i)
        t_off, t_len = self.draw_offset(t, window, rng)
        i_off, i_len = self.draw_offset(i, window, rng)
        snr = float(rng.uniform(*self.snr_range))
        task = "extract" if rng.random() < 0.5 else "remove"
        described = t if task == "extract" else i
        options = described.descriptions()
        ci = int(rng.integers(len(options)))
        caption = options[ci]
        text = instruction(task, caption, described.query_style, rng)
        ontology = self.ontology()
        return ItemSpec(
            id=f"{self.name}-{k:05d}",
            task=task,
            caption=caption,
            instruction=text,
            target=np.zeros(0, np.float32),
            interferer=np.zeros(0, np.float32),
            snr_db=snr,
            target_captions=list(t.descriptions()),
            target_labels=sorted(ontology.name(m) for m in t.labels),
            interferer_labels=sorted(ontology.name(m) for m in i.labels),
            source={
                "builder": f"{type(self).__module__}:{type(self).__qualname__}",
                "builder_version": self.version,
                "seed": self.seed,
                "window": window,
                "target": source_record(t, t_off, t_len, ci if described is t else None),
                "interferer": source_record(i, i_off, i_len, ci if described is i else None),
            },
        )


def _decodes(loader: ClipLoader, clip: PoolClip) -> bool:
    try:
        loader.audio(clip.dataset, clip.path)
        return True
    except AudioReadError:
        return False


def header_length(path: Path, report: ScanReport, label: str) -> int | None:
    """16 kHz length from the header, or None (listed as unreadable)."""
    try:
        return file_length_16k(path)
    except (AudioReadError, RuntimeError, sf.LibsndfileError) as exc:
        report.unreadable.append(f"{label}: {exc}")
        return None
