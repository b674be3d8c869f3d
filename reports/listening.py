"""The listening page: one self-contained folder to hear, see and sort every item of a report.

    listen/index.html              a summary table (corpus means per system and test set), then
                                   one row per (test set, item): instruction, task, caption, query
                                   kind, SNR, target class, the mixture and reference players, and
                                   per system its output (player + spectrogram) and its metrics
    listen/listen.css, listen.js   styling; sorting and filtering in plain JavaScript
    listen/audio/<testset>/<mixture|reference|system>/<id>.ogg   Ogg Vorbis
    listen/img/<testset>/<mixture|reference|system>/<id>.png     spectrogram thumbnails

Every link is relative and nothing is fetched from the network, so the folder can be copied,
zipped or opened straight from disk. Rows start worst first by the mean over systems of one
metric (``sdri`` when scored, else ``lsd_aligned``, else the first key), which the page states.

Page audio is Ogg Vorbis through libsndfile: a 10-s float WAV is 640 KB, its Vorbis file
about 50 KB, for about 21 ms of CPU (Opus through libsndfile took ten times longer; 16-bit FLAC
5 ms but 4.5 times the bytes). Encoding is most of this part's time, so clips run on a small
thread pool (libsndfile runs without the GIL) and audio identical to an earlier clip is
encoded once. Chromium drops the last 256 samples of a Vorbis stream that fits in a single Ogg
page (clips of about a second); longer clips decode sample for sample. Thumbnails are drawn
with numpy and Pillow (matplotlib would cost more than the encoding for a thousand images).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from hsm_bench.errors import ConfigError
from reports.collect import Collection, ReportError, Written

TEMPLATES = Path(__file__).parent / "templates"
STATIC = ("listen.css", "listen.js")
AUDIO_EXT = ".ogg"
# libsndfile's Vorbis quality (0 best .. 1 smallest): 0.5 keeps speech and music clean at
# roughly 40 kbit/s for 16-kHz mono.
VORBIS_LEVEL = 0.5
THUMB_W, THUMB_H = 192, 64
DB_FLOOR, DB_CEIL = -90.0, 0.0  # fixed for every thumbnail, so levels compare across systems
ORDER_KEYS = ("sdri", "lsd_aligned")
ROLES = ("mixture", "reference")

# viridis at ten evenly spaced points: perceptually uniform and readable with colour-vision
# deficiencies and in greyscale; interpolated linearly to 256 levels
_ANCHORS = ("440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b", "fde725")


@lru_cache(maxsize=1)
def colour_table() -> np.ndarray:
    """[256, 3] uint8 colour map of the thumbnails (dark = quiet)."""
    rgb = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _ANCHORS], dtype=np.float64)
    pos = np.linspace(0.0, 1.0, len(_ANCHORS))
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def _band_starts(sample_rate: int, n_fft: int, height: int) -> np.ndarray:
    """First STFT bin of each of ``height`` mel-spaced bands from 0 Hz to Nyquist (non-decreasing,
    so ``np.maximum.reduceat`` pools each band; a band narrower than a bin takes the next bin)."""
    edges_mel = np.linspace(0.0, float(_mel(sample_rate / 2)), height + 1)[:-1]
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    n_bins = n_fft // 2 + 1
    return np.minimum(np.ceil(edges_hz * n_fft / sample_rate - 1e-9).astype(np.int64), n_bins - 1)


def spectrogram_levels(x: np.ndarray, sample_rate: int, width: int = THUMB_W, height: int = THUMB_H) -> np.ndarray:
    """[height, width] uint8 colour index (0 = DB_FLOOR dBFS or below, 255 = DB_CEIL): ``width``
    Hann frames of about 32 ms centred evenly over the clip, power pooled (max) into ``height``
    mel bands, low frequencies at the bottom; a full-scale sine reads 0 dB in its band."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n_fft = 1 << max(6, round(math.log2(0.032 * sample_rate)))
    padded = np.zeros(len(x) + n_fft)
    padded[n_fft // 2 : n_fft // 2 + len(x)] = x
    centres = ((np.arange(width) + 0.5) * len(x) / width).astype(np.int64)
    window = np.hanning(n_fft + 1)[:-1]  # periodic
    frames = padded[centres[:, None] + np.arange(n_fft)] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 / (window.sum() / 2) ** 2
    bands = np.maximum.reduceat(power, _band_starts(sample_rate, n_fft, height), axis=1)  # [width, height]
    db = 10.0 * np.log10(bands + 1e-20)
    level = np.clip((db - DB_FLOOR) / (DB_CEIL - DB_FLOOR), 0.0, 1.0)
    return np.rint(level.T[::-1] * 255).astype(np.uint8)


def spectrogram_image(x: np.ndarray, sample_rate: int, width: int = THUMB_W, height: int = THUMB_H) -> np.ndarray:
    """[height, width, 3] uint8 RGB of :func:`spectrogram_levels` in the fixed colour map."""
    return colour_table()[spectrogram_levels(x, sample_rate, width, height)]


def _thumbnail(x: np.ndarray, sample_rate: int) -> Any:
    """A palette PNG image: a third of the bytes of RGB, and quicker to write."""
    from PIL import Image

    image = Image.fromarray(spectrogram_levels(x, sample_rate), mode="P")
    image.putpalette(colour_table().reshape(-1).tolist())
    return image


@dataclass
class _Media:
    source: Path
    audio: Path  # relative to the page folder
    image: Path
    label: str  # "mixture", "reference" or the system
    error: str | None = None
    same_as: str | None = None  # the label whose identical audio this player shares
    done: threading.Event = field(default_factory=threading.Event)


class _Encoder:
    """Encodes each job's audio and draws its thumbnail; audio identical to an earlier job's
    (same samples, rate and channels: a system that returns the mixture, a target oracle) is
    encoded once and shared, which for such systems saves the most expensive step."""

    def __init__(self, out: Path):
        self.out = out
        self.lock = threading.Lock()
        self.first: dict[bytes, _Media] = {}

    def __call__(self, job: _Media) -> None:
        import soundfile as sf

        try:
            try:
                data, rate = sf.read(str(job.source), dtype="float32", always_2d=True)
                if not len(data):
                    raise ValueError("no samples")
            except (RuntimeError, OSError, ValueError, TypeError) as exc:  # libsndfile's errors are RuntimeErrors
                job.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                return
            digest = hashlib.sha1(np.ascontiguousarray(data).tobytes())
            digest.update(f"{rate}/{data.shape[1]}".encode())
            with self.lock:
                owner = self.first.setdefault(digest.digest(), job)
            if owner is not job:
                # the owner registered itself while running and waits on nothing, so this ends
                owner.done.wait()
                job.audio, job.image, job.error, job.same_as = owner.audio, owner.image, owner.error, owner.label
                return
            try:
                (self.out / job.audio).parent.mkdir(parents=True, exist_ok=True)
                (self.out / job.image).parent.mkdir(parents=True, exist_ok=True)
                with sf.SoundFile(str(self.out / job.audio), "w", rate, data.shape[1], format="OGG",
                                  subtype="VORBIS", compression_level=VORBIS_LEVEL) as f:  # fmt: skip
                    f.write(data)
                _thumbnail(data.mean(axis=1), rate).save(self.out / job.image, compress_level=6)
            except (RuntimeError, OSError, ValueError, TypeError) as exc:  # libsndfile and Pillow, as on reading
                job.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            job.done.set()


def _url(path: Path) -> str:
    return "/".join(quote(part) for part in path.parts)


def _fmt(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.2f}"


def order_key(keys: list[str]) -> str | None:
    """The metric whose mean over systems orders the rows worst first."""
    return next((k for k in ORDER_KEYS if k in keys), keys[0] if keys else None)


def worst_first(col: Collection, testset: str, key: str) -> list[tuple[str, float]]:
    """(id, mean over systems of ``key``) worst first; items without any finite value last."""
    table = col.values(testset, key)
    means = table.mean(axis=1, skipna=True)  # NaN only where no system has a finite value
    sign = 1.0 if col.higher_is_better(key) else -1.0
    ids = list(col.manifest(testset)["id"])
    scored = [(i, float(means.get(i, float("nan")))) for i in ids]
    return sorted(scored, key=lambda p: (math.isnan(p[1]), sign * p[1] if not math.isnan(p[1]) else 0.0, p[0]))


def _spread(n: int, k: int) -> list[int]:
    """``k`` positions spread evenly over ``range(n)``, first and last included."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})


def _metric_cell(status: str, value: float, error: str | None) -> dict[str, str]:
    if status == "ok":
        return {"v": repr(value), "text": _fmt(value), "title": repr(value), "cls": ""}
    if status == "nonfinite":
        label = error or "nan"
        v = {"+inf": "Infinity", "-inf": "-Infinity"}.get(label, "")
        return {"v": v, "text": label, "title": f"non-finite value ({label})", "cls": "nonfinite"}
    return {"v": "", "text": "failed", "title": error or "failed", "cls": "failed"}


def _summary(col: Collection, keys: list[str], labels: list[str], notes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for ts in col.testsets:
        for label in col.systems(ts):
            run = col.run(label, ts)
            metrics = run.corpus.get("metrics", {})
            if not metrics:
                notes.append(f"summary: {label} on {ts} has no corpus.json, so its means are blank; "
                             f"`hsm-bench aggregate {run.path}` writes it")  # fmt: skip
            cells = []
            for key in keys:
                e = metrics.get(key)
                if e is None:
                    cells.append({"v": "", "text": "", "ci": "", "title": "not scored"})
                elif e.get("mean") is None:
                    label_nf = ", ".join(e.get("nonfinite") or {}) or "n/a"
                    cells.append({"v": "", "text": label_nf, "ci": "", "title": e.get("reason") or "no finite value"})
                else:
                    lo, hi = e.get("ci95") or (float("nan"), float("nan"))
                    cells.append({"v": repr(float(e["mean"])), "text": _fmt(e["mean"]),
                                  "ci": f"[{_fmt(lo)}, {_fmt(hi)}]",
                                  "title": f"n = {e.get('n')}, failed {e.get('n_failed', 0)}, "
                                           f"non-finite {e.get('n_nonfinite', 0)}"})  # fmt: skip
            rows.append({"testset": ts, "system": label, "sys": labels.index(label),
                         "n_items": run.corpus.get("n_items", len(col.manifest(ts))),
                         "n_sep_failed": run.corpus.get("n_separation_failed", ""), "cells": cells})  # fmt: skip
    return rows


def write_page(col: Collection, out: Path, max_items: int | None = None) -> Written:
    """Write the listening page into ``out`` (created); returns what was written and notes on
    what was left out."""
    try:
        import jinja2
        from PIL import Image  # noqa: F401  (fail here with the extra's name, not inside a worker)
    except ImportError as exc:
        raise ConfigError(f"the listening page needs {exc.name}: pip install 'hsm-bench[report]'") from None
    if max_items is not None and max_items < 1:
        raise ConfigError(f"--max-items {max_items}: give at least 1 (or leave it out for every item)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    keys = col.keys()
    okey = order_key(keys)
    labels = col.systems()
    # folder per system; a system called "mixture" or "reference" must not share the role's folder
    folders = {label: (f"system-{label}" if label in ROLES else label) for label in labels}
    better = {k: col.higher_is_better(k) for k in keys}

    jobs: list[_Media] = []

    def media(ts: str, folder: str, label: str, item_id: str, source: Path) -> int:
        jobs.append(_Media(source, Path("audio", ts, folder, item_id + AUDIO_EXT),
                           Path("img", ts, folder, item_id + ".png"), label))  # fmt: skip
        return len(jobs) - 1

    rows: list[dict[str, Any]] = []
    for ts in col.testsets:
        man = col.manifest(ts)
        ranked = worst_first(col, ts, okey) if okey else [(i, float("nan")) for i in man["id"]]
        if max_items is not None and len(ranked) > max_items:
            ranked = [ranked[j] for j in _spread(len(ranked), max_items)]
            notes.append(f"{ts}: {len(ranked)} of {len(man)} items on the listening page (--max-items {max_items}), "
                         f"spread evenly from worst to best by mean {okey}; leave --max-items out for all")  # fmt: skip
        sel = col.items[col.items["testset"] == ts]
        cell_of = {(s, i, k): _metric_cell(st, v, e)
                   for s, i, k, st, v, e in zip(sel["system"], sel["id"], sel["key"], sel["status"], sel["value"],
                                                sel["error"])}  # fmt: skip
        systems = col.systems(ts)
        missing: dict[str, int] = {}
        for item_id, score in ranked:
            m = man.loc[item_id]
            row: dict[str, Any] = {
                "testset": ts, "id": item_id, "task": m["task"], "instruction": m["instruction"],
                "caption": m["caption"], "query": m["query_style"], "snr": float(m["snr_db"]),
                "cls": m["target_class"], "score": score,
                "mixture": media(ts, "mixture", "mixture", item_id, Path(m["mixture"])),
                "reference": media(ts, "reference", "reference", item_id, Path(m["reference"])), "systems": [],
            }  # fmt: skip
            for label in labels:
                if label not in systems:
                    row["systems"].append({"absent": f"{label} has no run on {ts}", "media": None,
                                           "metrics": [None] * len(keys)})  # fmt: skip
                    continue
                path = col.run(label, ts).output(item_id)
                cells = [cell_of.get((label, item_id, k)) for k in keys]
                if path.is_file():
                    row["systems"].append({"absent": None, "media": media(ts, folders[label], label, item_id, path),
                                           "metrics": cells})  # fmt: skip
                else:
                    missing[label] = missing.get(label, 0) + 1
                    why = next((c["title"] for c in cells if c and c["cls"] == "failed"), "no output file")
                    row["systems"].append({"absent": f"no output: {why}", "media": None, "metrics": cells})
            rows.append(row)
        for label, n in missing.items():
            notes.append(f"{ts}: {label} has no output file for {n} item(s) (failed or removed), shown as "
                         "'no output' without a player; rerunning the system fills them")  # fmt: skip

    if okey:
        sign = 1.0 if better[okey] else -1.0
        rows.sort(key=lambda r: (math.isnan(r["score"]), sign * r["score"] if not math.isnan(r["score"]) else 0.0))

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_Encoder(out), jobs))
    bad = [j for j in jobs if j.error and not j.same_as]
    if bad:
        notes.append(f"{len(bad)} audio file(s) could not be read and have no player (first: {bad[0].source}: "
                     f"{bad[0].error}); restore them and rerun the report")  # fmt: skip

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    players = [None if j.error else {"audio": _url(j.audio), "image": _url(j.image), "same_as": j.same_as}
               for j in jobs]  # fmt: skip
    html = env.get_template("listen.html.j2").render(
        rows=rows, keys=keys, better=better, labels=labels, testsets=col.testsets,
        tasks=sorted({r["task"] for r in rows}), order_key=okey,
        order_better=better.get(okey, True) if okey else True, summary=_summary(col, keys, labels, notes),
        media=players, media_error=[j.error for j in jobs], fmt=_fmt, n_runs=len(col.runs),
        thumb=(THUMB_W, THUMB_H), db_range=(DB_FLOOR, DB_CEIL),
    )  # fmt: skip
    try:
        (out / "index.html").write_text(html, encoding="utf-8")
        for name in STATIC:
            shutil.copyfile(TEMPLATES / name, out / name)
    except OSError as exc:
        raise ReportError(f"cannot write the listening page into {out}: {exc.strerror or exc}") from None
    files = [out / "index.html", *(out / n for n in STATIC)]
    files += [out / p for j in jobs if not (j.error or j.same_as) for p in (j.audio, j.image)]
    return Written(files=files, notes=notes)


__all__ = ["colour_table", "order_key", "spectrogram_image", "spectrogram_levels", "worst_first", "write_page"]
