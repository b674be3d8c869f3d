"""The paper's tables from run folders: Table II (KL, LSD, PSNR), III (AFSim, CLAP, GT row), IV (MUSIC),
plus every other scored metric, each as Markdown, LaTeX (booktabs) and a long CSV, with the paired
significance tests of every table in ``significance.csv``.

Layout (as the paper's): one column group per test set (the paper's four general-audio sets in
its order, then any other set, e.g. ``demo``; Table IV is the ``music`` set), one column per
metric; rows per task (Extraction, Removal), one per measured system (over the items of that
task; test sets mix both tasks). A measured cell holds the mean and the 95% percentile
bootstrap CI of the mean over the task's items, computed exactly as ``corpus.json`` does
(1000 resamples, seed 0, items in id order: the ``all`` rows of the CSV reproduce corpus.json).
Markdown shows ``mean [lo, hi]``; LaTeX shows ``mean ± half-width`` with half-width
``(hi - lo) / 2`` (the exact bounds are in the CSV).

Published numbers (``reports/published/table{2,3,4}_*.csv``, sources in SOURCES.md) come as
rows: under a measured system the paper has (by the name map below) its "(paper)" row and a
``Δ`` row (measured minus published); models the paper has and these runs lack get their
paper row only. The paper's GT row (CLAP of the reference with its caption) is compared with
``oracle_target`` on the extraction items, the only items whose reference is the captioned
sound. A test set the paper lacks has no published numbers; ``published=False`` drops them all.

Best per column and task is bold (by ``higher_is_better``). Systems named ``oracle_*`` see
the reference or return the input: they are bounds, so they are neither bold nor the reference
unless a column holds nothing else. Significance: per column and task, the reference (default
the bold system; ``reference=`` fixes one) against every other system, see
:mod:`reports.stats`; Holm across all tests of the table; † marks a significant difference.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hsm_bench.errors import ConfigError
from reports import stats
from reports.collect import Collection, ReportError, Written

PUBLISHED_DIR = Path(__file__).parent / "published"
ALPHA = 0.05
TASKS = ("extract", "remove")
TASK_TITLES = {"extract": "Extraction", "remove": "Removal"}

# hsm-bench system -> the paper's model name (published CSVs use these names)
PAPER_MODELS = {
    "oracle_target": "GT", "lass_net": "LASS-Net", "clipsep": "CLIPSep", "bimodalsep": "BiModalSep",
    "audiosep": "AudioSep", "hsm_tss_single": "HSM-TSS single", "hsm_tss": "HSM-TSS",
}  # fmt: skip
PAPER_ORDER = ["GT", "LASS-Net", "CLIPSep", "BiModalSep", "AudioSep", "HSM-TSS single", "HSM-TSS"]
PAPER_TESTSETS = {"three_sets": "3 Sets", "clotho": "Clotho", "audiocaps": "AudioCaps", "fsd50k": "FSD50K",
                  "music": "MUSIC"}  # fmt: skip
KEY_NAMES = {
    "kl": "KL", "kl_sigmoid": "KL (sigmoid)", "lsd": "LSD", "lsd_aligned": "LSD (aligned)", "psnr": "PSNR",
    "clap": "CLAP", "clap_a": "CLAP-A", "clapi": "CLAPi", "afsim": "AFSim", "sdr": "SDR", "sdri": "SDRi",
    "si_sdr": "SI-SDR", "si_sdri": "SI-SDRi",
}  # fmt: skip
# the paper's directions, for columns that only published numbers fill
PAPER_HIGHER = {"kl": False, "lsd": False, "psnr": True, "clap": True, "afsim": True}
DB_KEYS = {"psnr", "sdr", "sdri", "si_sdr", "si_sdri"}  # two decimals, as the paper prints PSNR
METRIC_OF = {"kl": "kl", "lsd": "lsd", "psnr": "psnr", "clap": "clap", "afsim": "afsim"}


@dataclass(frozen=True)
class Spec:
    name: str  # file stem
    number: str  # "II"
    title: str
    keys: tuple[str, ...]
    published_csv: str | None
    page: int | None  # page of the paper holding the table
    music: bool  # True: only the music set; False: every other set


SPECS = (
    Spec("table2_objective", "II", "Objective evaluation of separation for general audio", ("kl", "lsd", "psnr"),
         "table2_objective.csv", 8, False),
    Spec("table3_semantic", "III", "Semantic evaluation for general audio", ("afsim", "clap"),
         "table3_semantic.csv", 8, False),
    Spec("table4_music", "IV", "Evaluation on the zero-shot MUSIC dataset", ("kl", "lsd", "psnr", "clap", "afsim"),
         "table4_music.csv", 8, True),
)  # fmt: skip
LEFT_OUT = (
    ("V", "retrieval", "text-to-audio retrieval is not an evaluation hsm-bench runs"),
    ("VI", "captioning", "audio captioning is not an evaluation hsm-bench runs"),
    ("VII", "HEAR benchmark", "HEAR encoder evaluation is not an evaluation hsm-bench runs"),
    ("VIII", "neural codec", "codec reconstruction is not an evaluation hsm-bench runs"),
)
PAPER = "HSM-TSS (Yin et al., arXiv 2505.21025v1)"


# ---------------------------------------------------------------------------------------------
# numbers


def load_published(spec: Spec) -> dict[tuple[str, str, str, str], float]:
    """(model, task, test set, key) -> the paper's value; the GT row (no task) counts as extraction."""
    out: dict[tuple[str, str, str, str], float] = {}
    if spec.published_csv is None:
        return out
    with open(PUBLISHED_DIR / spec.published_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            testset = row.get("testset") or "music"
            task = row["task"] or "extract"
            for key in spec.keys:
                if row.get(key):
                    out[(row["model"], task, testset, key)] = float(row[key])
    return out


def measured_cells(col: Collection) -> Any:
    """One row per (test set, key, system label, task in extract/remove/all): mean and bootstrap CI
    over the finite values, counts of failed and non-finite items, the non-finite labels."""
    import pandas as pd

    from hsm_bench.pipeline.aggregate import bootstrap_ci

    items = col.items
    if items.empty:
        return pd.DataFrame(columns=["testset", "key", "system", "task", "mean", "ci_lo", "ci_hi", "n", "n_failed",
                                     "n_nonfinite", "nonfinite"])  # fmt: skip
    tasks = pd.concat([col.manifest(t)["task"].rename("task").to_frame().assign(testset=t) for t in col.testsets])
    df = items.merge(tasks.reset_index(), on=["testset", "id"], how="left").sort_values("id", kind="stable")
    rows = []
    both = pd.concat([df, df.assign(task="all")])
    for (testset, key, system, task), g in both.groupby(["testset", "key", "system", "task"], sort=False):
        v = g["value"].to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(finite)
        labels = Counter(g.loc[g["status"] == "nonfinite", "error"].fillna("nan"))
        rows.append({"testset": testset, "key": key, "system": system, "task": task,
                     "mean": float(finite.mean()) if len(finite) else math.nan, "ci_lo": lo, "ci_hi": hi,
                     "n": len(finite), "n_failed": int((g["status"] == "failed").sum()),
                     "n_nonfinite": int(sum(labels.values())),
                     "nonfinite": ", ".join(f"{c} x {lab}" for lab, c in labels.items())})  # fmt: skip
    return pd.DataFrame(rows)


def _is_bound(system: str) -> bool:
    # oracles see the reference (or return the input): bold or reference they would hide the real contest
    return system.startswith("oracle_")


@dataclass
class Column:
    testset: str
    key: str
    higher: bool


@dataclass
class Table:
    spec: Spec
    columns: list[Column]
    tasks: list[str]
    cells: dict[tuple[str, str, str, str], dict]  # (system, task, testset, key) -> measured row
    published: dict[tuple[str, str, str, str], float]
    systems: list[str]  # labels
    base: dict[str, str]  # label -> registered system name
    best: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)  # (task, testset, key) -> labels
    reference: dict[tuple[str, str, str], str] = field(default_factory=dict)
    tests: list[dict] = field(default_factory=list)
    tests_by: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)  # (system, task, testset, key)
    notes: list[str] = field(default_factory=list)

    def test_of(self, system: str, task: str, testset: str, key: str) -> dict | None:
        """The test of ``system`` against its column's reference, if one ran."""
        return self.tests_by.get((system, task, testset, key))

    def model(self, label: str) -> str | None:
        m = PAPER_MODELS.get(self.base[label])
        # GT is the semantic tables' row; in Table II the target oracle is just a bound
        return None if m == "GT" and not {"clap", "afsim"} & set(self.spec.keys) else m


