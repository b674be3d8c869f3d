"""Re-creating test sets: rebuild from a manifest, and import peers' published lists.

``hsm-bench build-testset [NAME] --from-manifest FILE --source DIR`` reads the sources each
row records (dataset, file, offset, length, SNR) from DIR and renders them with the same code
as the builders, so a manifest written by another user rebuilds to the same bytes; every
stem is checked against the manifest's sha256 and mismatches are reported.

``--import audiosep:CSV --source DIR`` adopts AudioSep's evaluation lists
(``evaluation/metadata/*_eval.csv``, columns ``idx, caption, [labels], src_wav, noise_wav...``)
with their pre-mixed audio (``segment-{idx}.wav`` and ``mixture-{idx}.wav`` under DIR):
target = segment, mixture = mixture, interferer = mixture - segment, SNR measured.
``--import dcase2024:CSV --source DIR`` mixes DCASE 2024 task 9 lists (``source, noise, snr,
query``; the clips under DIR) with the DCASE arithmetic on 10-s windows. Captions of three
words or fewer are treated as class labels for the instruction template.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hsm_bench.api.testset import ManifestError, ManifestRow
from hsm_bench.errors import BuildError
from hsm_bench.hashing import sha256_file
from hsm_bench.audio.io import AudioReadError, read_audio
from testsets.base import CANONICAL_RATE, CARD_LIST_LIMIT, ItemSpec, TestSetWriter
from testsets.instructions import instruction
from testsets.mixing import PEAK_TARGET, crop_or_pad, measured_snr_db
from testsets.pools import ClipLoader, index_audio, render, require_folder

COMPUTED_CARD_KEYS = ("sample_rate", "channels", "stem_format", "resampler", "n_items", "tasks", "snr_summary",
                      "manifest_sha256", "hsm_bench_version")  # fmt: skip


def _default_out(name: str, version: str) -> Path:
    from hsm_bench.paths import default_paths

    return Path(default_paths()["data_dir"]) / "testsets" / name / version


def _builder_class(target: str, manifest: Path):
    """The registered builder a manifest names; nothing else is imported (manifests travel)."""
    from hsm_bench.registry import TESTSETS

    for name in TESTSETS.names():
        if TESTSETS.target(name) == target:
            return TESTSETS.get(name)
    raise ManifestError(f"{manifest} names the builder {target!r}, which is not a registered test-set builder "
                        "(hsm-bench ls testsets); rebuild it where that builder is installed")  # fmt: skip


def _plain_folder_name(value) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith(".") and not any(c in value for c in "/\\")


def read_manifest(manifest: Path) -> list[ManifestRow]:
    """The rows of a manifest.jsonl, or a ManifestError naming the file and what is wrong."""
    what = "the manifest.jsonl of a built test set"
    if not manifest.exists():
        raise ManifestError(f"--from-manifest {manifest}: no such file (expected {what})")
    if not manifest.is_file():
        raise ManifestError(f"--from-manifest {manifest} is not a file (expected {what})")
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ManifestError(f"--from-manifest {manifest} is not {what}: it is not UTF-8 text") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as exc:
            raise ManifestError(f"--from-manifest {manifest}:{n} is not {what}: line {n} is not JSON ({exc})") from None
        if not isinstance(d, dict):
            raise ManifestError(f"--from-manifest {manifest}:{n} is not {what}: line {n} is not a JSON object")
        rows.append(ManifestRow.from_dict(d, f"{manifest}:{n}"))
    if not rows:
        raise ManifestError(f"--from-manifest {manifest} holds no rows (expected {what})")
    return rows


def _source_file(roots: dict[str, Path], row: ManifestRow, role: str) -> Path:
    try:
        rec = row.source[role]
        return roots[rec["dataset"]] / rec["file"]
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"item {row.id}: its source record has no usable {role} entry ({exc!r}); "
                            "the manifest was not written by an hsm-bench builder") from None  # fmt: skip


def build_from_manifest(name: str | None, manifest: Path, source: str | None, out: str | None = None,
                        progress: bool = True) -> Path:  # fmt: skip
    manifest = Path(manifest).expanduser()
    rows = read_manifest(manifest)
    card_path = manifest.with_name("card.json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{card_path} (beside the manifest) is not a test-set card: {exc}") from None
    builder_target = rows[0].source.get("builder") if isinstance(rows[0].source, dict) else None
    if not builder_target:
        raise ManifestError(
            f"{manifest} does not record the builder of its items (imported or demo sets): rebuild the demo with "
            "`hsm-bench build-testset demo --seed N`, imports with `--import` again"
        )
    if source is None:
        raise BuildError("--from-manifest needs --source DIR: the source dataset the manifest refers to")
    cls = _builder_class(builder_target, manifest)
    params = {k: v for k, v in (card.get("params") or {}).items() if k.endswith("_source") is False}
    builder = cls(source=source, **params)
    name = name or card.get("name") or cls.name
    version = card.get("version") or builder.folder_version()
    if not out:
        # the card travels with the manifest: its name and version must not steer the
        # default output path outside <data>/testsets
        for value in (name, version):
            if not _plain_folder_name(value):
                raise ManifestError(f"{card_path} gives the test set name/version {value!r}, which is not a plain "
                                    "folder name; give the output folder with --out")  # fmt: skip
    target_dir = Path(out).expanduser() if out else _default_out(name, version)
    roots = builder.source_roots()
    for dataset, root in roots.items():
        require_folder(root, f"--source for {dataset}:", "the dataset the manifest was built from")
    absent = sorted({str(f) for r in rows for f in (_source_file(roots, r, "target"), _source_file(roots, r, "interferer"))
                     if not f.is_file()})  # fmt: skip
    if absent:
        raise BuildError(
            f"{len(absent)} source file(s) the manifest {manifest} refers to are not under --source {source} "
            f"(e.g. {absent[0]}); --source must hold the dataset the manifest was built from, in its own layout"
        )
    loader = ClipLoader(roots)
    writer = TestSetWriter(target_dir)
    mismatched = []
    try:
        for row in tqdm(rows, desc=f"rebuild {name}", disable=not progress, unit="item"):
            try:
                target, interferer = render(loader, row.source)
            except AudioReadError as exc:
                raise BuildError(f"item {row.id}: {exc}; replace the file with the dataset's original") from None
            src = {k: v for k, v in row.source.items() if k != "gains"}
            writer.add(ItemSpec(id=row.id, task=row.task, caption=row.caption, instruction=row.instruction,
                                target=target, interferer=interferer, snr_db=row.snr_db,
                                target_captions=row.target_captions, target_labels=row.target_labels,
                                interferer_labels=row.interferer_labels, source=src,
                                extra={k: v for k, v in row.extra.items() if k != "query_style"},
                                query_style=row.query_style))  # fmt: skip
            written = writer.rows[-1]["sha256"]
            if written != row.sha256:
                mismatched.append(row.id)
        base = {k: v for k, v in card.items() if k not in COMPUTED_CARD_KEYS} or builder.base_card()
        base.update(name=name, version=version, rebuilt_from={"manifest": str(manifest), "sha256": sha256_file(manifest)})
        path = writer.finish(base)
    except BaseException:
        writer.abort()
        raise
    if mismatched:
        print(f"warning: {len(mismatched)} item(s) differ from the manifest's sha256 (different source files?): "
              f"{', '.join(mismatched[:10])}")  # fmt: skip
    return path


def _style(caption: str) -> str:
    return "label" if len(caption.split()) <= 3 else "caption"


IMPORT_KINDS = {
    # kind -> (columns its list must have, what the list is, what --source must hold)
    "audiosep": (("idx", "caption", "src_wav"), "an AudioSep evaluation list (idx, caption, [labels], src_wav, noise_wav...)",
                 "segment-{idx}.wav and mixture-{idx}.wav of every row"),
    "dcase2024": (("source", "noise", "snr", "query"), "a DCASE 2024 task 9 list (source, noise, snr, query)",
                  "the source and noise clips the list names"),
}  # fmt: skip


class _NotFound(Exception):
    """An audio file a list row names is not under --source."""


def _read_import_list(kind: str, csv_file: Path) -> tuple[list[str], list[dict]]:
    columns, what, _ = IMPORT_KINDS[kind]
    if not csv_file.exists():
        raise BuildError(f"--import {kind}:{csv_file}: no such file (expected {what})")
    if not csv_file.is_file():
        raise BuildError(f"--import {kind}:{csv_file} is not a file (expected {what})")
    try:
        with open(csv_file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            rows = [dict(zip(header, r)) | {"_cells": r} for r in reader if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BuildError(f"--import {kind}:{csv_file} is not {what}: cannot read it as CSV ({exc})") from None
    lacking = [c for c in columns if c not in header]
    if lacking:
        raise BuildError(f"--import {kind}:{csv_file} is not {what}: its header has no {', '.join(lacking)} column(s)")
    if not rows:
        raise BuildError(f"--import {kind}:{csv_file} lists no items (expected {what})")
    return header, rows


def import_list(spec: str, name: str | None, source: str | None, out: str | None = None, progress: bool = True) -> Path:
    kind, _, csv_path = spec.partition(":")
    if kind not in IMPORT_KINDS or not csv_path:
        raise BuildError(f"--import expects audiosep:CSV or dcase2024:CSV, got {spec!r}")
    if source is None:
        raise BuildError(f"--import {kind} needs --source DIR with the audio the list refers to")
    _, _, holds = IMPORT_KINDS[kind]
    source_dir = require_folder(Path(source).expanduser(), f"--import {kind}: --source", holds)
    csv_file = Path(csv_path).expanduser()
    header, rows = _read_import_list(kind, csv_file)
    name = name or f"{kind}-{csv_file.stem}"
    target_dir = Path(out).expanduser() if out else _default_out(name, "v1")
    files = index_audio(source_dir)
    writer = TestSetWriter(target_dir)
    missing: list[str] = []
    rng = np.random.default_rng(0)
    try:
        add = _add_audiosep if kind == "audiosep" else _add_dcase
        for k, row in enumerate(tqdm(rows, desc=f"import {kind}", disable=not progress, unit="item")):
            try:
                add(writer, name, k, row, header, files, rng)
            except (_NotFound, AudioReadError, ValueError) as exc:
                missing.append(f"row {k}: {exc}")
            except KeyError as exc:  # a short row
                missing.append(f"row {k}: no {exc.args[0]} cell")
        if not writer.rows:
            raise BuildError(
                f"--import {kind}: could make 0 of {len(rows)} items: no row of {csv_file} found its audio under "
                f"--source {source_dir} ({missing[0]}); --source must hold {holds}"
            )
        card = {
            "name": name, "version": "v1", "builder": f"testsets.rebuild:import_list ({kind})",
            "sources": {"list": str(csv_file), "list_sha256": sha256_file(csv_file), "rows": len(rows),
                        "missing": {"count": len(missing), "items": missing[:CARD_LIST_LIMIT]}},
            "recipe": {"audiosep": "pre-mixed segment/mixture files; interferer = mixture - segment; SNR measured",
                       "dcase2024": "DCASE 2024 task 9 arithmetic at the listed SNR on 10-s windows"}[kind],
        }  # fmt: skip
        return writer.finish(card)
    except BaseException:
        writer.abort()
        raise


def _need(files: dict[str, Path], name: str) -> Path:
    if name not in files:
        raise _NotFound(f"{name} not found under --source")
    return files[name]


def _add_audiosep(writer, name, k, row, header, files, rng) -> None:
    idx = int(row["idx"])
    caption = row["caption"].strip()
    target, _ = read_audio(_need(files, f"segment-{idx}.wav"), sample_rate=CANONICAL_RATE, mono=True)
    mixture, _ = read_audio(_need(files, f"mixture-{idx}.wav"), sample_rate=CANONICAL_RATE, mono=True)
    n = min(len(target), len(mixture))
    target, mixture = target[:n].astype(np.float64), mixture[:n].astype(np.float64)
    interferer = mixture - target
    peak = max(np.abs(target).max(), np.abs(mixture).max(), np.abs(interferer).max())
    scale = PEAK_TARGET / peak if peak > 0.999 else 1.0  # 16-bit stems must stay below 1
    noise_cols = [c for c in row["_cells"][header.index("src_wav") + 1 :]]
    labels = row.get("labels", "").strip()
    spec = ItemSpec(
        id=f"{name}-{idx:05d}", task="extract", caption=caption, query_style=_style(caption),
        instruction=instruction("extract", caption, _style(caption), rng),
        target=np.zeros(0), interferer=np.zeros(0), snr_db=round(measured_snr_db(target, interferer), 4),
        target_captions=[caption], target_labels=[labels] if labels else [], interferer_labels=[],
        source={"dataset": "audiosep", "idx": idx, "src_wav": row["src_wav"], "noise_wavs": noise_cols,
                "files": [f"segment-{idx}.wav", f"mixture-{idx}.wav"]},
    )  # fmt: skip
    writer.write_stems(spec, (mixture * scale).astype(np.float32), (target * scale).astype(np.float32),
                       (interferer * scale).astype(np.float32), {"peak_scale": scale})  # fmt: skip


def _add_dcase(writer, name, k, row, header, files, rng) -> None:
    n = int(10 * CANONICAL_RATE)
    src, noise = row["source"].strip(), row["noise"].strip()
    s, _ = read_audio(_need(files, Path(src).name), sample_rate=CANONICAL_RATE, mono=True)
    v, _ = read_audio(_need(files, Path(noise).name), sample_rate=CANONICAL_RATE, mono=True)
    caption = row["query"].strip()
    writer.add(ItemSpec(
        id=f"{name}-{k:05d}", task="extract", caption=caption, query_style=_style(caption),
        instruction=instruction("extract", caption, _style(caption), rng),
        target=crop_or_pad(s, n, 0), interferer=crop_or_pad(v, n, 0), snr_db=float(row["snr"]),
        target_captions=[caption], target_labels=[], interferer_labels=[],
        source={"dataset": "dcase2024", "source": src, "noise": noise},
    ))  # fmt: skip
