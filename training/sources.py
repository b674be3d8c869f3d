"""Clip pools for training HSM-TSS, and the guard that keeps them apart from the test sets.

A pool is a list of :class:`TrainClip`: a sound (in memory, or a file read at 16 kHz), the
classes the "no shared class" rule compares, readable labels, captions, and the identities
the overlap guard compares with a built test set's manifest.

Where pools come from:

* :func:`pool_from_demo`: the offline demo sources (:mod:`testsets.demo_sources`), held out
  from the demo test set. Families generated from a seed (General MIDI phrases, procedural
  sounds) are held out *by seed*: the pool is rendered from variant indices the catalogue
  never uses (``instrument/violin/3`` onwards, fresh melodies and noise; the soundfont's
  samples are shared, as a class is). Families made from a finite set of recordings are held
  out *by source file*: the ten animal mp3s (every variant of one animal repeats the same
  recording) and the espeak utterances of a voice (every variant of a voice reads the same
  eight sentences). A demo set of the default size (200 items over 76 sources) uses every
  animal and every voice, and any seed may draw any of them, so they are left out entirely
  unless a built demo set is given (``testset_root``): then the animals and voices that set
  does not use are kept.
* :func:`pool_from_folder`: a folder of audio plus a CSV (``file`` and ``labels`` (";"-separated)
  and/or ``caption`` columns), classes from the labels or else from the caption tagger, as the
  AudioCaps/Clotho builders do (:mod:`testsets.pools`, :mod:`testsets.tags`).
* :func:`pool_from_manifest`: the clips a built test set's manifest names (demo keys, or the
  ``dataset``/``file``/``mids`` records of the real-dataset builders).

:func:`check_disjoint` refuses a pool that shares clips with a built test set. Manifests
record source identities, not source hashes (their sha256 fields are of the mixed, scaled
stems), so clips are compared by identity: demo keys and the recording/voice they come from,
and file names (stem without extension) anywhere in a row's ``source`` record, which covers
builder rows (``file``) and imports (``src_wav``, ``noise``...).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsm_bench.audio.io import AUDIO_EXTENSIONS
from hsm_bench.errors import ConfigError
from testsets.base import CANONICAL_RATE

DEMO_FINITE_FAMILIES = ("animal", "speech")  # made from a finite set of recordings / utterances
DEMO_SEEDED_FAMILIES = ("instrument", "procedural")  # generated per seed


@dataclass(frozen=True, eq=False)
class TrainClip:
    key: str  # unique in the pool
    classes: frozenset[str]  # what the "no shared class" rule compares (closed ontology mids, or demo labels)
    labels: tuple[str, ...]  # readable class names (the rows' target_labels / interferer_labels)
    captions: tuple[str, ...] = ()
    label_text: str = ""  # description for label-style queries
    audio: np.ndarray | None = field(default=None, repr=False)  # 16 kHz mono, or None: read from root/path
    root: str = ""
    path: str = ""  # relative to root
    start: int = 0  # first sample of the clip in the file (fixed segments, e.g. MUSIC)
    length: int = 0  # samples at 16 kHz (len(audio) for in-memory clips)
    ids: frozenset[str] = frozenset()  # identities the overlap guard compares

    def __post_init__(self):
        if self.audio is not None and not self.length:
            object.__setattr__(self, "length", len(self.audio))


# -- identities ------------------------------------------------------------------------

def demo_group(key: str) -> str:
    """The unit a demo source is held out by: its recording (animals), its voice (speech), else itself."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] in DEMO_FINITE_FAMILIES:
        return "/".join(parts[:2])
    return key


def demo_ids(key: str) -> frozenset[str]:
    return frozenset({f"demo:{key}", f"demo-source:{demo_group(key)}"})


def file_id(path: str) -> str:
    return f"file:{Path(path).stem}"


def manifest_ids(source: Any) -> set[str]:
    """Every clip identity a manifest row's ``source`` record names (demo keys, audio file names)."""
    out: set[str] = set()
    demo = isinstance(source, dict) and source.get("dataset") == "demo"

    def walk(value: Any, name: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, name)
        elif isinstance(value, str):
            if demo and name == "key":
                out.update(demo_ids(value))
            elif Path(value).suffix.lower() in AUDIO_EXTENSIONS:
                out.add(file_id(value))

    walk(source)
    return out


def testset_ids(testset_root: str | Path) -> set[str]:
    from hsm_bench.api.testset import TestSet

    return set().union(*(manifest_ids(r.source) for r in TestSet(testset_root)))


def check_disjoint(pool: Iterable[TrainClip], testset_root: str | Path, force: bool = False) -> list[str]:
    """Keys of the pool's clips that a built test set also uses; a ConfigError unless ``force``."""
    used = testset_ids(testset_root)
    shared = sorted(c.key for c in pool if c.ids & used)
    if shared and not force:
        head = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
        raise ConfigError(
            f"the training pool shares {len(shared)} clip(s) with the test set {testset_root} ({head}): train on "
            "clips it does not use (e.g. pool_from_demo(exclude_testset=True) or another split), or pass force=True"
        )
    return shared


