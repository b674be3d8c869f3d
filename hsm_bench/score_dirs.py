"""``hsm-bench score PRED_DIR REF_DIR``: score any folder of outputs (the AudioLDM-eval workflow).

Files are matched by stem (``x.wav`` in one folder with ``x.flac`` in the other is a
match). A stem present on one side only is an error that lists the stems, never a
silent drop. Mixtures (``--mix-dir``) and captions (``--captions``) are optional; the
outputs that need them (``sdri``, ``clap``, ...) are skipped without them, and the command
says so once. Per-item rows stream to ``--out`` (CSV or JSONL) as they are computed; the
corpus table (mean, 95% bootstrap CI, counts) is printed at the end and written next to
the output as ``<out>.meta.json`` with the metric definitions and package versions.

The scoring itself is the run's score stage (:mod:`hsm_bench.pipeline.score`), with the
same containment of failures and the same exit statuses (:mod:`hsm_bench.errors`).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from hsm_bench import weights
from hsm_bench.audio.io import AUDIO_EXTENSIONS
from hsm_bench.errors import ConfigError, SetupError
from hsm_bench.paths import default_paths
from hsm_bench.pipeline.aggregate import aggregate
from hsm_bench.pipeline.score import ScoreJob, build_metrics, iter_scores, long_rows, metric_definitions, plan_outputs
from hsm_bench.pipeline.summary import Outcome, score_outcome
from hsm_bench.pipeline.table import asked_keys, print_corpus_table
from hsm_bench.registry import resolve_metric_request
from hsm_bench.store.cache import FeatureCache
from hsm_bench.store.jsonl import atomic_write_json, dumps
from hsm_bench.store.runstore import environment

OUT_SUFFIXES = (".csv", ".jsonl")
INPUT_FLAGS = {"mixture": "--mix-dir", "text": "--captions"}


class PairingError(ConfigError):
    pass


def audio_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise PairingError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS:
            if p.stem in files:
                raise PairingError(f"{folder}: two files share the stem {p.stem!r} ({files[p.stem].name}, {p.name})")
            files[p.stem] = p
    return files


def _listing(stems: list[str], limit: int = 20) -> str:
    shown = ", ".join(stems[:limit])
    return shown + (f", ... ({len(stems) - limit} more)" if len(stems) > limit else "")


def read_captions(path: Path) -> dict[str, str]:
    """Captions by file stem from a CSV (columns ``id`` or ``file``, and ``caption``) or a JSONL
    file (``{"id": ..., "caption": ...}`` per line)."""
    if not path.is_file():
        raise ConfigError(f"--captions {path}: no such file")
    out: dict[str, str] = {}
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out[Path(str(row["id"])).stem] = str(row["caption"])
                except (ValueError, KeyError, TypeError):
                    raise ConfigError(f"--captions {path}:{n}: expected {{\"id\": ..., \"caption\": ...}}") from None
        return out
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        key = next((c for c in ("id", "file", "file_name", "fname") if c in cols), None)
        if key is None or "caption" not in cols:
            raise ConfigError(f"--captions {path}: needs a header with 'caption' and 'id' or 'file' (got {', '.join(cols)})")
        for row in reader:
            out[Path(row[key]).stem] = row["caption"]
    return out


def pair_files(pred_dir: Path, ref_dir: Path, mix_dir: Path | None, captions: dict[str, str] | None = None) -> list[ScoreJob]:
    pred, ref = audio_files(pred_dir), audio_files(ref_dir)
    if not pred:
        raise PairingError(f"{pred_dir} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    problems = []
    only_pred = sorted(set(pred) - set(ref))
    only_ref = sorted(set(ref) - set(pred))
    if only_pred:
        problems.append(f"{len(only_pred)} file(s) in {pred_dir} have no reference in {ref_dir}: {_listing(only_pred)}")
    if only_ref:
        problems.append(f"{len(only_ref)} reference(s) in {ref_dir} have no output in {pred_dir}: {_listing(only_ref)}")
    mix = None
    if mix_dir is not None:
        mix = audio_files(mix_dir)
        missing = sorted(set(pred) - set(mix))
        if missing:
            problems.append(f"{len(missing)} output(s) have no mixture in {mix_dir}: {_listing(missing)}")
    if captions is not None:
        missing = sorted(set(pred) - set(captions))
        if missing:
            problems.append(f"{len(missing)} output(s) have no caption in --captions: {_listing(missing)}")
    if problems:
        raise PairingError("files do not pair up by name: " + "; ".join(problems))
    return [
        ScoreJob(id=stem, estimate=pred[stem], reference=ref[stem], mixture=mix[stem] if mix else None,
                 caption=captions[stem] if captions else None, captions=[captions[stem]] if captions else [])
        for stem in sorted(pred)
    ]  # fmt: skip


class _RowSink:
    """Writes wide per-item rows (id, one column per output key, error) as they come."""

    def __init__(self, path: Path | None, keys: list[str]):
        self.path = path
        self.keys = keys
        self._f = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w", newline="", encoding="utf-8")
        self._csv = None
        if path.suffix.lower() == ".csv":
            self._csv = csv.writer(self._f)
            self._csv.writerow(["id", *keys, "error"])

    def write(self, item_id: str, rows: list[dict]) -> None:
        if self._f is None:
            return
        values, errors = {}, []
        for r in rows:
            if r["status"] == "ok":
                for k, v in r["values"].items():
                    if k in self.keys:
                        values[k] = r.get("nonfinite", {}).get(k, v)
            else:
                errors.append(f"{r['metric']}: {r['error']}")
        if self._csv is not None:
            self._csv.writerow([item_id, *(values.get(k, "") for k in self.keys), "; ".join(errors)])
        else:
            self._f.write(dumps({"id": item_id, **values, **({"errors": errors} if errors else {})}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def score_directories(
    pred_dir: Path,
    ref_dir: Path,
    mix_dir: Path | None,
    metrics: str,
    out: Path | None,
    captions: Path | None = None,
    allow_resample: bool = False,
    downmix: bool = False,
    max_length_diff_s: float = 0.1,
    batch_size: int = 16,
    progress: bool = True,
    weights_overrides: list[str] | None = None,
    metric_params: dict[str, dict] | None = None,
) -> int:
    """Score the folders; returns the exit status (0 all ok, 1 some item errors, 2 none ok).

    Every problem found before scoring (bad --out, unpaired files, missing weights, nothing
    computable) raises a one-line error and leaves no file behind.
    """
    from tqdm import tqdm

    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: per-item results are written as .csv or .jsonl")
    caption_map = read_captions(captions) if captions is not None else None
    jobs = pair_files(pred_dir, ref_dir, mix_dir, caption_map)
    names, asked = resolve_metric_request(metrics)
    ms = build_metrics(names, metric_params)
    have = {"reference"} | ({"mixture"} if mix_dir is not None else set()) | ({"text"} if caption_map else set())
    outputs, notes = plan_outputs(ms, have, asked, why={k: v for k, v in INPUT_FLAGS.items()})
    ms = [m for m in ms if outputs[m.info.name]]  # a metric with nothing computable does not run
    defs = metric_definitions(ms)
    for name, d in defs.items():
        d["outputs"] = outputs[name]
    wanted = {n: a for n, a in asked.items() if n in defs}
    keys = asked_keys(defs, wanted)
    if not keys:
        raise ConfigError("nothing to score: " + "; ".join(notes))
    if notes:  # said once, before scoring; these outputs are not item failures
        print(f"hsm-bench score: {'; '.join(notes)}", file=sys.stderr)
    with weights.overrides(weights_overrides):
        weights.require([w for m in ms for w in m.required_weights()])
        cache = FeatureCache(default_paths()["cache_dir"])
        for m in ms:
            try:
                m.setup(cache=cache)
            except (ConfigError, SetupError):
                raise
            except Exception as exc:  # noqa: BLE001 - a model that cannot load
                raise SetupError(f"metric {m.info.name} failed to load: {type(exc).__name__}: {exc}") from exc
        corpus, all_rows = _score(jobs, ms, defs, keys, out, allow_resample, downmix, max_length_diff_s, batch_size,
                                  progress, tqdm)  # fmt: skip
    print_corpus_table(corpus, title=f"{pred_dir} vs {ref_dir} ({len(jobs)} items)", keys=keys)
    if out is not None:
        meta = {
            "pred_dir": str(pred_dir), "ref_dir": str(ref_dir), "mix_dir": str(mix_dir) if mix_dir else None,
            "captions": str(captions) if captions else None, "skipped": notes, "corpus": corpus,
            "environment": environment(),
        }  # fmt: skip
        atomic_write_json(out.with_name(out.name + ".meta.json"), meta)
        print(f"per-item results: {out}")
    outcome = score_outcome(Outcome(n_items=len(jobs)), all_rows, [j.id for j in jobs], list(defs),
                            out if out is not None else None)  # fmt: skip
    problem = outcome.problem()
    if problem:
        where = "" if out is not None else " (pass --out FILE to keep per-item rows)"
        print(f"hsm-bench score: {'error' if outcome.status == 2 else 'warning'}: {problem}{where}", file=sys.stderr)
    return outcome.status


def _score(jobs, ms, defs, keys, out, allow_resample, downmix, max_length_diff_s, batch_size, progress,
           tqdm) -> tuple[dict[str, Any], list[dict]]:  # fmt: skip
    by_name = {m.info.name: m for m in ms}
    sink = _RowSink(out, keys)
    all_rows: list[dict] = []
    try:
        with tqdm(total=len(jobs), desc="score", disable=not progress, unit="item") as bar:
            for job, results in iter_scores(jobs, ms, batch_size=batch_size, max_length_diff_s=max_length_diff_s,
                                            allow_resample=allow_resample, downmix=downmix):  # fmt: skip
                rows = long_rows(job.id, results, by_name)
                sink.write(job.id, rows)
                # keep only what the corpus summary needs
                all_rows.extend({k: r[k] for k in ("id", "metric", "version", "status", "values", "nonfinite", "error") if k in r} for r in rows)
                bar.update(1)
    finally:
        sink.close()
    return aggregate(all_rows, [j.id for j in jobs], defs), all_rows


def load_results(path: Path) -> list[dict]:
    """Read back a ``--out`` file (CSV or JSONL) as dicts; for tests and notebooks."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