def _order(testsets: list[str]) -> list[str]:
    paper = [t for t in PAPER_TESTSETS if t in testsets]
    return paper + sorted(t for t in testsets if t not in PAPER_TESTSETS)


def build_table(col: Collection, spec: Spec, keys: tuple[str, ...], cells_df: Any, published: bool,
                reference: str | None) -> Table | None:  # fmt: skip
    """Lay out one table; None when these runs have no value for it."""
    sets = [t for t in col.testsets if (t == "music") == spec.music]
    sel = cells_df[cells_df["testset"].isin(sets) & cells_df["key"].isin(keys)]
    if sel.empty:
        return None
    pub = load_published(spec) if published else {}
    base = {r.label: r.system for r in col.runs}
    cells = {(r.system, r.task, r.testset, r.key): r._asdict() for r in sel.itertuples(index=False)}
    present = {(t, k) for (_, _, t, k) in cells} | {(t, k) for (_, _, t, k) in pub}
    scored = set(sel["key"])
    columns = []
    for t in _order(sorted({t for t, _ in present})):
        for k in keys:
            if (t, k) in present:
                higher = col.higher_is_better(k) if k in scored else PAPER_HIGHER[k]
                columns.append(Column(t, k, higher))
    tasks = [t for t in TASKS if t in set(sel["task"]) or any(p[1] == t for p in pub)]
    systems = sorted(set(sel["system"]))
    table = Table(spec, columns, tasks, cells, pub, systems, base)
    _mark_best_and_test(col, table, reference)
    return table


