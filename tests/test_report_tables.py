"""reports.tables: values against corpus.json of real run folders, the paper's layout with published rows,
significance marks, and LaTeX that holds together."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from hsm_bench.errors import ConfigError  # noqa: E402
from reports.collect import Collection, RunRecord, load  # noqa: E402
from reports.tables import write_tables  # noqa: E402

DEFS = {
    "lsd": {"outputs": ["lsd"], "higher_is_better": False},
    "psnr": {"outputs": ["psnr"], "higher_is_better": True},
    "clap": {"outputs": ["clap"], "higher_is_better": True},
}


def _collection(values: dict[str, dict[str, np.ndarray]], testset: str = "audiocaps",
                status: dict[tuple[str, str], str] | None = None) -> Collection:  # fmt: skip
    """A hand-made collection: values[system][key] per item; items alternate extract / remove."""
    status = status or {}
    n = len(next(iter(next(iter(values.values())).values())))
    ids = [f"it-{i:03d}" for i in range(n)]
    manifest = pd.DataFrame({"id": ids, "task": ["extract" if i % 2 == 0 else "remove" for i in range(n)]})
    runs, rows = [], []
    for system, by_key in values.items():
        runs.append(RunRecord(path=Path(f"/nonexistent/{system}"), system=system, label=system, testset=testset,
                              manifest_sha256="0" * 64, testset_root=Path("/nonexistent"),
                              info={"metrics": {k: DEFS[k] for k in by_key}}, corpus={}))  # fmt: skip
        for key, v in by_key.items():
            for i, item in enumerate(ids):
                st = status.get((system, key), "ok")
                rows.append({"system": system, "testset": testset, "id": item, "metric": key, "key": key,
                             "value": float(v[i]) if st == "ok" else float("nan"), "status": st,
                             "error": "+inf" if st == "nonfinite" else None})  # fmt: skip
    items = pd.DataFrame(rows, columns=["system", "testset", "id", "metric", "key", "value", "status", "error"])
    return Collection(runs=runs, items=items, manifests={testset: manifest.set_index("id", drop=False)})


def _md_rows(path: Path) -> dict[str, list[list[str]]]:
    """Markdown table rows by their first cell (a label may repeat: one list per occurrence)."""
    out: dict[str, list[list[str]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| Model"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            out.setdefault(cells[0], []).append(cells[1:])
    return out


def _md_header(path: Path) -> list[str]:
    line = next(x for x in path.read_text().splitlines() if x.startswith("| Model"))
    return [c.strip() for c in line.strip().strip("|").split(" | ")][1:]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def shifted():
    """hsm_tss best, audiosep clearly worse (+0.4 LSD), the target oracle better than both (a bound)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.0, size=40)
    return {
        "hsm_tss": {"lsd": base, "psnr": 25 - base},
        "audiosep": {"lsd": base + 0.4 + rng.normal(0, 0.05, 40), "psnr": 25 - base - rng.normal(1.0, 0.1, 40)},
        "oracle_target": {"lsd": 0.01 * base, "psnr": base},
    }


