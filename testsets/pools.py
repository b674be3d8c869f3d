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

When ``max_redraws`` redraws find no interferer for a target, every clip still in the
pool is checked: if some are valid partners, one is picked uniformly with the same
generator; if none is, the target is skipped (listed in the card with the reason, never
drawn as a target again, still usable as an interferer) and the item is drawn again. The
build fails, leaving nothing behind, only when no unused valid pair is left before the
requested number of items is made; the message says how many could be made.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
from tqdm import tqdm

from hsm_bench.audio.io import AUDIO_EXTENSIONS, AudioReadError, read_audio
from hsm_bench.audio.resample import resampled_length
from hsm_bench.errors import BuildError
from testsets.base import CANONICAL_RATE, CARD_LIST_LIMIT, Builder, ItemSpec, TestSetWriter
from testsets.instructions import instruction
from testsets.mixing import SilentSourceError, crop_or_pad
from testsets.ontology import Ontology, load

REPORT_LISTS = ("missing", "unreadable", "untagged", "too_short", "skipped")


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
    skipped: list[str] = field(default_factory=list)  # targets without a partner, found while building

    def card(self, limit: int = CARD_LIST_LIMIT) -> dict[str, Any]:
        out: dict[str, Any] = {"found": self.found}
        for key in REPORT_LISTS:
            items = getattr(self, key)
            out[key] = {"count": len(items), "items": sorted(items)[:limit]}
        return out

    def scan_summary(self) -> list[str]:
        """What the scan left out, as phrases for a one-line message."""
        out = []
        for key, what in (("missing", "listed clip(s) not found"), ("unreadable", "unreadable"),
                          ("untagged", "without a class"), ("too_short", "too short")):  # fmt: skip
            items = getattr(self, key)
            if items:
                out.append(f"{len(items)} {what} (e.g. {sorted(items)[0]})")
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
            raise BuildError(f"building {self.name!r} needs --source DIR (the dataset as you have it on disk)")
        return require_folder(self.source, f"{self.name}: --source", "the dataset as you have it on disk")

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
            raise BuildError(self._shortfall(0, len(pool), report, {}))
        rng = np.random.default_rng(self.seed)
        loader = ClipLoader(self.source_roots())
        writer = TestSetWriter(out_dir)
        alive = list(pool)
        # kept in the same order as ``alive`` so that, until a target is skipped, drawing
        # from it is the draw builds made before skipping existed (same bytes)
        targets = list(pool)
        used: set[tuple[str, str]] = set()
        rejected = {"shared_class": 0, "same_clip": 0, "used_pair": 0}
        skips: dict[str, list[str]] = {}  # kind of skip -> target keys, for the failure message
        exhausted = 0
        try:
            bar = tqdm(total=self.n_items, desc=f"build {self.name}", disable=not progress, unit="item")
            k = 0
            while k < self.n_items:
                if len(alive) < 2 or not targets:
                    raise BuildError(self._shortfall(k, len(pool), report, skips))
                t = targets[int(rng.integers(len(targets)))]
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
                    exhausted += 1
                    i = self._partner_after_budget(t, alive, closed, used, rng, report, skips, ontology)
                    if i is None:
                        targets.remove(t)
                        continue
                spec = self._item_spec(k, t, i, rng)
                try:
                    target, interferer = render(loader, spec.source)
                    writer.add(ItemSpec(**{**spec.__dict__, "target": target, "interferer": interferer}))
                except (AudioReadError, SilentSourceError) as exc:
                    bad = [c for c in (t, i) if not _decodes(loader, c)]
                    for c in bad:
                        report.unreadable.append(f"{c.path}: {exc}")
                        alive.remove(c)
                        if c in targets:
                            targets.remove(c)
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
                    "redraws": f"up to {self.max_redraws} per item, then a uniform pick among all valid partners, "
                               "or the target is skipped when it has none",
                },
                class_rule_rejections=rejected,
                redraw_budget={"per_item": self.max_redraws, "exhausted": exhausted},
            )
            return writer.finish(card)
        except BaseException:
            writer.abort()
            raise

    def _partner_after_budget(self, t: PoolClip, alive: list[PoolClip], closed: dict[str, frozenset[str]],
                              used: set[tuple[str, str]], rng: np.random.Generator, report: ScanReport,
                              skips: dict[str, list[str]], ontology: Ontology) -> PoolClip | None:  # fmt: skip
        """A uniform pick among every valid partner of ``t``, or None (``t`` recorded as skipped)."""
        free = [c for c in alive if c.key != t.key and not self.share_class(t, c, closed)]
        valid = [c for c in free if (t.key, c.key) not in used]
        if valid:
            return valid[int(rng.integers(len(valid)))]
        if free:
            skips.setdefault("partners_used", []).append(t.key)
            reason = f"all {len(free)} interferer(s) without a shared class are already paired with it"
        else:
            skips.setdefault("no_partner", []).append(t.key)
            classes = " + ".join(sorted(ontology.name(m) for m in ontology.most_specific(sorted(t.labels))))
            reason = f"no interferer without a shared class (its classes: {classes}; every other usable clip shares one)"
        report.skipped.append(f"{t.key}: {reason}")
        return None

    def _shortfall(self, made: int, usable: int, report: ScanReport, skips: dict[str, list[str]]) -> str:
        """The one-line reason a build stopped short, and what to do about it."""
        why = []
        for kind, what in (("no_partner", "have no partner without a shared class"),
                           ("partners_used", "have used up every partner without a shared class")):  # fmt: skip
            if skips.get(kind):
                why.append(f"{len(skips[kind])} target clip(s) {what} (e.g. {sorted(skips[kind])[0]})")
        why += report.scan_summary()
        where = f" under {self.source}" if self.source else ""
        fix = f"build fewer with --n-items {made} or add source clips" if made else "add source clips"
        return (f"{self.name}: could make {made} of {self.n_items} items from {usable} usable clip(s){where}: "
                f"{'; '.join(why) or 'too few usable clips of different classes'}; {fix}")  # fmt: skip

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
            query_style=described.query_style,
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


