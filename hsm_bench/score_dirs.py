"""``hsm-bench score PRED_DIR REF_DIR``: score any folder of outputs (the AudioLDM-eval workflow).

Files are matched by stem (``x.wav`` in one folder with ``x.flac`` in the other is a
match). A stem present on one side only is an error that lists the stems, never a
silent drop. Per-item rows stream to ``--out`` (CSV or JSONL) as they are computed; the
corpus table (mean, 95% bootstrap CI, counts) is printed at the end and written next to
the output as ``<out>.meta.json`` with the metric definitions and package versions.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from hsm_bench.audio.io import AUDIO_EXTENSIONS
from hsm_bench.paths import default_paths
from hsm_bench.pipeline.aggregate import aggregate
from hsm_bench.pipeline.run import metric_definitions
from hsm_bench.pipeline.score import ScoreJob, build_metrics, iter_scores, long_rows
from hsm_bench.pipeline.table import print_corpus_table
from hsm_bench.store.cache import FeatureCache
from hsm_bench.store.jsonl import atomic_write_json, dumps
from hsm_bench.store.runstore import environment


class PairingError(ValueError):
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


def pair_files(pred_dir: Path, ref_dir: Path, mix_dir: Path | None) -> list[ScoreJob]:
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
    if problems:
        raise PairingError("files do not pair up by name:\n  " + "\n  ".join(problems))
    return [
        ScoreJob(id=stem, estimate=pred[stem], reference=ref[stem], mixture=mix[stem] if mix else None)
        for stem in sorted(pred)
    ]


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
        elif path.suffix.lower() != ".jsonl":
            raise ValueError(f"--out must end in .csv or .jsonl, got {path.name}")

    def write(self, item_id: str, rows: list[dict]) -> None:
        if self._f is None:
            return
        values, errors = {}, []
        for r in rows:
            if r["status"] == "ok":
                for k, v in r["values"].items():
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
    allow_resample: bool = False,
    max_length_diff_s: float = 0.1,
    batch_size: int = 16,
    progress: bool = True,
) -> int:
    from tqdm import tqdm

    try:
        jobs = pair_files(pred_dir, ref_dir, mix_dir)
    except PairingError as exc:
        print(f"hsm-bench score: error: {exc}", file=sys.stderr)
        return 2
    ms = build_metrics(metrics)
    cache = FeatureCache(default_paths()["cache_dir"])
    for m in ms:
        m.setup(cache=cache)
    by_name = {m.info.name: m for m in ms}
    defs = metric_definitions(ms)
    keys = [k for m in ms for k in m.info.outputs if not (k in ("sdri", "si_sdri") and mix_dir is None)]
    sink = _RowSink(out, keys)
    all_rows = []
    try:
        with tqdm(total=len(jobs), desc="score", disable=not progress, unit="item") as bar:
            for job, results in iter_scores(
                jobs, ms, batch_size=batch_size, max_length_diff_s=max_length_diff_s, allow_resample=allow_resample
            ):
                rows = long_rows(job.id, results, by_name)
                sink.write(job.id, rows)
                # keep only what the corpus summary needs
                all_rows.extend({k: r[k] for k in ("id", "metric", "version", "status", "values", "nonfinite", "error") if k in r} for r in rows)
                bar.update(1)
    finally:
        sink.close()
    if mix_dir is None:
        for d in defs.values():
            d["outputs"] = [k for k in d["outputs"] if k not in ("sdri", "si_sdri")]
    corpus = aggregate(all_rows, [j.id for j in jobs], defs)
    print_corpus_table(corpus, title=f"{pred_dir} vs {ref_dir} ({len(jobs)} items)")
    n_err = sum(r["status"] == "error" for r in all_rows)
    if n_err:
        first = next(r for r in all_rows if r["status"] == "error")
        print(f"{n_err} item/metric error(s); first: {first['id']} [{first['metric']}]: {first['error']}")
    if out is not None:
        meta = {
            "pred_dir": str(pred_dir), "ref_dir": str(ref_dir), "mix_dir": str(mix_dir) if mix_dir else None,
            "corpus": corpus, "environment": environment(),
        }  # fmt: skip
        atomic_write_json(out.with_name(out.name + ".meta.json"), meta)
        print(f"per-item results: {out}")
    return 0


def load_results(path: Path) -> list[dict]:
    """Read back a ``--out`` file (CSV or JSONL) as dicts; for tests and notebooks."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