# -- demo -------------------------------------------------------------------------------

def _demo_clip(key: str, label: str, captions, audio: np.ndarray) -> TrainClip:
    # the demo builder's class rule: different labels (one flat label per source)
    return TrainClip(key=key, classes=frozenset({label}), labels=(label,), captions=tuple(captions), label_text=label,
                     audio=np.asarray(audio, dtype=np.float32), ids=demo_ids(key))  # fmt: skip


def _catalogue_variants(fn) -> int:
    """How many variants the demo catalogue renders with ``fn`` (load_demo_sources uses the defaults)."""
    return int(inspect.signature(fn).parameters["variants"].default)


def pool_from_demo(exclude_testset: bool = True, variants: int = 3, testset_root: str | Path | None = None,
                   families: Sequence[str] = DEMO_SEEDED_FAMILIES + DEMO_FINITE_FAMILIES,
                   ) -> list[TrainClip]:  # fmt: skip
    """Demo sources as a training pool; with ``exclude_testset`` held out from the demo test set (module doc).

    ``variants``: fresh seeds per instrument / procedural class. ``testset_root``: a built demo
    set whose unused animal recordings and voices may join the pool (without it none do).
    ``families``: which of "instrument", "procedural", "animal", "speech" to take.
    """
    unknown = sorted(set(families) - set(DEMO_SEEDED_FAMILIES + DEMO_FINITE_FAMILIES))
    if unknown:
        raise ConfigError(f"demo families {unknown} do not exist: use {DEMO_SEEDED_FAMILIES + DEMO_FINITE_FAMILIES}")
    if not exclude_testset:
        from testsets.demo_sources import load_demo_sources

        return [_demo_clip(s.key, s.label, s.captions, s.audio) for s in load_demo_sources(CANONICAL_RATE)
                if s.family in families]  # fmt: skip
    from testsets.demo_sources import instruments, procedural

    rows = []
    for family, fn in (("instrument", instruments.instrument_sources), ("procedural", procedural.procedural_sources)):
        if family not in families:
            continue
        base = _catalogue_variants(fn)
        # rendering all variants and dropping the catalogue's keeps the generator code in one place
        rows += [r for r in fn(variants=base + variants) if int(r["key"].rsplit("/", 1)[1]) >= base]
    pool = [_demo_clip(r["key"], r["label"], r["captions"], r["audio"]) for r in rows]
    if testset_root is not None:
        from testsets.demo_sources import load_demo_sources

        # the catalogue itself, so that these are exactly the sources the demo set draws from
        used = testset_ids(testset_root)
        wanted = set(DEMO_FINITE_FAMILIES) & set(families)
        finite = [s for s in load_demo_sources(CANONICAL_RATE) if s.family in wanted]
        pool += [_demo_clip(s.key, s.label, s.captions, s.audio) for s in finite if not demo_ids(s.key) & used]
    return pool


# -- files ------------------------------------------------------------------------------

def _ontology(ontology):
    from testsets.ontology import Ontology, load

    return ontology if isinstance(ontology, Ontology) else load(str(ontology) if ontology else None)


def _label_text(ontology, mids) -> str:
    from testsets.fsd50k import label_text

    return label_text(ontology, mids)


def file_clip(key: str, root: str | Path, path: str, mids, captions=(), label_text: str = "", length: int = 0,
              start: int = 0, ontology=None, extra_stop: frozenset[str] = frozenset()) -> TrainClip:  # fmt: skip
    """A clip read from ``root/path``; classes are ``mids`` closed under the ontology minus its stop-list."""
    ont = _ontology(ontology)
    mids = sorted(mids)
    return TrainClip(
        key=key, classes=ont.closed(mids, extra_stop), labels=tuple(sorted(ont.name(m) for m in mids)),
        captions=tuple(c for c in captions if c), label_text=label_text or _label_text(ont, mids),
        root=str(root), path=str(path), start=int(start), length=int(length), ids=frozenset({file_id(path)}),
    )  # fmt: skip


def from_pool_clip(clip, root: str | Path, ontology=None, extra_stop: frozenset[str] = frozenset()) -> TrainClip:
    """A :class:`testsets.pools.PoolClip` (what the builders' scans return) as a training clip."""
    start, length = clip.segment if clip.segment else (0, clip.length)
    return file_clip(clip.key, root, clip.path, clip.labels, clip.captions, clip.label_text, length, start,
                     ontology, extra_stop)  # fmt: skip