def test_paper_layout_with_published_rows_and_differences(shifted, tmp_path):
    col = _collection(shifted, status={("oracle_target", "psnr"): "nonfinite"})
    w = write_tables(col, tmp_path)
    md = tmp_path / "table2_objective.md"
    head = _md_header(md)
    # the paper's four test sets (published columns) in its order; KL only where the paper has it
    assert head[:3] == ["3 Sets · KL (↓)", "3 Sets · LSD (↓)", "3 Sets · PSNR (↑)"]
    assert [h.split(" · ")[0] for h in head[::3]] == ["3 Sets", "Clotho", "AudioCaps", "FSD50K"]
    rows = _md_rows(md)
    lsd = head.index("AudioCaps · LSD (↓)")
    ext = shifted["audiosep"]["lsd"][0::2]
    # measured audiosep extraction: mean [CI], then its paper row (Table II: AudioCaps LSD 2.142) and the difference
    assert rows["audiosep"][0][lsd].startswith(f"{ext.mean():.3f} [")
    assert rows["↳ AudioSep (paper)"][0][lsd] == "2.142"
    assert rows["↳ Δ vs paper"][0][lsd] == f"{ext.mean() - 2.142:+.3f}"
    # removal: only HSM-TSS has published removal numbers (1.908); no AudioSep paper row there
    rem = shifted["hsm_tss"]["lsd"][1::2]
    assert rows["hsm_tss"][1][lsd].startswith(f"**{rem.mean():.3f}** [")
    assert len(rows["↳ AudioSep (paper)"]) == 1
    assert rows["↳ HSM-TSS (paper)"][1][lsd] == "1.908"
    assert f"{rem.mean() - 1.908:+.3f}" in [r[lsd] for r in rows["↳ Δ vs paper"]]
    # a model these runs lack appears with its paper numbers only
    assert rows["LASS-Net (paper)"][0][head.index("3 Sets · KL (↓)")] == "2.577"
    assert rows["audiosep"][0][head.index("3 Sets · KL (↓)")] == "–"
    # the target oracle is lower (better) but a bound: hsm_tss is bold and the reference, audiosep differs (†)
    assert rows["oracle_target"][0][lsd].startswith(f"{0.01 * shifted['hsm_tss']['lsd'][0::2].mean():.3f} [")
    assert rows["audiosep"][0][lsd].endswith("]†")
    assert rows["oracle_target"][0][head.index("AudioCaps · PSNR (↑)")] == "+inf"
    # long CSV: measured rows carry the published value and the difference
    long = _csv(tmp_path / "table2_objective.csv")
    r = next(x for x in long if x["system"] == "audiosep" and x["key"] == "lsd" and x["task"] == "extract")
    assert float(r["published"]) == 2.142 and float(r["diff"]) == pytest.approx(ext.mean() - 2.142, abs=1e-12)
    assert r["significant"] == "True" and r["best"] == "False" and r["n"] == "20"
    assert any(x["source"] == "published" and x["model"] == "CLIPSep" and x["testset"] == "fsd50k" for x in long)
    # every file named, the left-out tables explained
    assert {p.name for p in w.files} >= {"table2_objective.md", "table2_objective.tex", "table2_objective.csv",
                                         "significance.csv"}  # fmt: skip
    assert "Table V left out: no retrieval results in these runs" in " ".join(w.notes)
    assert any(n.startswith("Table IV left out") and "music" in n for n in w.notes)
    assert any(n.startswith("Table II: KL not scored in these runs (published numbers only)") for n in w.notes)


def test_published_off_hides_every_paper_number(shifted, tmp_path):
    write_tables(_collection(shifted), tmp_path, published=False)
    md = (tmp_path / "table2_objective.md").read_text()
    assert "(paper)" not in md and "Δ" not in md and "2.142" not in md
    assert _md_header(tmp_path / "table2_objective.md") == ["AudioCaps · LSD (↓)", "AudioCaps · PSNR (↑)"]
    assert "(paper)" not in (tmp_path / "table2_objective.tex").read_text()
    long = _csv(tmp_path / "table2_objective.csv")
    assert "published" not in long[0] and {x["source"] for x in long} == {"measured"}


def test_significance_csv_lists_every_test_with_holm(shifted, tmp_path):
    from reports import stats

    write_tables(_collection(shifted), tmp_path)
    sig = [r for r in _csv(tmp_path / "significance.csv") if r["table"] == "table2_objective"]
    # 2 keys x 2 tasks, reference hsm_tss against the two others
    assert len(sig) == 8 and {r["reference"] for r in sig} == {"hsm_tss"}
    one = next(r for r in sig if (r["key"], r["task"], r["system"]) == ("lsd", "extract", "audiosep"))
    d = shifted["audiosep"]["lsd"][0::2] - shifted["hsm_tss"]["lsd"][0::2]
    assert int(one["n"]) == 20 and float(one["mean_diff"]) == pytest.approx(d.mean(), abs=1e-12)
    assert float(one["p"]) == stats.paired_test(shifted["audiosep"]["lsd"][0::2], shifted["hsm_tss"]["lsd"][0::2]).p
    assert float(one["ci_lo"]) < d.mean() < float(one["ci_hi"])
    holm = stats.holm([float(r["p"]) for r in sig])
    assert [float(r["p_holm"]) for r in sig] == pytest.approx(list(holm), abs=1e-15)
    assert all((r["significant"] == "True") == (float(r["p_holm"]) < 0.05) for r in sig)
    assert one["significant"] == "True"