def _mark_best_and_test(col: Collection, table: Table, reference: str | None) -> None:
    values_cache: dict[tuple[str, str], Any] = {}
    skipped_ref = []
    for c in table.columns:
        for task in table.tasks:
            have = {s: table.cells[(s, task, c.testset, c.key)] for s in table.systems
                    if (s, task, c.testset, c.key) in table.cells and table.cells[(s, task, c.testset, c.key)]["n"] > 0}  # fmt: skip
            if not have:
                continue
            pool = {s: v for s, v in have.items() if not _is_bound(table.base[s])} or have
            top = max(pool.values(), key=lambda v: v["mean"]) if c.higher else min(pool.values(), key=lambda v: v["mean"])
            best = {s for s, v in pool.items() if v["mean"] == top["mean"]}
            table.best[(task, c.testset, c.key)] = best
            if reference is not None:
                if reference not in have:
                    skipped_ref.append(f"{c.testset}/{KEY_NAMES.get(c.key, c.key)}/{task}")
                    continue
                ref = reference
            else:
                ref = sorted(best)[0]
            table.reference[(task, c.testset, c.key)] = ref
            if (c.testset, c.key) not in values_cache:
                vals = col.values(c.testset, c.key)
                task_of = col.manifest(c.testset)["task"].reindex(vals.index).to_numpy()
                values_cache[(c.testset, c.key)] = (vals.to_numpy(dtype=np.float64), list(vals.columns), task_of)
            matrix, labels, task_of = values_cache[(c.testset, c.key)]
            rows = task_of == task
            others = [s for s in table.systems if s != ref and s in labels and (s, task, c.testset, c.key) in table.cells]
            results = stats.paired_tests(matrix[rows][:, [labels.index(s) for s in others]],
                                         matrix[rows, labels.index(ref)])  # fmt: skip
            for s, res in zip(others, results):
                table.tests.append({"table": table.spec.name, "testset": c.testset, "key": c.key, "task": task,
                                    "reference": ref, "system": s, "n": res.n, "n_dropped": res.n_dropped,
                                    "mean_diff": res.mean_diff, "ci_lo": res.ci_lo, "ci_hi": res.ci_hi, "p": res.p})  # fmt: skip
    p_holm = stats.holm([t["p"] for t in table.tests])
    for t, ph in zip(table.tests, p_holm):
        t["p_holm"] = float(ph)
        t["significant"] = bool(np.isfinite(ph) and ph < ALPHA)
        table.tests_by[(t["system"], t["task"], t["testset"], t["key"])] = t
    if skipped_ref:
        table.notes.append(f"{_title(table.spec)}: reference {reference} has no values in "
                           f"{', '.join(skipped_ref)}: not tested there")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# rows


