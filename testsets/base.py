"""What every test-set builder shares: the folder it writes and how an item is written.

A builder decides which two sources form each item (its class rule, crops, SNR, task,
instruction) and hands :class:`ItemSpec` objects with the cropped 16 kHz sources to
:class:`TestSetWriter`, which mixes them with the DCASE arithmetic, writes the three
stems, and finally the manifest and the card. The set is written into a temporary folder
and renamed into place, so an interrupted build never leaves a half-written set that
looks complete; a failed build also removes the parent folders it created, and a folder
that is not a built test set is never overwritten.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hsm_bench import __version__
from hsm_bench.errors import BuildError, ConfigError
from hsm_bench.hashing import sha256_file
from hsm_bench.audio.io import write_audio
from hsm_bench.audio.resample import RESAMPLER_ID
from hsm_bench.store.jsonl import atomic_write_json, dumps
from testsets.mixing import Mix, mix_at_snr

CANONICAL_RATE = 16000
STEM_SUBTYPE = "PCM_16"
CARD_LIST_LIMIT = 200  # entries kept per list in a card (missing, skipped, ...); counts stay complete


@dataclass
class ItemSpec:
    id: str
    task: str
    caption: str
    instruction: str
    target: np.ndarray  # cropped/padded source at the canonical rate
    interferer: np.ndarray
    snr_db: float
    target_captions: list[str]
    target_labels: list[str]
    interferer_labels: list[str]
    source: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    # how `caption` is phrased: "caption" (a sentence) or "label" (a class name); baselines
    # query differently (e.g. a prompt template around labels), as their papers did
    query_style: str = "caption"


class TestSetWriter:
    __test__ = False

    def __init__(self, final_dir: Path, sample_rate: int = CANONICAL_RATE):
        self.final_dir = Path(final_dir)
        self.sample_rate = sample_rate
        self.tmp_dir = self.final_dir.with_name(f".{self.final_dir.name}.building-{os.getpid()}")
        _check_replaceable(self.final_dir)
        # remembered so that a failed build can take back the folders it made (e.g. a new
        # <data>/testsets/<name>/), leaving the tree as it was
        self._created = _missing_parents(self.tmp_dir.parent)
        self.rows: list[dict[str, Any]] = []
        try:
            if self.tmp_dir.exists():
                shutil.rmtree(self.tmp_dir)
            for role in ("mixture", "target", "interferer"):
                (self.tmp_dir / "audio" / role).mkdir(parents=True)
        except OSError as exc:
            self.abort()
            raise BuildError(f"cannot create the output folder {self.final_dir}: {exc.strerror or exc}; "
                             "choose another output folder (--out)") from exc  # fmt: skip

    def add(self, spec: ItemSpec) -> Mix:
        # the manifest stores the SNR rounded; mixing with that same value keeps a rebuild
        # from the manifest bit-exact
        spec.snr_db = round(float(spec.snr_db), 4)
        mix = mix_at_snr(spec.target, spec.interferer, spec.snr_db)
        self.write_stems(spec, mix.mixture, mix.target, mix.interferer, mix.gains())
        return mix

    def write_stems(self, spec: ItemSpec, mixture: np.ndarray, target: np.ndarray, interferer: np.ndarray,
                    gains: dict[str, float]) -> None:  # fmt: skip
        """Write three given stems (pre-mixed imports use this directly) and the row."""
        stems = {"mixture": mixture, "target": target, "interferer": interferer}
        paths, hashes = {}, {}
        for role, audio in stems.items():
            rel = f"audio/{role}/{spec.id}.wav"
            write_audio(self.tmp_dir / rel, audio, self.sample_rate, subtype=STEM_SUBTYPE)
            paths[role] = rel
            hashes[role] = sha256_file(self.tmp_dir / rel)
        row = {
            "id": spec.id,
            **paths,
            "task": spec.task,
            "caption": spec.caption,
            "query_style": spec.query_style,
            "instruction": spec.instruction,
            "target_captions": list(spec.target_captions),
            "target_labels": list(spec.target_labels),
            "interferer_labels": list(spec.interferer_labels),
            "snr_db": round(float(spec.snr_db), 4),
            "duration_s": round(len(mixture) / self.sample_rate, 4),
            "sample_rate": self.sample_rate,
            "source": {**spec.source, "gains": {k: round(v, 8) for k, v in gains.items()}},
            "sha256": hashes,
            **spec.extra,
        }
        self.rows.append(row)

    def finish(self, card: dict[str, Any]) -> Path:
        self.rows.sort(key=lambda r: r["id"])
        manifest = self.tmp_dir / "manifest.jsonl"
        with open(manifest, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(dumps(row, sort_keys=True) + "\n")
        snrs = np.array([r["snr_db"] for r in self.rows]) if self.rows else np.zeros(0)
        card = {
            **card,
            "sample_rate": self.sample_rate,
            "channels": 1,
            "stem_format": f"WAV {STEM_SUBTYPE}",
            "resampler": RESAMPLER_ID,
            "n_items": len(self.rows),
            "tasks": {t: sum(r["task"] == t for r in self.rows) for t in ("extract", "remove")},
            "snr_summary": _summary(snrs),
            "manifest_sha256": sha256_file(manifest),
            "hsm_bench_version": __version__,
        }
        atomic_write_json(self.tmp_dir / "card.json", card)
        _check_replaceable(self.final_dir)  # the folder may have changed during a long build
        # the previous set stays whole until the new one is in place
        old = self.final_dir.with_name(f".{self.final_dir.name}.replaced-{os.getpid()}")
        if old.exists():  # left by a crash of an earlier process with this pid
            shutil.rmtree(old)
        if self.final_dir.exists():
            os.replace(self.final_dir, old)
        try:
            os.replace(self.tmp_dir, self.final_dir)
        except OSError:
            if old.exists():
                os.replace(old, self.final_dir)
            raise
        if old.is_symlink():  # --out was a link to a set: drop the link, not what it points to
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
        return self.final_dir

    def abort(self) -> None:
        """Remove everything this writer created; folders others filled meanwhile stay."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    out = []
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def _check_replaceable(final_dir: Path) -> None:
    """Only a built test set or an empty folder may be replaced: anything else is the user's."""
    if not final_dir.exists() and not final_dir.is_symlink():
        return
    if not final_dir.is_dir():
        raise BuildError(f"the output path {final_dir} exists and is not a folder; choose another output folder (--out)")
    if (final_dir / "card.json").is_file() or not any(final_dir.iterdir()):
        return
    raise BuildError(
        f"the output folder {final_dir} exists and is not a built test set (no card.json); "
        "it is left untouched: remove it yourself or choose a new or empty output folder (--out)"
    )