def test_chosen_reference_and_nan_pairs(shifted, tmp_path):
    values = {s: {k: v.copy() for k, v in d.items()} for s, d in shifted.items()}
    values["audiosep"]["lsd"][4] = np.nan  # an extraction item audiosep failed
    col = _collection(values)
    col.items.loc[(col.items["system"] == "audiosep") & (col.items["id"] == "it-004") & (col.items["key"] == "lsd"),
                  "status"] = "failed"  # fmt: skip
    write_tables(col, tmp_path, reference="audiosep")
    sig = _csv(tmp_path / "significance.csv")
    one = next(r for r in sig if (r["key"], r["task"], r["system"]) == ("lsd", "extract", "hsm_tss"))
    assert one["reference"] == "audiosep" and one["n"] == "19" and one["n_dropped"] == "1"
    rows = _md_rows(tmp_path / "table2_objective.md")
    lsd = _md_header(tmp_path / "table2_objective.md").index("AudioCaps · LSD (↓)")
    assert rows["audiosep"][0][lsd].endswith("<sup>r</sup>")  # the reference is not the bold system
    assert rows["hsm_tss"][0][lsd].startswith("**") and rows["hsm_tss"][0][lsd].endswith("†")
    with pytest.raises(ConfigError, match="--reference nope: no such system"):
        write_tables(col, tmp_path / "x", reference="nope")


def test_gt_row_of_the_semantic_table(tmp_path):
    rng = np.random.default_rng(1)
    clap = rng.uniform(0.3, 0.6, size=20)
    col = _collection({"oracle_target": {"clap": clap}, "audiosep": {"clap": clap - 0.1}})
    w = write_tables(col, tmp_path)
    rows = _md_rows(tmp_path / "table3_semantic.md")
    head = _md_header(tmp_path / "table3_semantic.md")
    c = head.index("AudioCaps · CLAP (↑)")
    # the paper's GT (CLAP of the reference with its caption, 0.575 on AudioCaps) sits under the target
    # oracle's extraction row, the items whose reference is the captioned sound
    assert rows["↳ GT (paper)"][0][c] == "0.575" and len(rows["↳ GT (paper)"]) == 1
    assert rows["↳ Δ vs paper"][0][c] == f"{clap[0::2].mean() - 0.575:+.3f}"
    assert rows["↳ GT (paper)"][0][head.index("AudioCaps · AFSim (↑)")] == "–"  # the paper's "-"
    assert rows["audiosep"][0][c].startswith("**")  # the oracle is a bound: audiosep is the best system
    assert any(n.startswith("Table III: AFSim not scored") for n in w.notes)
    assert not any(n.startswith("Table III left out") for n in w.notes)


def test_latex_is_structurally_sound(shifted, tmp_path):
    write_tables(_collection(shifted, status={("oracle_target", "psnr"): "nonfinite"}), tmp_path)
    for tex in sorted(tmp_path.glob("*.tex")):
        text = tex.read_text()
        body = [x for x in text.splitlines() if not x.startswith("%")]
        src = "\n".join(body)
        assert [x for x in body if x in (r"\toprule", r"\bottomrule")] == [r"\toprule", r"\bottomrule"]
        assert src.index(r"\toprule") < src.index(r"\midrule") < src.index(r"\bottomrule")
        for env in ("table*", "tabular"):
            assert src.count(r"\begin{" + env + "}") == src.count(r"\end{" + env + "}") == 1
        assert src.count("{") - src.count(r"\{") == src.count("}") - src.count(r"\}")
        assert src.count("$") % 2 == 0
        assert not re.search(r"(?<!\\)_", src)  # every underscore escaped (oracle\_target, ...)
        n_cols = len(re.search(r"\\begin\{tabular\}\{([^}]*)\}", src).group(1).replace(" ", ""))
        for line in body:
            if line.endswith(r"\\") and not line.startswith(r"\multicolumn") and not line.startswith(" & \\multicolumn"):
                assert len(re.findall(r"(?<!\\)&", line)) == n_cols - 1, line
        assert r"oracle\_target" in src and r"\textbf{" in src and r"\dag" in src and r"$+\infty$" in src