@dataclass
class Row:
    kind: str  # measured | published | delta | section
    label: str
    task: str
    system: str | None = None
    model: str | None = None


def _rows(table: Table) -> list[Row]:
    rows: list[Row] = []
    for task in table.tasks:
        rows.append(Row("section", TASK_TITLES[task], task))
        groups: list[tuple[tuple, list[Row]]] = []
        pub_models = [m for m in PAPER_ORDER if any(k[0] == m and k[1] == task for k in table.published)]
        matched = set()
        for s in table.systems:
            if not any((s, task, c.testset, c.key) in table.cells for c in table.columns):
                continue
            model = table.model(s)
            group = [Row("measured", s, task, system=s, model=model)]
            if model in pub_models:
                matched.add(model)
                group += [Row("published", f"{model} (paper)", task, system=s, model=model),
                          Row("delta", "Δ vs paper", task, system=s, model=model)]  # fmt: skip
            rank = PAPER_ORDER.index(model) if model in PAPER_ORDER else len(PAPER_ORDER)
            groups.append(((rank, 0, s), group))
        for m in pub_models:
            if m not in matched:
                groups.append(((PAPER_ORDER.index(m), 1, m), [Row("published", f"{m} (paper)", task, model=m)]))
        for _, group in sorted(groups, key=lambda g: g[0]):
            rows += group
    return rows


def _decimals(key: str) -> int:
    return 2 if key in DB_KEYS else 3


def _fmt(v: float, key: str, signed: bool = False) -> str:
    return f"{v:+.{_decimals(key)}f}" if signed else f"{v:.{_decimals(key)}f}"


def _cell(table: Table, row: Row, c: Column) -> dict[str, Any] | None:
    """What one cell shows: measured stats with marks, a published value, or a difference."""
    if row.kind == "measured":
        cell = table.cells.get((row.system, row.task, c.testset, c.key))
        if cell is None:
            return None
        if cell["n"] == 0:
            labels = cell["nonfinite"].split(", ")
            return {"text": labels[0].split(" x ")[1] if cell["nonfinite"] and len(labels) == 1 else "n/a", "empty": True}
        col_key = (row.task, c.testset, c.key)
        bold = row.system in table.best.get(col_key, set())
        ref = table.reference.get(col_key)
        test = table.test_of(row.system, *col_key)
        unique_bold = bold and len(table.best[col_key]) == 1
        return {"mean": cell["mean"], "lo": cell["ci_lo"], "hi": cell["ci_hi"], "bold": bold,
                "ref": ref == row.system and not unique_bold, "sig": bool(test and test["significant"])}  # fmt: skip
    value = table.published.get((row.model, row.task, c.testset, c.key))
    if value is None:
        return None
    if row.kind == "published":
        return {"value": value}
    cell = table.cells.get((row.system, row.task, c.testset, c.key))
    if cell is None or cell["n"] == 0:
        return None
    return {"diff": cell["mean"] - value}


# ---------------------------------------------------------------------------------------------
# writers


