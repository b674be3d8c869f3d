"""Run folders in, one tidy view out: what every part of a report reads.

:func:`load` takes run folders, or any folders holding them (a runs root), and returns a
:class:`Collection`:

* ``runs``: one :class:`RunRecord` per run folder (system, test set, manifest hash, paths,
  run.json, corpus.json);
* ``items``: a long DataFrame, one row per (system, test set, item, output key), with the
  value (NaN when the item failed or the value is non-finite), its status and error;
* ``manifest(testset)``: the test set's rows with what reports group by: task, SNR, query
  style, caption, instruction, target labels and their top AudioSet ontology level, and the
  absolute paths of mixture and reference.

Systems compared on one test set must have scored the same items: runs of one test-set name
with different manifest hashes are refused (one line naming them). Two runs of one system
on one test set (other parameters) are told apart by their run signature in ``label``.
Reading needs pandas (the ``report`` extra).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsm_bench.errors import ConfigError, HsmBenchError


class ReportError(HsmBenchError):
    """Runs that cannot be reported together, or nothing to report."""


@dataclass
class Written:
    """What one part of a report wrote, and what it left out (one line each, saying why)."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    path: Path
    system: str  # the registered name
    label: str  # what tables and plots call it: the system, or system@signature when ambiguous
    testset: str
    manifest_sha256: str
    testset_root: Path
    info: dict[str, Any]  # run.json
    corpus: dict[str, Any]  # corpus.json ({} before a first aggregate)

    @property
    def signature(self) -> str:
        return self.path.name

    def output(self, item_id: str) -> Path:
        return self.path / "outputs" / f"{item_id}.wav"

    @property
    def metric_defs(self) -> dict[str, dict[str, Any]]:
        return self.info.get("metrics", {})


@dataclass
class Collection:
    runs: list[RunRecord]
    items: Any  # pandas.DataFrame
    manifests: dict[str, Any] = field(default_factory=dict)  # test set -> pandas.DataFrame

    @property
    def testsets(self) -> list[str]:
        return sorted({r.testset for r in self.runs})

    def systems(self, testset: str | None = None) -> list[str]:
        return sorted({r.label for r in self.runs if testset is None or r.testset == testset})

    def run(self, label: str, testset: str) -> RunRecord:
        return next(r for r in self.runs if r.label == label and r.testset == testset)

    def manifest(self, testset: str) -> Any:
        return self.manifests[testset]

    def keys(self) -> list[str]:
        """Output keys with at least one value, in the order the metrics declare them."""
        return list(dict.fromkeys(self.items["key"]))

    def higher_is_better(self, key: str) -> bool:
        for r in self.runs:
            for d in r.metric_defs.values():
                if key in d.get("outputs", []):
                    return bool(d["higher_is_better"])
        raise KeyError(key)

    def values(self, testset: str, key: str) -> Any:
        """Per-item values of ``key`` on ``testset``: index item id, one column per system label
        (NaN where an item failed or is non-finite): the paired table statistics work on."""
        sel = self.items[(self.items["testset"] == testset) & (self.items["key"] == key)]
        return sel.pivot(index="id", columns="system", values="value").sort_index()


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders (holding run.json) given directly or anywhere below the given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p}: no such folder (give run folders or a runs root such as ./runs)")
        if (p / "run.json").is_file():
            found.append(p)
        else:
            found += sorted(q.parent for q in p.rglob("run.json") if ".sweeps" not in q.parts)
    if not found:
        raise ReportError(f"no run folders (with run.json) under {', '.join(map(str, paths))}: run `hsm-bench run` first")
    return list(dict.fromkeys(found))


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _records(folders: list[Path]) -> list[RunRecord]:
    records = []
    for f in folders:
        info = _read(f / "run.json")
        ts = info.get("testset") or {}
        if not ts.get("manifest_sha256") or not (info.get("system") or {}).get("name"):
            raise ReportError(f"{f}/run.json lacks the test set or system it was made with: not a complete run folder")
        records.append(RunRecord(path=f, system=info["system"]["name"], label=info["system"]["name"],
                                 testset=ts["name"], manifest_sha256=ts["manifest_sha256"],
                                 testset_root=Path(ts["root"]), info=info, corpus=_read(f / "corpus.json")))  # fmt: skip
    by_set: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_set[r.testset][r.manifest_sha256].append(r.system)
    for name, shas in by_set.items():
        if len(shas) > 1:
            parts = "; ".join(f"{sha[:8]}: {', '.join(sorted(s))}" for sha, s in sorted(shas.items()))
            raise ReportError(f"runs on test set {name!r} were made on different manifests ({parts}); systems are "
                              "compared only on the same items: report them separately or rerun on one build")  # fmt: skip
    count = defaultdict(int)
    for r in records:
        count[(r.testset, r.system)] += 1
    for r in records:
        if count[(r.testset, r.system)] > 1:
            r.label = f"{r.system}@{r.signature[:6]}"
    return records