# ---------------------------------------------------------------------------------------------
# real run folders


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """oracle_irm and oracle_mixture scored with LSD and PSNR on a small synthetic set."""
    from hydra import compose, initialize_config_dir

    from hsm_bench.paths import CONF_DIR
    from hsm_bench.pipeline.run import run_pipeline
    from tests.conftest import build_tiny_testset

    root = tmp_path_factory.mktemp("report-tables")
    ts = build_tiny_testset(root / "tiny" / "v1", n_items=8, seconds=1.0, seed=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSM_BENCH_HOME", str(root / "home"))
        for system in ("oracle_irm", "oracle_mixture"):
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                cfg = compose("config", overrides=[f"system={system}", f"testset.root={ts}",
                                                   f"paths.runs_dir={root / 'runs'}", f"paths.cache_dir={root / 'cache'}",
                                                   "runtime.progress=false", "metrics.names=[lsd,psnr]"])  # fmt: skip
            assert run_pipeline(cfg)["status"] == 0
    return root


def test_table_values_equal_the_corpus_files(real_runs, tmp_path):
    col = load([real_runs / "runs"])
    write_tables(col, tmp_path)
    long = _csv(tmp_path / "table2_objective.csv")
    checked = 0
    for run in col.runs:
        corpus = json.loads((run.path / "corpus.json").read_text())["metrics"]
        for key in ("lsd", "psnr"):
            row = next(x for x in long if (x["system"], x["key"], x["task"]) == (run.label, key, "all"))
            # the "all" rows are corpus.json's numbers, computed the same way
            assert float(row["mean"]) == pytest.approx(corpus[key]["mean"], rel=1e-12)
            assert [float(row["ci_lo"]), float(row["ci_hi"])] == pytest.approx(corpus[key]["ci95"], rel=1e-12)
            assert int(row["n"]) == corpus[key]["n"] == 8
            # the per-task rows split the same items: their weighted mean is the corpus mean
            parts = [next(x for x in long if (x["system"], x["key"], x["task"]) == (run.label, key, t))
                     for t in ("extract", "remove")]  # fmt: skip
            weighted = sum(float(p["mean"]) * int(p["n"]) for p in parts) / sum(int(p["n"]) for p in parts)
            assert weighted == pytest.approx(corpus[key]["mean"], rel=1e-12)
            checked += 1
    assert checked == 4
    # the Markdown shows the extraction means, rounded, read straight from items.jsonl
    rows = _md_rows(tmp_path / "table2_objective.md")
    head = _md_header(tmp_path / "table2_objective.md")
    man = col.manifest("tiny")
    for run in col.runs:
        vals = {}
        for line in (run.path / "items.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["metric"] == "lsd" and man.at[r["id"], "task"] == "extract":
                vals[r["id"]] = r["values"]["lsd"]
        assert rows[run.label][0][head.index("tiny · LSD (↓)")].split(" [")[0].strip("*") == f"{np.mean(list(vals.values())):.3f}"


def test_a_real_run_under_a_paper_name_gets_its_published_row(real_runs, tmp_path):
    # a copy of the IRM run stands in for an AudioSep run on AudioCaps: the paper has that cell
    src = next((real_runs / "runs").rglob("oracle_irm/*/run.json")).parent
    dst = tmp_path / "runs" / "audiocaps@x" / "audiosep" / src.name
    shutil.copytree(src, dst)
    info = json.loads((dst / "run.json").read_text())
    info["system"]["name"], info["testset"]["name"] = "audiosep", "audiocaps"
    (dst / "run.json").write_text(json.dumps(info))
    col = load([tmp_path / "runs"])
    write_tables(col, tmp_path / "out")
    long = _csv(tmp_path / "out" / "table2_objective.csv")
    row = next(x for x in long if (x["system"], x["key"], x["task"]) == ("audiosep", "psnr", "extract"))
    assert row["model"] == "AudioSep" and float(row["published"]) == 21.17
    assert float(row["diff"]) == pytest.approx(float(row["mean"]) - 21.17, abs=1e-12)
    rows = _md_rows(tmp_path / "out" / "table2_objective.md")
    head = _md_header(tmp_path / "out" / "table2_objective.md")
    assert rows["↳ AudioSep (paper)"][0][head.index("AudioCaps · PSNR (↑)")] == "21.17"
    assert rows["↳ Δ vs paper"][0][head.index("AudioCaps · PSNR (↑)")] == f"{float(row['mean']) - 21.17:+.2f}"