def _md_cell(cell: dict[str, Any] | None, key: str) -> str:
    if cell is None:
        return "–"
    if "text" in cell:
        return cell["text"]
    if "value" in cell:
        return _fmt(cell["value"], key)
    if "diff" in cell:
        return _fmt(cell["diff"], key, signed=True)
    mean = _fmt(cell["mean"], key)
    text = (f"**{mean}**" if cell["bold"] else mean) + f" [{_fmt(cell['lo'], key)}, {_fmt(cell['hi'], key)}]"
    return text + ("†" if cell["sig"] else "") + ("<sup>r</sup>" if cell["ref"] else "")


def _tex_escape(s: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$"}  # fmt: skip
    return "".join(repl.get(ch, ch) for ch in s)


def _tex_cell(cell: dict[str, Any] | None, key: str) -> str:
    if cell is None:
        return "--"
    if "text" in cell:
        return {"+inf": r"$+\infty$", "-inf": r"$-\infty$"}.get(cell["text"], _tex_escape(cell["text"]))
    if "value" in cell:
        return r"\textit{" + _fmt(cell["value"], key) + "}"
    if "diff" in cell:
        return "$" + _fmt(cell["diff"], key, signed=True) + "$"
    mean = _fmt(cell["mean"], key)
    half = _fmt((cell["hi"] - cell["lo"]) / 2, key)
    text = (r"\textbf{" + mean + "}" if cell["bold"] else mean) + r"{\scriptsize$\pm$" + half + "}"
    marks = (r"\dag" if cell["sig"] else "") + ("r" if cell["ref"] else "")
    return text + (r"\textsuperscript{" + marks + "}" if marks else "")


def _head(c: Column) -> str:
    return f"{KEY_NAMES.get(c.key, c.key)} ({'↑' if c.higher else '↓'})"


def _legend(table: Table, published: bool, ref_mark: str = "<sup>r</sup>") -> list[str]:
    n_tests = len([t for t in table.tests if np.isfinite(t["p"])])
    lines = [
        "Cells: mean [95% CI] over the items of the task (percentile bootstrap, 1000 resamples, seed 0, as "
        f"corpus.json); n per cell in {table.spec.name}.csv.",
        "Bold: best measured system per column and task; oracle_* systems are bounds (they see the reference or "
        "return the input) and are bold only in a column holding nothing else.",
        f"Significance: {stats.METHOD}. † marks a system whose difference from the column's reference (the bold "
        f"system unless chosen; {ref_mark} where that is ambiguous) is significant at α = {ALPHA} after Holm over "
        f"the {n_tests} tests of this table; every test is in significance.csv.",
    ]
    if published and table.published:
        page = f", p. {table.spec.page}" if table.spec.page else ""
        lines.append(f"Published: {PAPER}, Table {table.spec.number}{page} (reports/published/"
                     f"{table.spec.published_csv}); Δ = measured − published. The paper's test sets are its own "
                     "builds: Δ compares settings, not the same items.")  # fmt: skip
    if any(c.get("nonfinite") for c in table.cells.values()):
        lines.append("+inf: every value of the cell is non-finite (e.g. PSNR of identical spectrograms) and left "
                     "out of the mean, as audioldm-eval does.")  # fmt: skip
    return lines


def _title(spec: Spec) -> str:
    return f"Table {spec.number}: {spec.title}" if spec.number else spec.title


def write_markdown(table: Table, rows: list[Row], path: Path, published: bool) -> None:
    heads = ["Model"] + [f"{PAPER_TESTSETS.get(c.testset, c.testset)} · {_head(c)}" for c in table.columns]
    lines = [f"## {_title(table.spec)}", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        if row.kind == "section":
            lines.append(f"| **{row.label}** |" + " |" * len(table.columns))
            continue
        label = {"measured": row.label, "published": f"↳ {row.label}" if row.system else row.label,
                 "delta": f"↳ {row.label}"}[row.kind]  # fmt: skip
        cells = [_md_cell(_cell(table, row, c), c.key) for c in table.columns]
        lines.append("| " + " | ".join([label.replace("|", "\\|")] + cells) + " |")
    lines += [""] + [f"- {x}" for x in _legend(table, published) + table.notes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_latex(table: Table, rows: list[Row], path: Path, published: bool) -> None:
    ncol = 1 + len(table.columns)
    groups: list[tuple[str, int]] = []
    for c in table.columns:
        if groups and groups[-1][0] == c.testset:
            groups[-1] = (c.testset, groups[-1][1] + 1)
        else:
            groups.append((c.testset, 1))
    spec = "l" + " ".join("r" * n for _, n in groups)
    head1, rules, start = [""], [], 2
    for t, n in groups:
        head1.append(r"\multicolumn{%d}{c}{%s}" % (n, _tex_escape(PAPER_TESTSETS.get(t, t))))
        rules.append(r"\cmidrule(lr){%d-%d}" % (start, start + n - 1))
        start += n
    head2 = ["Model"] + [_tex_escape(KEY_NAMES.get(c.key, c.key)) + (r" ($\uparrow$)" if c.higher else r" ($\downarrow$)")
                         for c in table.columns]  # fmt: skip
    caption = (f"{_tex_escape(table.spec.title)}. Mean $\\pm$ half-width of the 95\\% percentile bootstrap CI over "
               "the task's items; bold: best measured system (oracles are bounds); \\dag: differs from the column's "
               f"reference at $\\alpha={ALPHA}$ (paired sign-flip permutation test, Holm-corrected)")  # fmt: skip
    if published and table.published:
        caption += (f"; italic: published in {_tex_escape(PAPER)}, Table {table.spec.number}; "
                    "$\\Delta$: measured minus published")  # fmt: skip
    out = [
        f"% {_title(table.spec)}: written by `hsm-bench report`; needs \\usepackage{{booktabs,graphicx}}",
        *(f"% {x}" for x in _legend(table, published, ref_mark="superscript r")),
        r"\begin{table*}[t]",
        r"\centering",
        r"\caption{" + caption + ".}",
        r"\label{tab:hsm-bench-" + table.spec.name.replace("_", "-") + "}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(head1) + r" \\",
        "".join(rules),
        " & ".join(head2) + r" \\",
    ]
    for row in rows:
        if row.kind == "section":
            out += [r"\midrule", r"\multicolumn{%d}{l}{\textit{%s}} \\" % (ncol, row.label)]
            continue
        label = _tex_escape(row.label)
        if row.kind == "published":
            label = (r"\quad " if row.system else "") + r"\textit{" + label + "}"
        elif row.kind == "delta":
            label = r"\quad " + label
        out.append(" & ".join([label] + [_tex_cell(_cell(table, row, c), c.key) for c in table.columns]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}}", r"\end{table*}"]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


CSV_FIELDS = ["table", "testset", "testset_paper", "key", "higher_is_better", "task", "row", "source", "system",
              "model", "mean", "ci_lo", "ci_hi", "n", "n_failed", "n_nonfinite", "nonfinite", "best", "reference",
              "p_holm", "significant", "published", "diff"]  # fmt: skip


def write_long_csv(table: Table, path: Path, published: bool) -> None:
    fields = [f for f in CSV_FIELDS if published or f not in ("published", "diff")]
    lines = []
    for c in table.columns:
        common = {"table": table.spec.name, "testset": c.testset, "testset_paper": PAPER_TESTSETS.get(c.testset, ""),
                  "key": c.key, "higher_is_better": c.higher}  # fmt: skip
        for task in [*table.tasks, "all"]:
            for s in table.systems:
                cell = table.cells.get((s, task, c.testset, c.key))
                if cell is None:
                    continue
                model = table.model(s)
                ref = table.reference.get((task, c.testset, c.key))
                test = table.test_of(s, task, c.testset, c.key)
                row = {**common, "task": task, "row": s, "source": "measured", "system": s, "model": model or "",
                       **{k: cell[k] for k in ("mean", "ci_lo", "ci_hi", "n", "n_failed", "n_nonfinite", "nonfinite")},
                       "best": s in table.best.get((task, c.testset, c.key), set()) if task != "all" else "",
                       "reference": (ref == s) if task != "all" else "",
                       "p_holm": test["p_holm"] if test else "", "significant": test["significant"] if test else ""}  # fmt: skip
                pv = table.published.get((model, task, c.testset, c.key)) if model else None
                if pv is not None and cell["n"] > 0:
                    row.update(published=pv, diff=cell["mean"] - pv)
                lines.append(row)
            for (m, t, ts, k), v in table.published.items():
                if (t, ts, k) == (task, c.testset, c.key):
                    lines.append({**common, "task": task, "row": f"{m} (paper)", "source": "published", "model": m,
                                  "mean": v})  # fmt: skip
    _write_csv(path, fields, lines)


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k, "")) for k in fields})


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


