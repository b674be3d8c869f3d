"""reports.breakdowns: per-group means and CIs, checked against corpus.json, items.jsonl and
hand-computed values; SNR bins; deterministic files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

import pandas as pd  # noqa: E402

from hsm_bench.cli import main  # noqa: E402
from hsm_bench.pipeline.aggregate import bootstrap_ci  # noqa: E402
from reports.breakdowns import breakdown_table, snr_bins, write_breakdowns  # noqa: E402
from reports.collect import Collection, RunRecord, load  # noqa: E402
from tests.conftest import SR, _noise, _tone  # noqa: E402

# (target label, its top AudioSet level); the last one maps to no ontology node
LABELS = [("Dog", "Animal"), ("Speech", "Human sounds"), ("Piano", "Music"), ("Rain", "Natural sounds"),
          ("hum of a tone", "other")]  # fmt: skip
SNRS = [-12.0, -7.5, -2.0, 0.0, 3.0, 7.0, 9.5, -4.0]


def build_varied_testset(root: Path, n_items: int = 8, seconds: float = 1.0) -> Path:
    """Tones against noises, with classes, SNRs, tasks and query kinds to group by."""
    from testsets.base import ItemSpec, TestSetWriter

    rng = np.random.default_rng(3)
    n = int(seconds * SR)
    writer = TestSetWriter(root)
    for k in range(n_items):
        label, _ = LABELS[k % len(LABELS)]
        task = "extract" if k % 2 == 0 else "remove"
        style = "label" if k % 4 == 3 else "caption"
        caption = label.lower() if style == "label" else f"the sound of {label.lower()}"
        writer.add(ItemSpec(
            id=f"v-{k:02d}", task=task, caption=caption, instruction=f"{task.capitalize()} {caption}.",
            target=_tone(float(rng.uniform(200, 800)), n, rng), interferer=_noise(n, rng, colour=0.5),
            snr_db=SNRS[k % len(SNRS)], target_captions=[caption], target_labels=[label],
            interferer_labels=["noise"], source={"dataset": "tests"}, query_style=style,
        ))  # fmt: skip
    return writer.finish({"name": "varied", "version": "v1", "builder": "tests", "seed": 3})


def make_runs(root: Path, systems=("oracle_irm", "oracle_mixture", "oracle_target"), metrics: str = "sdr,lsd") -> Path:
    """Run folders of ``systems`` on the varied set under ``root/runs`` (features cached in ``root/cache``)."""
    ts = build_varied_testset(root / "ts" / "v1")
    for system in systems:
        assert main(["run", "--system", system, "--metrics", metrics, f"testset.root={ts}",
                     f"paths.runs_dir={root / 'runs'}", f"paths.cache_dir={root / 'cache'}",
                     "runtime.progress=false"]) == 0  # fmt: skip
    return root / "runs"


def shared_runs(tmp_path_factory) -> Path:
    """The three oracles on the varied set, built once per session (the figure tests use them too)."""
    root = tmp_path_factory.getbasetemp() / "report-breakdown-runs"
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        make_runs(root)
        (root / "done").touch()
    return root / "runs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def col(runs):
    return load([runs])


def only(col: Collection, *keys: str) -> Collection:
    """The collection with only ``keys`` (every figure costs; most checks need one key)."""
    return Collection(runs=col.runs, items=col.items[col.items["key"].isin(keys)], manifests=col.manifests)


def test_snr_bins_are_fixed_5_db_bins_over_the_range():
    labels, order = snr_bins([-12.3, -10.0, -0.1, 0.0, 4.99, 7.0, 11.0])
    assert labels == ["[-15, -10)", "[-10, -5)", "[-5, 0)", "[0, 5)", "[0, 5)", "[5, 10)", "[10, 15)"]
    assert order == ["[-15, -10)", "[-10, -5)", "[-5, 0)", "[0, 5)", "[5, 10)", "[10, 15)"]
    # empty bins inside the range stay, so plots of two test sets share their axis steps
    assert snr_bins([1.0, 16.0])[1] == ["[0, 5)", "[5, 10)", "[10, 15)", "[15, 20)"]


def synthetic_collection(values: dict[str, list[float]], manifest: dict[str, list], higher_is_better: bool = False) -> Collection:
    """Test set "t", key "k" with the given per-system values (no files behind it)."""
    ids = [f"i{k}" for k in range(len(manifest["task"]))]
    m = pd.DataFrame({"id": ids, **manifest}).set_index("id", drop=False)
    rows = [{"system": s, "testset": "t", "id": i, "metric": "m", "key": "k", "value": v,
             "status": "ok" if math.isfinite(v) else "nonfinite", "error": None}
            for s, vs in values.items() for i, v in zip(ids, vs)]  # fmt: skip
    runs = [RunRecord(path=Path("/nonexistent") / s, system=s, label=s, testset="t", manifest_sha256="0",
                      testset_root=Path("/nonexistent"),
                      info={"metrics": {"m": {"outputs": ["k"], "higher_is_better": higher_is_better}}}, corpus={})
            for s in values]  # fmt: skip
    return Collection(runs=runs, items=pd.DataFrame(rows), manifests={"t": m})


def test_group_means_counts_and_cis_by_hand():
    col = synthetic_collection(
        {"a": [1.0, 2.0, 3.0, 4.0, math.nan, 6.0], "b": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]},
        {"task": ["extract", "remove", "extract", "remove", "extract", "remove"],
         "snr_db": [-3.0, 2.0, 4.0, 12.0, -1.0, 6.0],
         "target_class": ["Music", "other", "Animal", "Music", "Music", "Animal"],
         "query_style": ["caption", "label", "caption", "caption", "label", "caption"]},
    )  # fmt: skip
    t = breakdown_table(col, "t", "k").set_index(["by", "group", "system"])
    # extract: items 0, 2, 4 -> a has 1, 3 and a NaN (left out, counted)
    r = t.loc[("task", "extract", "a")]
    assert (r["n"], r["n_missing"], r["mean"]) == (2, 1, 2.0)
    assert (r["ci_low"], r["ci_high"]) == bootstrap_ci(np.array([1.0, 3.0]))
    assert t.loc[("task", "remove", "a"), "mean"] == pytest.approx(4.0, abs=1e-12)  # (2 + 4 + 6) / 3
    # bins [-5, 0): items 0, 4; [0, 5): 1, 2; [5, 10): 5; [10, 15): 3
    assert t.loc[("snr", "[-5, 0)", "a"), "n"] == 1 and t.loc[("snr", "[-5, 0)", "a"), "n_missing"] == 1
    assert t.loc[("snr", "[0, 5)", "a"), "mean"] == 2.5
    single = t.loc[("snr", "[10, 15)", "a")]
    assert (single["mean"], single["ci_low"], single["ci_high"]) == (4.0, 4.0, 4.0)
    assert t.loc[("target_class", "Music", "a"), "mean"] == 2.5  # items 0, 3 (4 is NaN)
    assert t.loc[("query_style", "label", "a"), "mean"] == 2.0  # item 1 (4 is NaN)
    # the classes in name order, "other" last; every system in every group
    classes = list(dict.fromkeys(t.xs("target_class", level="by").index.get_level_values("group")))
    assert classes == ["Animal", "Music", "other"]
    assert (t.xs("b", level="system")["mean"] == 0).all()
    assert not t.loc[("all", "all", "a"), "higher_is_better"]


def test_all_row_equals_corpus_json_and_groups_equal_items_jsonl(col, runs, tmp_path):
    keys = {"sdr", "si_sdr", "sdri", "si_sdri", "lsd", "lsd_aligned"}
    assert set(col.keys()) == keys
    table = pd.concat([breakdown_table(col, "varied", k) for k in sorted(keys)], ignore_index=True)
    for run_json in runs.rglob("run.json"):
        folder = run_json.parent
        system = json.loads(run_json.read_text())["system"]["name"]
        corpus = json.loads((folder / "corpus.json").read_text())["metrics"]
        for key in keys:
            row = table[(table["by"] == "all") & (table["system"] == system) & (table["key"] == key)].iloc[0]
            c = corpus[key]
            assert row["n"] == c["n"] and row["n_missing"] == c["n_failed"] + c["n_nonfinite"]
            if c["mean"] is None:
                assert math.isnan(row["mean"])
                continue
            assert row["mean"] == pytest.approx(c["mean"], rel=1e-12, abs=1e-12)
            assert [row["ci_low"], row["ci_high"]] == pytest.approx(c["ci95"], rel=1e-12, abs=1e-12)
        # per task and per class, straight from items.jsonl and the manifest
        manifest = {r["id"]: r for r in map(json.loads, (col.run(system, "varied").testset_root / "manifest.jsonl").open())}
        sdr = {r["id"]: r["values"]["sdri"] for r in map(json.loads, (folder / "items.jsonl").open()) if r["metric"] == "sdr"}
        for task in ("extract", "remove"):
            want = np.mean([v for i, v in sdr.items() if manifest[i]["task"] == task])
            got = table[(table["by"] == "task") & (table["group"] == task) & (table["system"] == system)
                        & (table["key"] == "sdri")]["mean"].iloc[0]  # fmt: skip
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        for label, cls in LABELS:
            want = np.mean([v for i, v in sdr.items() if manifest[i]["target_labels"] == [label]])
            got = table[(table["by"] == "target_class") & (table["group"] == cls) & (table["system"] == system)
                        & (table["key"] == "sdri")]["mean"].iloc[0]  # fmt: skip
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    # query kinds and SNR bins of the set
    sel = table[(table["key"] == "sdr") & (table["system"] == "oracle_irm")]
    assert list(sel[sel["by"] == "query_style"]["group"]) == ["caption", "label"]
    assert list(sel[sel["by"] == "query_style"]["n"]) == [6, 2]
    assert list(sel[sel["by"] == "snr"]["group"]) == ["[-15, -10)", "[-10, -5)", "[-5, 0)", "[0, 5)", "[5, 10)"]
    assert list(sel[sel["by"] == "snr"]["n"]) == [1, 1, 2, 2, 2]
    # the mixture oracle improves nothing in any group, exactly
    mix = table[(table["key"] == "sdri") & (table["system"] == "oracle_mixture")]
    assert (mix["mean"] == 0).all() and (mix["ci_low"] == 0).all()
    w = write_breakdowns(only(col, "sdri"), tmp_path / "b")
    names = {p.relative_to(tmp_path / "b").as_posix() for p in w.files}
    assert names == {f"varied/sdri.{ext}" for ext in ("csv", "md", "png", "pdf")} | {"breakdowns.csv"}
    written = pd.read_csv(tmp_path / "b" / "varied" / "sdri.csv")
    pd.testing.assert_frame_equal(written, table[table["key"] == "sdri"].reset_index(drop=True), check_exact=False, rtol=1e-15)
    md = (tmp_path / "b" / "varied" / "sdri.md").read_text()
    assert "| extract | 4 |" in md and "[-15, -10) to [5, 10)" in md and "-12.00 to 9.50 dB" in md
    assert "seed 0" in md and "1000 resamples" in md


def test_nonfinite_keys_are_noted_and_files_are_deterministic(col, tmp_path):
    col = only(col, "lsd")
    a = write_breakdowns(col, tmp_path / "a")
    b = write_breakdowns(col, tmp_path / "b")
    # PSNR is not scored here; LSD of the target oracle is finite (0): no system is empty
    assert a.notes == [] and [p.name for p in a.files] == [p.name for p in b.files]
    for pa, pb in zip(a.files, b.files):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    pdf = (tmp_path / "a" / "varied" / "lsd.pdf").read_bytes()
    assert b"CreationDate" not in pdf and b"Producer" not in pdf and b"/FontFile2" in pdf  # TrueType embedded
    # a key every item of one system lacks: that system's cells are empty and it is named in a note
    items = col.items.copy()
    sel = (items["system"] == "oracle_target") & (items["key"] == "lsd")
    items.loc[sel, "value"] = math.nan
    items.loc[sel, "status"] = "nonfinite"
    w = write_breakdowns(Collection(runs=col.runs, items=items, manifests=col.manifests), tmp_path / "c")
    assert w.notes == ["varied/lsd: no finite value for oracle_target (every item failed or is non-finite): left out of its plot"]
    md = (tmp_path / "c" / "varied" / "lsd.md").read_text()
    assert "| all | 8 |" in md and "– (8 missing)" in md