def require_folder(path: Path, what: str, expected: str) -> Path:
    """``path`` if it is a folder, else a one-line BuildError naming it and what belongs there."""
    if not path.exists():
        raise BuildError(f"{what} {path} does not exist (no such folder; expected {expected})")
    if not path.is_dir():
        raise BuildError(f"{what} {path} is not a folder (expected {expected})")
    return path


def find_file(root: Path, name: str, what: str) -> Path:
    """``root/name``, else the first ``name`` in any subfolder (sorted), else a BuildError."""
    direct = root / name
    if direct.is_file():
        return direct
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if not found:
        raise BuildError(f"no {name} in {root} or any of its subfolders: --source must hold {what}")
    return found[0]


def read_list_csv(path: Path, columns: tuple[str, ...], what: str, encoding: str = "utf-8") -> list[dict[str, str]]:
    """The rows of a dataset's list file, or a BuildError when it is not that file."""
    try:
        with open(path, newline="", encoding=encoding) as f:
            reader = csv.DictReader(f)
            lacking = [c for c in columns if c not in (reader.fieldnames or [])]
            if lacking:
                raise BuildError(f"{path} is not {what}: it has no column(s) {', '.join(lacking)} "
                                 f"(expected {','.join(columns)} in its header)")  # fmt: skip
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BuildError(f"{path} is not {what}: cannot read it as CSV ({exc})") from exc
    except OSError as exc:
        raise BuildError(f"cannot read {path} ({what}): {exc.strerror or exc}") from exc


def header_length(path: Path, report: ScanReport, label: str) -> int | None:
    """16 kHz length from the header, or None (listed as unreadable)."""
    try:
        return file_length_16k(path)
    except (AudioReadError, RuntimeError, sf.LibsndfileError) as exc:
        report.unreadable.append(f"{label}: {exc}")
        return None