SIGNIFICANCE_FIELDS = ["table", "testset", "key", "task", "reference", "system", "n", "n_dropped", "mean_diff", "ci_lo",
                       "ci_hi", "p", "p_holm", "significant"]  # fmt: skip


def write_tables(col: Collection, out: Path, published: bool = True, reference: str | None = None) -> Written:
    """Tables II-IV and the other metrics' table (Markdown, LaTeX, long CSV) and significance.csv into ``out``."""
    out = Path(out)
    if reference is not None and reference not in col.systems():
        raise ConfigError(f"--reference {reference}: no such system in these runs (choose from "
                          f"{', '.join(col.systems())})")  # fmt: skip
    if col.items.empty:
        raise ReportError("these runs hold no scored items: run `hsm-bench run` (or `hsm-bench aggregate`) first")
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    cells = measured_cells(col)
    paper_keys = {k for s in SPECS for k in s.keys}
    other = Spec("other_metrics", "", "Other metrics (not in the paper's tables)",
                 tuple(k for k in col.keys() if k not in paper_keys), None, None, False)  # fmt: skip
    tests: list[dict] = []
    scored = set(col.items["key"])
    for spec in SPECS + (other,):
        for music in ((False, True) if spec is other else (spec.music,)):
            s = Spec(spec.name + ("_music" if music and spec is other else ""), spec.number,
                     spec.title + (" (music test set)" if music and spec is other else ""), spec.keys,
                     spec.published_csv, spec.page, music)  # fmt: skip
            table = build_table(col, s, s.keys, cells, published, reference) if s.keys else None
            if table is None:
                if spec is not other:
                    where = "the music test set (hsm-bench run --testset music)" if s.music else "a general-audio test set"
                    written.notes.append(f"Table {s.number} left out: no {', '.join(KEY_NAMES[k] for k in s.keys)} "
                                         f"results on {where} in these runs")  # fmt: skip
                continue
            for k in s.keys:
                if k not in scored:
                    shown = " (published numbers only)" if published and any(p[3] == k for p in table.published) else ""
                    written.notes.append(f"Table {s.number}: {KEY_NAMES[k]} not scored in these runs{shown}; "
                                         f"`hsm-bench run --metrics {METRIC_OF[k]}` adds it")  # fmt: skip
            rows = _rows(table)
            write_markdown(table, rows, out / f"{s.name}.md", published)
            write_latex(table, rows, out / f"{s.name}.tex", published)
            write_long_csv(table, out / f"{s.name}.csv", published)
            written.files += [out / f"{s.name}.{ext}" for ext in ("md", "tex", "csv")]
            written.notes += table.notes
            tests += table.tests
    sig = out / "significance.csv"
    _write_csv(sig, SIGNIFICANCE_FIELDS, tests)
    written.files.append(sig)
    for number, what, why in LEFT_OUT:
        written.notes.append(f"Table {number} left out: no {what} results in these runs ({why})")
    return written


__all__ = ["write_tables", "measured_cells", "build_table", "load_published", "SPECS", "PAPER_MODELS",
           "PAPER_TESTSETS"]  # fmt: skip
