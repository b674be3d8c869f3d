"""Every metric broken down by input SNR, task, sound class and query kind.

:func:`write_breakdowns` writes, per test set and output key, under ``<out>/<test set>/``:

* ``<key>.csv``: long table, one row per (grouping, group, system): ``n`` items with a
  finite value, ``n_missing`` (failed or non-finite, left out of the mean), the mean and
  its 95% bootstrap CI;
* ``<key>.md``: the same as Markdown, one section per grouping, systems as columns;
* ``<key>.png`` / ``<key>.pdf``: one figure, a panel per grouping, mean and CI per system.

plus ``<out>/breakdowns.csv``, all of them in one long table.

Groupings: ``all`` (every item: the row equals corpus.json), ``snr`` (fixed 5-dB bins
``[a, a + 5)`` whose edges are multiples of 5 dB, covering the test set's range),
``task``, ``target_class`` (top AudioSet ontology level of the target's first label,
"other" when none maps) and ``query_style`` (caption or label).

The CI is corpus.json's: 95% percentile bootstrap of the mean, 1000 resamples, seed 0,
items in id order (:func:`hsm_bench.pipeline.aggregate.bootstrap_ci`); each cell draws
from a fresh generator, so a cell does not depend on which other cells exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from reports.collect import Collection, Written

SNR_BIN_DB = 5.0
GROUPINGS: dict[str, str] = {
    "all": "all items",
    "snr": "input SNR (dB)",
    "task": "task",
    "target_class": "sound class (top AudioSet level)",
    "query_style": "query kind",
}
COLUMNS = ["testset", "key", "higher_is_better", "by", "group", "system", "n", "n_missing", "mean", "ci_low", "ci_high"]


def snr_bins(snr: Any, width: float = SNR_BIN_DB) -> tuple[list[str], list[str]]:
    """Per-item bin labels and the ordered bin labels: fixed ``width``-dB bins ``[a, a + w)``,
    ``a`` a multiple of ``w``, from the bin holding the lowest SNR to the one holding the highest."""
    x = np.asarray(snr, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return ["unknown"] * len(x), ["unknown"]
    lo = math.floor(x[ok].min() / width) * width
    idx = np.where(ok, np.floor((np.where(ok, x, lo) - lo) / width), -1).astype(int)

    def label(k: int) -> str:
        a = lo + k * width
        return f"[{a:g}, {a + width:g})" if k >= 0 else "unknown"

    order = [label(k) for k in range(int(idx.max()) + 1)] + (["unknown"] if not ok.all() else [])
    return [label(k) for k in idx], order


def _groups(manifest: Any) -> dict[str, tuple[Any, list[str]]]:
    """grouping -> (per-item group label Series, ordered labels)."""
    import pandas as pd

    out: dict[str, tuple[Any, list[str]]] = {}
    ids = manifest.index
    out["all"] = (manifest["task"].map(lambda _: "all"), ["all"])
    per_item, order = snr_bins(manifest["snr_db"])
    out["snr"] = (pd.Series(per_item, index=ids), order)
    for col in ("task", "target_class", "query_style"):
        values = manifest[col].fillna("unknown").astype(str)
        order = sorted(set(values))
        if col == "task":  # the paper's order
            order = [t for t in ("extract", "remove") if t in order] + [t for t in order if t not in ("extract", "remove")]
        elif "other" in order:
            order = [g for g in order if g != "other"] + ["other"]
        out[col] = (values, order)
    return out


def breakdown_table(col: Collection, testset: str, key: str) -> Any:
    """The long table of one test set and key (the rows of ``<key>.csv``)."""
    import pandas as pd

    from hsm_bench.pipeline.aggregate import bootstrap_ci

    values = col.values(testset, key)
    manifest = col.manifest(testset)
    values = values.reindex(manifest.index.sort_values())
    hib = col.higher_is_better(key)
    rows = []
    for by, (labels, order) in _groups(manifest).items():
        labels = labels.reindex(values.index)
        for group in order:
            ids = labels.index[labels == group]
            for system in values.columns:
                v = values.loc[ids, system].to_numpy(dtype=np.float64)
                finite = v[np.isfinite(v)]
                lo, hi = bootstrap_ci(finite)
                rows.append({"testset": testset, "key": key, "higher_is_better": hib, "by": by, "group": group,
                             "system": system, "n": len(finite), "n_missing": len(v) - len(finite),
                             "mean": float(finite.mean()) if len(finite) else math.nan,
                             "ci_low": lo, "ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def _markdown(table: Any, testset: str, key: str, snr_order: list[str], snr_range: tuple[float, float]) -> str:
    hib = bool(table["higher_is_better"].iloc[0])
    systems = list(dict.fromkeys(table["system"]))
    bins = [g for g in snr_order if g != "unknown"]
    snr_text = (f"{bins[0]} to {bins[-1]}, covering the test set's input SNRs ({snr_range[0]:.2f} to "
                f"{snr_range[1]:.2f} dB)" if bins else "none: the manifest records no SNR")  # fmt: skip
    if bins and "unknown" in snr_order:
        snr_text += "; items without an SNR are in 'unknown'"
    lines = [f"# {key} on {testset} by input SNR, task, sound class and query kind",
             "",
             f"{'Higher' if hib else 'Lower'} is better. Each cell: mean over the items with a finite value "
             "[95% percentile bootstrap CI: 1000 resamples, seed 0, items in id order, as corpus.json]; items "
             "whose value is missing (failed or non-finite) are left out and counted. SNR bins: fixed "
             f"{SNR_BIN_DB:g}-dB bins [a, a + {SNR_BIN_DB:g}) with a a multiple of {SNR_BIN_DB:g} dB, {snr_text}.",
             ""]  # fmt: skip
    for by, title in GROUPINGS.items():
        sel = table[table["by"] == by]
        lines += [f"## {title[0].upper()}{title[1:]}", "",
                  "| group | items | " + " | ".join(systems) + " |",
                  "|---|---:|" + "---:|" * len(systems)]  # fmt: skip
        for group in dict.fromkeys(sel["group"]):
            g = sel[sel["group"] == group].set_index("system")
            cells = []
            for s in systems:
                r = g.loc[s]
                cell = f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["n"] else "–"
                if r["n_missing"]:
                    cell += f" ({int(r['n_missing'])} missing)"
                cells.append(cell)
            n_items = int(g["n"].iloc[0] + g["n_missing"].iloc[0])
            lines.append(f"| {group} | {n_items} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _figure(table: Any, key: str, palette: dict[str, tuple[str, str]], base: Path) -> list[Path]:
    import textwrap

    from reports.plots import COLUMN_IN, fit_xticklabels, new_figure, save_figure, style

    hib = bool(table["higher_is_better"].iloc[0])
    systems = list(dict.fromkeys(table["system"]))
    # a layout fixed in inches around measured tick labels: constrained layout measured every
    # artist again and cost as much as drawing the figure
    legend_h, title_h, axes_h, gap, left, right = 0.24, 0.17, 0.9, 0.06, 0.5, 0.08  # inches
    legend_h += 0.12 * (math.ceil(len(systems) / 3) - 1)
    width = min(0.7 / max(len(systems), 1), 0.18)
    with style():
        fig = new_figure(COLUMN_IN, 6.0, layout=None)
        panels = []
        for by in [b for b in GROUPINGS if b != "all"]:
            sel = table[table["by"] == by]
            groups = list(dict.fromkeys(sel["group"]))
            n_items = [int(sel[sel["group"] == gr][["n", "n_missing"]].sum(axis=1).iloc[0]) for gr in groups]
            ax = fig.add_axes((0, 0, 1, 1))
            x = np.arange(len(groups))
            for j, s in enumerate(systems):
                g = sel[sel["system"] == s].set_index("group").reindex(groups)
                ok = g["n"].to_numpy() > 0
                m, lo, hi = (g[c].to_numpy(dtype=np.float64) for c in ("mean", "ci_low", "ci_high"))
                colour, marker = palette[s]
                ax.errorbar((x + (j - (len(systems) - 1) / 2) * width)[ok], m[ok],
                            yerr=np.vstack([m - lo, hi - m])[:, ok], fmt=marker, color=colour, ms=3,
                            elinewidth=0.8, capsize=1.5, label=s)  # fmt: skip
            band = fit_xticklabels(
                fig, ax, x, [f"{textwrap.fill(gr, 10)}\nn={n}" for gr, n in zip(groups, n_items)],
                [f"{gr if len(gr) <= 24 else gr[:23] + '…'} (n={n})" for gr, n in zip(groups, n_items)],
                (COLUMN_IN - left - right) / len(groups))  # fmt: skip
            ax.set_xlim(-0.5, len(groups) - 0.5)
            ax.set_title(GROUPINGS[by], loc="left", pad=2)
            ax.set_ylabel(f"{key} {'↑' if hib else '↓'}", labelpad=2)
            ax.grid(axis="y", lw=0.3, alpha=0.5)
            panels.append((ax, band))
        height = legend_h + sum(title_h + axes_h + band + gap for _, band in panels)
        fig.set_size_inches(COLUMN_IN, height)
        y = height - legend_h
        for ax, band in panels:
            y -= title_h + axes_h
            ax.set_position((left / COLUMN_IN, y / height, 1 - (left + right) / COLUMN_IN, axes_h / height))
            y -= band + gap
        axes = [ax for ax, _ in panels]
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:  # no system has a finite value anywhere: still say who was plotted
            handles = [axes[0].errorbar([], [], fmt=palette[s][1], color=palette[s][0])[0] for s in systems]
            labels = systems
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(systems), 3),
                   frameon=False, borderaxespad=0.1)  # fmt: skip
        return save_figure(fig, base)


def write_breakdowns(col: Collection, out: Path) -> Written:
    import pandas as pd

    from reports.plots import safe_name, system_palette

    out = Path(out)
    written = Written()
    palette = system_palette(col)
    tables = []
    for testset in col.testsets:
        present = col.items[(col.items["testset"] == testset)]
        keys = [k for k in col.keys() if k in set(present["key"])]
        if not keys:
            continue
        folder = out / safe_name(testset)
        folder.mkdir(parents=True, exist_ok=True)
        snr = col.manifest(testset)["snr_db"]
        _, snr_order = snr_bins(snr)
        snr_range = (float(snr.min()), float(snr.max()))
        for key in keys:
            table = breakdown_table(col, testset, key)
            tables.append(table)
            base = folder / safe_name(key)
            table.to_csv(base.with_name(base.name + ".csv"), index=False)
            base.with_name(base.name + ".md").write_text(_markdown(table, testset, key, snr_order, snr_range))
            written.files += [base.with_name(base.name + ".csv"), base.with_name(base.name + ".md")]
            written.files += _figure(table, key, palette, base)
            empty = table[(table["by"] == "all") & (table["n"] == 0)]["system"].tolist()
            if empty:
                written.notes.append(f"{testset}/{key}: no finite value for {', '.join(empty)} "
                                     "(every item failed or is non-finite): left out of its plot")  # fmt: skip
    if tables:
        allp = out / "breakdowns.csv"
        pd.concat(tables, ignore_index=True).to_csv(allp, index=False)
        written.files.append(allp)
    else:
        written.notes.append("breakdowns left out: no scored values in these runs (run `hsm-bench run` with metrics)")
    return written


__all__ = ["write_breakdowns", "breakdown_table", "snr_bins", "SNR_BIN_DB", "GROUPINGS"]