def _summary(x: np.ndarray) -> dict[str, Any]:
    if not len(x):
        return {}
    hist, edges = np.histogram(x, bins=6)
    return {
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": round(float(x.mean()), 4),
        "std": round(float(x.std()), 4),
        "histogram": {"counts": hist.tolist(), "edges": [round(float(e), 3) for e in edges]},
    }


class Builder:
    """Base of the test-set builders: cheap construction, ``build()`` writes the folder."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    default_n_items: ClassVar[int] = 500
    default_seed: ClassVar[int] = 0

    def __init__(self, n_items: int | None = None, seed: int | None = None, source: str | None = None, **params: Any):
        self.n_items = int(n_items if n_items is not None else self.default_n_items)
        if self.n_items < 1:  # an empty set would build "successfully" and score nothing
            raise ConfigError(f"--n-items {self.n_items}: a test set needs at least one item")
        self.seed = int(seed if seed is not None else self.default_seed)
        self.source = Path(source).expanduser() if source else None
        self.params = params

    def folder_version(self) -> str:
        """``v<builder version>``, with the seed and size when they differ from the defaults."""
        v = f"v{self.version}"
        if self.seed != self.default_seed:
            v += f"-seed{self.seed}"
        if self.n_items != self.default_n_items:
            v += f"-n{self.n_items}"
        return v

    def output_dir(self, data_dir: str | Path) -> Path:
        return Path(data_dir).expanduser() / "testsets" / self.name / self.folder_version()

    def build(self, out_dir: Path, progress: bool = True) -> Path:
        raise NotImplementedError

    def base_card(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.folder_version(),
            "builder": f"{type(self).__module__}:{type(self).__qualname__}",
            "builder_version": self.version,
            "seed": self.seed,
            "params": self.params,
        }