def pool_from_folder(root: str | Path, labels_csv: str | Path, ontology=None) -> list[TrainClip]:
    """Audio under ``root`` listed in a CSV with a ``file`` column and ``labels`` and/or ``caption`` columns.

    ``file``: a path relative to ``root`` or a file name found anywhere under it. ``labels``:
    AudioSet names or mids separated by ";" (names hold commas: "Violin, fiddle"). ``caption``: one
    caption per row; a file may have several rows (captions and labels accumulate). Clips without
    labels are classed by the caption tagger; missing, unreadable and unclassed clips are left out with one warning.
    """
    from testsets.ontology import OntologyError
    from testsets.pools import ScanReport, header_length, index_audio, read_list_csv, require_folder
    from testsets.tags import tagger_for

    root = require_folder(Path(root).expanduser(), "training pool folder", "the audio files the CSV lists")
    what = "a training clip list (columns file, and labels and/or caption)"
    rows = read_list_csv(Path(labels_csv).expanduser(), ("file",), what)
    if rows and not ({"labels", "caption"} & set(rows[0])):
        raise ConfigError(f"{labels_csv} is not {what}: it has neither a labels nor a caption column")
    ont = _ontology(ontology)
    clips: dict[str, dict] = {}
    for row in rows:
        c = clips.setdefault(row["file"].strip(), {"mids": set(), "captions": []})
        for name in (row.get("labels") or "").split(";"):
            if name.strip():
                try:
                    c["mids"].add(ont.mid(name.strip()))
                except OntologyError as exc:
                    raise ConfigError(f"{labels_csv}: file {row['file']!r}: {exc} (separate labels with ';')") from None
        if (row.get("caption") or "").strip():
            c["captions"].append(row["caption"].strip())
    by_name = None
    tagger = None
    report, pool = ScanReport(), []
    for name, c in clips.items():
        path = root / name
        if not path.is_file():
            by_name = by_name if by_name is not None else index_audio(root)
            path = by_name.get(Path(name).name)
        if path is None:
            report.missing.append(name)
            continue
        length = header_length(path, report, name)
        if length is None:
            continue
        report.found += 1
        mids = c["mids"]
        if not mids and c["captions"]:
            tagger = tagger or tagger_for(str(ont.path))
            mids = tagger.tag_all(c["captions"])
        if not mids:
            report.untagged.append(name)
            continue
        rel = str(path.relative_to(root))
        pool.append(file_clip(f"folder/{rel}", root, rel, mids, c["captions"], length=length, ontology=ont))
    left_out = report.scan_summary()
    if len(pool) < 2:
        why = f" ({'; '.join(left_out)})" if left_out else ""
        raise ConfigError(f"{labels_csv}: {len(pool)} usable clip(s) under {root}{why}; a pool needs at least two")
    if left_out:
        warnings.warn(f"training pool {labels_csv}: left out {'; '.join(left_out)}", stacklevel=2)
    return pool


def pool_from_manifest(manifest: str | Path, roots: str | Path | dict[str, str | Path] | None = None,
                       ontology=None) -> list[TrainClip]:  # fmt: skip
    """The clips a built test set's manifest names: demo keys (rendered from the catalogue), or the
    real-dataset builders' ``dataset``/``file`` records read from ``roots`` (one folder, or dataset -> folder)."""
    from testsets.rebuild import read_manifest

    rows = read_manifest(Path(manifest).expanduser())
    if all(isinstance(r.source, dict) and r.source.get("dataset") == "demo" for r in rows):
        from testsets.demo_sources import load_demo_sources

        keys = {r.source[role]["key"] for r in rows for role in ("target", "interferer")}
        catalogue = load_demo_sources(CANONICAL_RATE)
        return [_demo_clip(s.key, s.label, s.captions, s.audio) for s in catalogue if s.key in keys]
    if not all(isinstance(r.source, dict) and "builder" in r.source for r in rows):
        raise ConfigError(f"{manifest}: rows without a builder record (imported sets) hold pre-mixed or listed "
                          "audio, not clips with classes; use pool_from_folder with a clip list instead")  # fmt: skip
    if roots is None:
        raise ConfigError(f"pool_from_manifest({manifest}) needs roots: the folder(s) of the datasets it names")
    ont = _ontology(ontology)
    clips: dict[tuple[str, str], dict] = {}
    for r in rows:
        for role in ("target", "interferer"):
            rec = r.source[role]
            c = clips.setdefault((rec["dataset"], rec["file"]), {"mids": rec["mids"], "length": rec["file_length"],
                                                                 "captions": [], "label_text": ""})  # fmt: skip
            described = (role == "target") == (r.task == "extract")
            texts = list(r.target_captions) if role == "target" else ([r.caption] if described else [])
            if r.query_style == "label":
                c["label_text"] = c["label_text"] or (texts[0] if texts else "")
            else:
                c["captions"] += [t for t in texts if t not in c["captions"]]
    pool = []
    for (dataset, file), c in sorted(clips.items()):
        root = roots if not isinstance(roots, dict) else roots.get(dataset)
        if root is None:
            raise ConfigError(f"pool_from_manifest: no folder for dataset {dataset!r} in roots ({sorted(roots)})")
        pool.append(file_clip(f"{dataset}/{file}", Path(root).expanduser(), file, c["mids"], c["captions"],
                              c["label_text"], c["length"], ontology=ont))  # fmt: skip
    return pool
