"""reports.collect: run folders -> per-item values and manifest fields; mixed manifests refused."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("pandas")

from hsm_bench.cli import main  # noqa: E402
from reports.collect import ReportError, find_runs, load  # noqa: E402
from tests.conftest import build_tiny_testset  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """oracle_irm, oracle_mixture and oracle_target on a 6-item set, scored with sdr and lsd."""
    root = tmp_path_factory.mktemp("report-runs")
    ts = build_tiny_testset(root / "ts" / "v1", n_items=6, seconds=1.0, seed=4)
    for system in ("oracle_irm", "oracle_mixture", "oracle_target"):
        assert main(["run", "--system", system, "--metrics", "sdr,lsd", f"testset.root={ts}",
                     f"paths.runs_dir={root / 'runs'}", "runtime.progress=false"]) == 0  # fmt: skip
    return root


def test_values_equal_the_corpus_and_every_system_has_every_item(runs, capsys):
    col = load([runs / "runs"])
    capsys.readouterr()
    assert [r.label for r in sorted(col.runs, key=lambda r: r.label)] == ["oracle_irm", "oracle_mixture", "oracle_target"]
    assert col.testsets == ["tiny"]
    for r in col.runs:
        for key in ("sdr", "sdri", "lsd_aligned"):
            vals = col.values("tiny", key)[r.label]
            assert len(vals) == 6
            assert vals.mean() == pytest.approx(r.corpus["metrics"][key]["mean"], rel=1e-12)
    assert (col.values("tiny", "sdri")["oracle_mixture"] == 0).all()
    m = col.manifest("tiny")
    assert list(m["task"]) == ["extract", "remove"] * 3 and set(m["query_style"]) == {"caption"}
    assert m.loc["tiny-000", "reference"].endswith("audio/target/tiny-000.wav")
    assert col.higher_is_better("sdri") and not col.higher_is_better("lsd")


def test_failed_and_nonfinite_items_are_marked(runs, tmp_path, capsys):
    import shutil

    copy = tmp_path / "runs"
    shutil.copytree(runs / "runs", copy)
    run = next(p.parent for p in copy.rglob("run.json") if p.parent.parent.name == "oracle_irm")
    rows = [json.loads(line) for line in (run / "separate.jsonl").read_text().splitlines()]
    rows[2].update(status="error", error="device lost", output=None)
    (run / "separate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    col = load([copy])
    failed = col.items[(col.items["system"] == "oracle_irm") & (col.items["id"] == rows[2]["id"])]
    assert set(failed["status"]) == {"failed"} and set(failed["error"]) == {"device lost"}
    assert failed["value"].isna().all()
    psnr_free = col.items[(col.items["system"] == "oracle_target") & (col.items["key"] == "sdr")]
    assert psnr_free["value"].map(math.isfinite).all()


def test_mixed_manifests_and_missing_runs_are_one_line_errors(runs, tmp_path):
    other = build_tiny_testset(tmp_path / "ts2" / "v1", n_items=4, seconds=1.0, seed=9)  # same name, other items
    assert main(["run", "--system", "oracle_mixture", "--metrics", "sdr", f"testset.root={other}",
                 f"paths.runs_dir={tmp_path / 'runs'}", "runtime.progress=false"]) == 0  # fmt: skip
    with pytest.raises(ReportError, match="runs on test set 'tiny' were made on different manifests"):
        load([runs / "runs", tmp_path / "runs"])
    with pytest.raises(ReportError, match="no run folders"):
        find_runs([tmp_path / "ts2"])


def test_report_refuses_to_overwrite_a_folder_that_is_not_a_report(runs, tmp_path, capsys):
    keep = tmp_path / "thesis"
    keep.mkdir()
    (keep / "chapter1.tex").write_text("mine")
    assert main(["report", str(runs / "runs"), "--out", str(keep), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a report folder" in err
    assert (keep / "chapter1.tex").read_text() == "mine"