def _top_level(labels: list[str], ontology: Any) -> str:
    """The first label's top ontology level ("Animal", "Music", ...), or "other"."""
    for label in labels:
        try:
            mid = ontology.mid(label)
        except (KeyError, ValueError, HsmBenchError):
            continue
        roots = [m for m in ontology.ancestors(mid) | {mid} if not ontology.parents.get(m)]
        if roots:
            return ontology.name(sorted(roots)[0])
    return "other"


def _manifest(record: RunRecord) -> Any:
    import pandas as pd

    from hsm_bench.api.testset import TestSet
    from testsets.ontology import load as load_ontology

    ts = TestSet(record.testset_root)
    onto = load_ontology(None)
    rows = []
    for r in ts:
        rows.append({
            "id": r.id, "task": r.task, "snr_db": r.snr_db, "caption": r.caption, "query_style": r.query_style,
            "instruction": r.instruction, "target_labels": list(r.target_labels),
            "interferer_labels": list(r.interferer_labels), "target_class": _top_level(r.target_labels, onto),
            "duration_s": r.duration_s, "mixture": str(ts.path(r.mixture)), "reference": str(ts.path(r.target)),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("id", drop=False)


def _items(record: RunRecord, ids: list[str]) -> list[dict[str, Any]]:
    """Latest row per (item, metric) at the version run.json records, one record per output key;
    items that failed separation get their keys as failed too, so every system has every item."""
    from hsm_bench.store.jsonl import read_jsonl

    versions = {name: d.get("version_key") for name, d in record.metric_defs.items()}
    outputs = {name: d.get("outputs", []) for name, d in record.metric_defs.items()}
    latest: dict[tuple[str, str], dict] = {}
    for row in read_jsonl(record.path / "items.jsonl"):
        if versions.get(row["metric"]) == row.get("version"):
            latest[(row["id"], row["metric"])] = row
    sep = {r["id"]: r for r in read_jsonl(record.path / "separate.jsonl")}
    out = []
    for i in ids:
        sep_row = sep.get(i)
        for metric, keys in outputs.items():
            row = latest.get((i, metric))
            for key in keys:
                rec = {"system": record.label, "testset": record.testset, "id": i, "metric": metric, "key": key,
                       "value": float("nan"), "status": "ok", "error": None}  # fmt: skip
                if sep_row is None or sep_row.get("status") != "ok":
                    rec.update(status="failed", error=(sep_row or {}).get("error") or "not separated")
                elif row is None:
                    rec.update(status="failed", error="not scored")
                elif row.get("status") != "ok":
                    rec.update(status="failed", error=row.get("error"))
                elif row.get("values", {}).get(key) is None:
                    rec.update(status="nonfinite", error=(row.get("nonfinite") or {}).get(key, "nan"))
                else:
                    rec["value"] = float(row["values"][key])
                out.append(rec)
    return out


def load(paths: list[str | Path]) -> Collection:
    """Every run under ``paths`` with its per-item values and its test set's manifest."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ConfigError("reports need pandas, matplotlib, scikit-learn and jinja2: pip install 'hsm-bench[report]'") from exc

    records = _records(find_runs(paths))
    manifests: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for r in records:
        if r.testset not in manifests:
            try:
                manifests[r.testset] = _manifest(r)
            except HsmBenchError as exc:
                raise ReportError(f"{r.path}: its test set is no longer readable at {r.testset_root} ({exc}); "
                                  "rebuild it there or report without this run") from None  # fmt: skip
        rows += _items(r, list(manifests[r.testset]["id"]))
    columns = ["system", "testset", "id", "metric", "key", "value", "status", "error"]
    items = pd.DataFrame(rows, columns=columns)
    return Collection(runs=records, items=items, manifests=manifests)
