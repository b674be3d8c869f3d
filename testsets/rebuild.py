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
import importlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hsm_bench.api.testset import ManifestRow
from hsm_bench.hashing import sha256_file
from hsm_bench.audio.io import AudioReadError, read_audio
from testsets.base import CANONICAL_RATE, ItemSpec, TestSetWriter
from testsets.instructions import instruction
from testsets.mixing import PEAK_TARGET, crop_or_pad, measured_snr_db
from testsets.pools import ClipLoader, index_audio, render

COMPUTED_CARD_KEYS = ("sample_rate", "channels", "stem_format", "resampler", "n_items", "tasks", "snr_summary",
                      "manifest_sha256", "hsm_bench_version")  # fmt: skip


def _default_out(name: str, version: str) -> Path:
    from hsm_bench.paths import default_paths

    return Path(default_paths()["data_dir"]) / "testsets" / name / version


def _builder_class(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_from_manifest(name: str | None, manifest: Path, source: str | None, out: str | None = None,
                        progress: bool = True) -> Path:  # fmt: skip
    rows = [ManifestRow.from_dict(json.loads(line), f"{manifest}:{n}")
            for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]  # fmt: skip
    if not rows:
        raise ValueError(f"{manifest} holds no rows")
    card_path = manifest.with_name("card.json")
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    builder_target = rows[0].source.get("builder")
    if not builder_target:
        raise ValueError(
            f"{manifest} does not record the builder of its items (imported or demo sets): rebuild the demo with "
            "`hsm-bench build-testset demo --seed N`, imports with `--import` again"
        )
    if source is None:
        raise ValueError("--from-manifest needs --source DIR: the source dataset the manifest refers to")
    cls = _builder_class(builder_target)
    params = {k: v for k, v in (card.get("params") or {}).items() if k.endswith("_source") is False}
    builder = cls(source=source, **params)
    name = name or card.get("name") or cls.name
    version = card.get("version") or builder.folder_version()
    target_dir = Path(out).expanduser() if out else _default_out(name, version)
    loader = ClipLoader(builder.source_roots())
    writer = TestSetWriter(target_dir)
    mismatched = []
    try:
        for row in tqdm(rows, desc=f"rebuild {name}", disable=not progress, unit="item"):
            target, interferer = render(loader, row.source)
            src = {k: v for k, v in row.source.items() if k != "gains"}
            writer.add(ItemSpec(id=row.id, task=row.task, caption=row.caption, instruction=row.instruction,
                                target=target, interferer=interferer, snr_db=row.snr_db,
                                target_captions=row.target_captions, target_labels=row.target_labels,
                                interferer_labels=row.interferer_labels, source=src, extra=row.extra))  # fmt: skip
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


def import_list(spec: str, name: str | None, source: str | None, out: str | None = None, progress: bool = True) -> Path:
    kind, _, csv_path = spec.partition(":")
    if kind not in ("audiosep", "dcase2024") or not csv_path:
        raise ValueError(f"--import expects audiosep:CSV or dcase2024:CSV, got {spec!r}")
    if source is None:
        raise ValueError(f"--import {kind} needs --source DIR with the audio the list refers to")
    csv_file = Path(csv_path).expanduser()
    name = name or f"{kind}-{csv_file.stem}"
    target_dir = Path(out).expanduser() if out else _default_out(name, "v1")
    files = index_audio(Path(source).expanduser())
    writer = TestSetWriter(target_dir)
    missing: list[str] = []
    rng = np.random.default_rng(0)
    try:
        with open(csv_file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = [h.strip() for h in next(reader)]
            rows = [dict(zip(header, r)) | {"_cells": r} for r in reader if r]
        add = _add_audiosep if kind == "audiosep" else _add_dcase
        for k, row in enumerate(tqdm(rows, desc=f"import {kind}", disable=not progress, unit="item")):
            try:
                add(writer, name, k, row, header, files, rng)
            except (KeyError, AudioReadError) as exc:
                missing.append(f"row {k}: {exc}")
        card = {
            "name": name, "version": "v1", "builder": f"testsets.rebuild:import_list ({kind})",
            "sources": {"list": str(csv_file), "list_sha256": sha256_file(csv_file), "rows": len(rows),
                        "missing": {"count": len(missing), "items": missing[:200]}},
            "recipe": {"audiosep": "pre-mixed segment/mixture files; interferer = mixture - segment; SNR measured",
                       "dcase2024": "DCASE 2024 task 9 arithmetic at the listed SNR on 10-s windows"}[kind],
        }  # fmt: skip
        return writer.finish(card)
    except BaseException:
        writer.abort()
        raise


def _need(files: dict[str, Path], name: str) -> Path:
    if name not in files:
        raise KeyError(f"{name} not found under --source")
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
        id=f"{name}-{idx:05d}", task="extract", caption=caption, instruction=instruction("extract", caption, _style(caption), rng),
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
        id=f"{name}-{k:05d}", task="extract", caption=caption, instruction=instruction("extract", caption, _style(caption), rng),
        target=crop_or_pad(s, n, 0), interferer=crop_or_pad(v, n, 0), snr_db=float(row["snr"]),
        target_captions=[caption], target_labels=[], interferer_labels=[],
        source={"dataset": "dcase2024", "source": src, "noise": noise},
    ))  # fmt: skip
