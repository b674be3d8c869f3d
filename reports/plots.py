"""The report's figures, one paper column wide, PNG and PDF, colour-blind-safe.

:func:`write_figures` writes under ``<out>/`` (every figure's caption is in
``captions.md``; what could not be drawn is a note saying why):

    distributions/<test set>/<key>.{png,pdf}     per-item values per system (box plots)
    spectrograms/<test set>/<system>-<rank>.{png,pdf}
                                                 best, median and worst item of each system
                                                 by its primary metric: mixture, reference
                                                 and every system's output (the paper's Fig. 7)
    tsne/<test set>/<system>.{png,pdf}           t-SNE of embedder features of outputs and
                                                 references (one joint map per test set),
                                                 + coords.csv and tsne.json (seed, perplexity)
    tsne_global/<test set>/<system>.{png,pdf}    t-SNE of a system's own global features,
                                                 predicted vs ground truth (Fig. 5)
    attention/<test set>/<system>.{png,pdf}      the local stage's attention maps (Fig. 6)

Files a system writes into its run folder for Figs. 5 and 6 (HSM-TSS; no other system does):

* ``features/global/<id>.npz`` with arrays ``predicted`` (the global features the model
  predicted from mixture and query) and ``reference`` (those of the target), each ``[D]``
  or ``[T, D]`` (averaged over T);
* ``features/attention/<id>.npy``: ``[query positions, frames]`` or
  ``[heads, query positions, frames]`` (averaged over heads).

Style: Okabe & Ito's palette with a marker per system (told apart in grey too),
perceptually uniform colour maps, 7-pt text at 3.5 in, TrueType fonts in PDFs. Output bytes
do not depend on the date or the matplotlib build (no Software/Creator/Producer/date
metadata), so the same runs give the same files.
"""

from __future__ import annotations

import json
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hsm_bench.audio.io import AudioReadError
from reports.collect import Collection, ReportError, Written

COLUMN_IN = 3.5
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RC = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
    "legend.fontsize": 6, "figure.titlesize": 7, "axes.linewidth": 0.6, "lines.linewidth": 1.0,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
    "pdf.fonttype": 42, "ps.fonttype": 42, "image.cmap": "magma", "savefig.dpi": 200,
}  # fmt: skip
PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}

# the metric that ranks items for the spectrogram panels: the first one a system has values for
PRIMARY_KEYS = ("sdri", "si_sdri", "sdr", "si_sdr", "lsd_aligned", "lsd", "psnr", "clap_a", "afsim", "kl", "clap")
GLOBAL_FEATURES = Path("features") / "global"
ATTENTION_MAPS = Path("features") / "attention"
TSNE_PERPLEXITY = 30.0
STFT_N_FFT, STFT_HOP, DB_RANGE = 512, 256, 80.0
SPEC_COLUMNS = 480  # time columns drawn per panel: ~140 per inch at one column, finer than print needs
RANKS = ("best", "median", "worst")


# -- style --------------------------------------------------------------------------------
@contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    """A Figure on an Agg canvas, outside pyplot: no global figure registry, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, base: Path) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = base.with_name(base.name + ".png"), base.with_name(base.name + ".pdf")
    # zlib level 1: spectrogram PNGs encode 4x faster for 5 % more bytes
    fig.savefig(png, format="png", metadata=PNG_METADATA, pil_kwargs={"compress_level": 1})
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    return [png, pdf]


def fit_xticklabels(fig: Any, ax: Any, ticks: Any, labels: list[str], upright: list[str], slot: float) -> float:
    """Sets ``labels`` at ``ticks``, or ``upright`` turned 90 degrees when a label is wider than
    its ``slot`` (inches); returns the height in inches the labels and ticks take below the axes.
    Measured, not guessed: text widths depend on the font."""
    renderer = fig.canvas.get_renderer()
    ax.set_xticks(ticks, labels)
    if max(t.get_window_extent(renderer).width for t in ax.get_xticklabels()) / fig.dpi > 0.95 * slot:
        ax.set_xticks(ticks, upright, rotation=90)
    tall = max(t.get_window_extent(renderer).height for t in ax.get_xticklabels()) / fig.dpi
    # + tick length and pad (6 pt), and 10 % for glyph hinting at the saved resolution
    return 1.1 * tall + 0.12


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name).strip("_") or "_"


def system_palette(col: Collection) -> dict[str, tuple[str, str]]:
    """label -> (colour, marker), fixed by the sorted labels so every figure agrees."""
    out = {}
    for i, s in enumerate(col.systems()):
        out[s] = (OKABE_ITO[i % len(OKABE_ITO)], MARKERS[(i + i // len(OKABE_ITO)) % len(MARKERS)])
    return out


def class_palette(classes: list[str]) -> dict[str, str]:
    """The seven AudioSet top levels fit Okabe & Ito's first seven colours; "other" is grey."""
    named = [c for c in classes if c != "other"]
    out = {c: OKABE_ITO[i % (len(OKABE_ITO) - 1)] for i, c in enumerate(named)}
    if "other" in classes:
        out["other"] = "#999999"
    return out


# -- item selection -----------------------------------------------------------------------
def primary_key(col: Collection, testset: str, system: str) -> str | None:
    keys = col.keys()
    for key in [k for k in PRIMARY_KEYS if k in keys] + [k for k in keys if k not in PRIMARY_KEYS]:
        v = col.values(testset, key)
        if system in v.columns and np.isfinite(v[system].to_numpy(dtype=np.float64)).any():
            return key
    return None


def ranked_items(col: Collection, testset: str, system: str, key: str) -> list[tuple[str, str, float]]:
    """[(rank, id, value)] for the best, median (lower median) and worst finite value of ``key``;
    ties are broken by item id."""
    v = col.values(testset, key)[system].astype(float)
    v = v[np.isfinite(v.to_numpy())]
    better_first = v.sort_index().sort_values(ascending=not col.higher_is_better(key), kind="stable")
    ids = list(better_first.index)
    picks = {"best": ids[0], "median": ids[(len(ids) - 1) // 2], "worst": ids[-1]}
    return [(r, picks[r], float(v[picks[r]])) for r in RANKS]


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else (f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}")


# -- audio --------------------------------------------------------------------------------
def log_spectrogram(x: np.ndarray, n_fft: int = STFT_N_FFT, hop: int = STFT_HOP) -> np.ndarray:
    """``[freq, frames]`` magnitude in dB (re 1.0 = full scale), periodic Hann, centred frames."""
    x = np.asarray(x, dtype=np.float64)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    mag = np.abs(np.fft.rfft(frames * window, axis=-1)) / (window.sum() / 2)
    return (20 * np.log10(np.maximum(mag, 1e-10))).T


def pool_time(spec: np.ndarray, columns: int = SPEC_COLUMNS) -> np.ndarray:
    """At most ``columns`` frames: the max over groups of frames, so short onsets stay visible."""
    k = math.ceil(spec.shape[1] / columns)
    if k <= 1:
        return spec
    n = math.ceil(spec.shape[1] / k) * k
    padded = np.pad(spec, ((0, 0), (0, n - spec.shape[1])), mode="edge")
    return padded.reshape(spec.shape[0], n // k, k).max(axis=2)


class _Audio:
    """Reads each file once per report (mixtures and references serve every system)."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[np.ndarray, int]] = {}

    def __call__(self, path: str | Path) -> tuple[np.ndarray, int]:
        from hsm_bench.audio.io import read_audio

        key = str(path)
        if key not in self._memo:
            self._memo[key] = read_audio(path)
        return self._memo[key]


# -- per-item distributions -----------------------------------------------------------------
def _distributions(col: Collection, out: Path, palette: dict, captions: dict, written: Written) -> None:
    for testset in col.testsets:
        for key in col.keys():
            values = col.values(testset, key)
            if values.empty:
                continue
            systems = list(values.columns)
            hib = col.higher_is_better(key)
            data, excluded = [], []
            for s in systems:
                v = values[s].to_numpy(dtype=np.float64)
                data.append(v[np.isfinite(v)])
                excluded.append(int((~np.isfinite(v)).sum()))
            labels = [f"{s}\nn={len(d)}" + (f", {e} excl." if e else "") for s, d, e in zip(systems, data, excluded)]
            with style():
                fig = new_figure(COLUMN_IN, 2.2, layout=None)
                ax = fig.subplots()
                pos = np.arange(1, len(systems) + 1)
                for p, s, d in zip(pos, systems, data):
                    colour, marker = palette[s]
                    if len(d) == 0:
                        ax.text(p, 0.5, "no finite\nvalues", transform=ax.get_xaxis_transform(), ha="center",
                                va="center", fontsize=6, color="0.3")  # fmt: skip
                        continue
                    box = ax.boxplot([d], positions=[p], widths=0.55, patch_artist=True, whis=1.5,
                                     medianprops={"color": "black", "lw": 1.0},
                                     flierprops={"marker": marker, "ms": 2, "mfc": colour, "mec": "none", "alpha": 0.6},
                                     boxprops={"lw": 0.6}, whiskerprops={"lw": 0.6}, capprops={"lw": 0.6})  # fmt: skip
                    box["boxes"][0].set_facecolor(colour)
                    box["boxes"][0].set_alpha(0.55)
                    ax.plot([p], [d.mean()], marker="D", ms=3, color="white", mec="black", mew=0.6, ls="none")
                band = fit_xticklabels(fig, ax, pos, labels, [lab.replace("\n", " (") + ")" for lab in labels],
                                       (COLUMN_IN - 0.55) / len(systems))  # fmt: skip
                height = 1.85 + band
                fig.set_size_inches(COLUMN_IN, height)
                fig.subplots_adjust(left=0.45 / COLUMN_IN, right=1 - 0.1 / COLUMN_IN, top=1 - 0.07 / height,
                                    bottom=band / height)  # fmt: skip
                ax.set_xlim(0.4, len(systems) + 0.6)
                ax.set_ylabel(f"{key} ({'higher' if hib else 'lower'} is better)")
                ax.grid(axis="y", lw=0.3, alpha=0.5)
                base = out / "distributions" / safe_name(testset) / safe_name(key)
                files = save_figure(fig, base)
            written.files += files
            sel = col.items[(col.items["testset"] == testset) & (col.items["key"] == key)]
            status = sel.groupby(["system", "status"]).size()

            def why(s: str) -> str:
                parts = [f"{int(status.get((s, st), 0))} {st}" for st in ("failed", "nonfinite") if status.get((s, st), 0)]
                return ", ".join(parts).replace("nonfinite", "non-finite")

            counts = "; ".join(f"{s}: {e} of {len(values)} ({why(s)})" for s, e in zip(systems, excluded) if e) or "none"
            captions[_rel(files[0], out)] = (
                f"Per-item {key} on {testset} ({len(values)} items) per system: box = quartiles, line = median, "
                f"diamond = mean, whiskers to the last value within 1.5 IQR, dots beyond. Items without a finite "
                f"value (failed or non-finite) are excluded and counted: {counts}."
            )  # fmt: skip


# -- spectrogram panels ---------------------------------------------------------------------
def _spectrograms(col: Collection, out: Path, captions: dict, written: Written, audio: _Audio) -> None:
    for testset in col.testsets:
        manifest = col.manifest(testset)
        systems = col.systems(testset)
        for system in systems:
            key = primary_key(col, testset, system)
            if key is None:
                written.notes.append(f"spectrogram panels of {system} on {testset} left out: no item has a finite "
                                     "value of any metric (score the run first)")  # fmt: skip
                continue
            picks = ranked_items(col, testset, system, key)
            vals = col.values(testset, key)
            tie = picks[0][2] == picks[-1][2]
            for rank, item_id, value in picks:
                row = manifest.loc[item_id]
                panels: list[tuple[str, np.ndarray | None, int | None]] = []
                sources = [("mixture", Path(row["mixture"])), ("reference", Path(row["reference"]))]
                for s in systems:
                    v = float(vals.at[item_id, s]) if s in vals.columns else math.nan
                    sources.append((f"{s}: {key} {_fmt(v)}", col.run(s, testset).output(item_id)))
                for name, path in sources:
                    if not path.is_file():
                        panels.append((f"{name.split(':')[0]}: no output (separation failed)", None, None))
                        continue
                    try:
                        x, sr = audio(path)
                    except AudioReadError as exc:  # a damaged file: say so in its panel and the notes
                        written.notes.append(f"spectrogram panel left empty: {exc}")
                        panels.append((f"{name.split(':')[0]}: unreadable file", None, None))
                        continue
                    panels.append((name, x, sr))
                specs = [(n, log_spectrogram(x) if x is not None else None, sr) for n, x, sr in panels]
                if all(sp is None for _, sp, _ in specs):
                    continue
                vmax = max(float(sp.max()) for _, sp, _ in specs if sp is not None)
                vmin = vmax - DB_RANGE
                with style():
                    # a fixed grid: constrained layout would measure every panel's ticks for nothing
                    height = 0.62 * len(specs) + 0.55
                    fig = new_figure(COLUMN_IN, height, layout=None)
                    top, bottom = 1 - 0.25 / height, 0.32 / height
                    axes = fig.subplots(len(specs), 1, sharex=True, gridspec_kw={
                        "left": 0.1, "right": 0.83, "top": top, "bottom": bottom, "hspace": 0.08})  # fmt: skip
                    im = None
                    for ax, (name, spec, sr) in zip(axes, specs):
                        if spec is None:
                            ax.text(0.5, 0.5, name, transform=ax.transAxes, ha="center", va="center")
                            ax.set_yticks([])
                            continue
                        ax.set_ylabel("kHz", labelpad=1)
                        t_end = spec.shape[1] * STFT_HOP / sr
                        im = ax.imshow(pool_time(spec), origin="lower", aspect="auto", vmin=vmin, vmax=vmax,
                                       extent=(0, t_end, 0, sr / 2000), interpolation="nearest")  # fmt: skip
                        ax.text(0.01, 0.93, name, transform=ax.transAxes, ha="left", va="top", fontsize=6,
                                color="white", bbox={"boxstyle": "square,pad=0.15", "fc": "black", "ec": "none", "alpha": 0.6})  # fmt: skip
                    axes[-1].set_xlabel("time (s)", labelpad=1)
                    if im is not None:
                        cax = fig.add_axes((0.845, bottom, 0.022, top - bottom))
                        fig.colorbar(im, cax=cax, label="dB")
                    fig.suptitle(f"{testset}: {rank} item of {system} by {key} ({item_id})", y=1 - 0.05 / height, va="top")
                    base = out / "spectrograms" / safe_name(testset) / f"{safe_name(system)}-{rank}"
                    files = save_figure(fig, base)
                written.files += files
                hib = col.higher_is_better(key)
                captions[_rel(files[0], out)] = (
                    f"The {rank} item of {system} on {testset} by {key} ({'higher' if hib else 'lower'} is better; "
                    f"{system}'s {key} = {_fmt(value)}{'; every item of this system ties, so the pick is by item id' if tie else ''}): "
                    f"{item_id}, {row['task']}, input SNR {row['snr_db']:.1f} dB, class {row['target_class']}, "
                    f"instruction \"{row['instruction']}\". Log-magnitude spectrograms (periodic Hann STFT, "
                    f"{STFT_N_FFT} points, hop {STFT_HOP}; dB re full scale, one colour scale per figure: "
                    f"{vmin:.0f} to {vmax:.0f} dB) of the mixture, the reference and each system's output."
                )  # fmt: skip


def _feature_files(col: Collection, sub: str, pattern: str):
    """(run, its files) for every run folder holding HSM-TSS feature files under ``sub``."""
    for r in col.runs:
        folder = r.path / sub
        files = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if files:
            yield r, files


# -- attention maps -------------------------------------------------------------------------
def _attention(col: Collection, out: Path, captions: dict, written: Written) -> None:
    found = False
    for r, files in _feature_files(col, ATTENTION_MAPS, "*.npy"):
        found = True
        folder = r.path / ATTENTION_MAPS
        have = {f.stem for f in files}
        key = primary_key(col, r.testset, r.label)
        picks = [(rank, i) for rank, i, _ in ranked_items(col, r.testset, r.label, key)] if key else []
        picks = [(rank, i) for rank, i in picks if i in have] or [("item", f.stem) for f in files[:3]]
        maps = []
        for rank, item_id in picks:
            a = np.load(folder / f"{item_id}.npy")
            if a.ndim == 3:  # [heads, query, frames]: the heads' mean, as the paper shows one map
                a = a.mean(axis=0)
            if a.ndim != 2:
                written.notes.append(f"attention map {folder / item_id}.npy has shape {a.shape}: expected "
                                     "[query, frames] or [heads, query, frames]; left out")  # fmt: skip
                continue
            maps.append((rank, item_id, a))
        if not maps:
            continue
        with style():
            fig = new_figure(COLUMN_IN, 1.1 * len(maps) + 0.3)
            axes = np.atleast_1d(fig.subplots(len(maps), 1))
            for ax, (rank, item_id, a) in zip(axes, maps):
                im = ax.imshow(a, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
                ax.set_title(f"{rank}: {item_id}", loc="left")
                ax.set_ylabel("query position")
                fig.colorbar(im, ax=ax, pad=0.01, aspect=15)
            axes[-1].set_xlabel("frame")
            base = out / "attention" / safe_name(r.testset) / safe_name(r.label)
            saved = save_figure(fig, base)
        written.files += saved
        captions[_rel(saved[0], out)] = (
            f"Attention of {r.label}'s local stage on {r.testset} (heads averaged), "
            + (f"for its {', '.join(f'{rank} ({i})' for rank, i, _ in maps)} item by {key}"
               if maps[0][0] in RANKS else f"for the first items with a map ({', '.join(i for _, i, _ in maps)})")
            + f"; read from {ATTENTION_MAPS}/<id>.npy in its run folder."
        )  # fmt: skip
    if not found:
        written.notes.append(f"attention maps (Fig. 6) left out: no HSM-TSS attention maps in these runs (a run "
                             f"folder would hold {ATTENTION_MAPS}/<id>.npy, [query, frames] or [heads, query, frames])")  # fmt: skip


# -- t-SNE ----------------------------------------------------------------------------------
def tsne_coords(features: np.ndarray, seed: int = 0, perplexity: float = TSNE_PERPLEXITY) -> tuple[np.ndarray, float]:
    """2-D t-SNE of L2-normalised ``features`` (Euclidean on the sphere: cosine order),
    Barnes-Hut, random initial map drawn from ``seed`` (with PCA init the seed would change
    nothing, and a caption naming it would mislead); perplexity capped at (n - 1) / 3
    (sklearn's neighbour count 3p + 1 must fit). Returns the coordinates and the perplexity."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    p = float(min(perplexity, (len(x) - 1) / 3))
    # one thread: Barnes-Hut sums its gradient in parallel, so the thread count could move the
    # last bits and the map would depend on the machine
    with threadpool_limits(1):
        y = TSNE(2, perplexity=p, init="random", learning_rate="auto", random_state=seed).fit_transform(x)
    return y, p


def _tsne_figures(points: Any, out_dir: Path, out: Path, title: str, caption: str, captions: dict, written: Written,
                  names: tuple[str, str]) -> None:  # fmt: skip
    """points: DataFrame system, id, role (output | reference), target_class, x, y; a figure per
    system: the references of every item and that system's outputs, on the same axes for every
    system; ``names`` label the two roles in the legend."""
    from matplotlib.lines import Line2D

    classes = sorted(set(points["target_class"]), key=lambda c: (c == "other", c))
    colours = class_palette(classes)
    refs = points[points["role"] == "reference"]
    pad = 0.04 * max(np.ptp(points["x"]), np.ptp(points["y"]), 1e-9)
    xlim = (points["x"].min() - pad, points["x"].max() + pad)
    ylim = (points["y"].min() - pad, points["y"].max() + pad)
    for system in [s for s in dict.fromkeys(points["system"]) if s]:
        outs = points[(points["role"] == "output") & (points["system"] == system)]
        shown_refs = refs[refs["system"].isin(["", system])]
        with style():
            fig = new_figure(COLUMN_IN, 3.9)
            ax = fig.subplots()
            for c in classes:
                r = shown_refs[shown_refs["target_class"] == c]
                o = outs[outs["target_class"] == c]
                ax.scatter(r["x"], r["y"], s=10, marker="o", facecolors="none", edgecolors=colours[c], linewidths=0.6)
                ax.scatter(o["x"], o["y"], s=10, marker="x", color=colours[c], linewidths=0.7)
            handles = [Line2D([], [], ls="none", marker="s", color=colours[c], ms=4, label=c) for c in classes]
            handles += [Line2D([], [], ls="none", marker="o", mfc="none", mec="0.2", ms=4, label=names[0]),
                        Line2D([], [], ls="none", marker="x", color="0.2", ms=4, label=f"{system} {names[1]}")]  # fmt: skip
            fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, handletextpad=0.2,
                       columnspacing=0.8)  # fmt: skip
            ax.set(xlim=xlim, ylim=ylim, xticks=[], yticks=[])
            ax.set_box_aspect(1)
            ax.set_title(title, loc="left")
            saved = save_figure(fig, out_dir / safe_name(system))
        written.files += saved
        captions[_rel(saved[0], out)] = caption.format(system=system, n=len(outs))


def _global_tsne(col: Collection, out: Path, seed: int, captions: dict, written: Written) -> None:
    import pandas as pd

    found = False
    for r, files in _feature_files(col, GLOBAL_FEATURES, "*.npz"):
        found = True
        manifest = col.manifest(r.testset)
        rows, feats = [], []
        for f in files:
            if f.stem not in manifest.index:
                continue
            with np.load(f) as z:
                if "predicted" not in z.files or "reference" not in z.files:
                    written.notes.append(f"global features of {r.label} left out: {f} holds {', '.join(z.files)}, "
                                         "expected arrays 'predicted' and 'reference'")  # fmt: skip
                    rows, feats = [], []
                    break
                for role, name in (("output", "predicted"), ("reference", "reference")):
                    a = np.asarray(z[name], dtype=np.float64)
                    feats.append(a.mean(axis=0) if a.ndim == 2 else a.ravel())
                    rows.append({"system": r.label, "id": f.stem, "role": role,
                                 "target_class": manifest.at[f.stem, "target_class"]})  # fmt: skip
        if len(rows) < 6:
            if rows:
                written.notes.append(f"global-feature t-SNE of {r.label} left out: only {len(rows) // 2} item(s) have features")
            continue
        xy, p = tsne_coords(np.stack(feats), seed)
        points = pd.DataFrame(rows).assign(x=xy[:, 0], y=xy[:, 1])
        out_dir = out / "tsne_global" / safe_name(r.testset)
        out_dir.mkdir(parents=True, exist_ok=True)
        points.to_csv(out_dir / f"{safe_name(r.label)}-coords.csv", index=False)
        written.files.append(out_dir / f"{safe_name(r.label)}-coords.csv")
        caption = (f"t-SNE of {{system}}'s global features on {r.testset}, predicted (x) versus ground truth (o) for "
                   f"{{n}} items, coloured by the target's top AudioSet class; features L2-normalised, perplexity "
                   f"{p:g}, random init from seed {seed} (scikit-learn TSNE, Barnes-Hut).")  # fmt: skip
        _tsne_figures(points, out_dir, out, f"{r.label} global features: t-SNE, seed {seed}, perplexity {p:.3g}",
                      caption, captions, written, ("ground truth", "predicted"))  # fmt: skip
    if not found:
        written.notes.append(f"global-feature t-SNE (Fig. 5) left out: no HSM-TSS global features in these runs (a "
                             f"run folder would hold {GLOBAL_FEATURES}/<id>.npz with arrays predicted and reference)")  # fmt: skip


def _cache_dir(col: Collection) -> Path:
    """The feature cache the runs used (their config.yaml), so features the clap metric
    already computed are reused; else the default one."""
    from omegaconf import OmegaConf

    from hsm_bench.paths import default_paths

    for r in col.runs:
        cfg = r.path / "config.yaml"
        if cfg.is_file():
            d = OmegaConf.select(OmegaConf.load(cfg), "paths.cache_dir", default=None)
            if d:
                return Path(d)
    return Path(default_paths()["cache_dir"])


def _embedder_tsne(col: Collection, out: Path, name: str, params: dict, seed: int, captions: dict, written: Written) -> None:
    import pandas as pd

    from hsm_bench import weights
    from hsm_bench.registry import EMBEDDERS
    from hsm_bench.store.cache import FeatureCache

    EMBEDDERS.check(name)  # an unknown name is the user's error, not a missing figure
    try:
        # the clap metric's table names a CLAP embedder's weights without importing torch, so a
        # machine without them learns it in no time
        from hsm_bench.metrics.clap import BACKENDS, CLAPScore

        if name in BACKENDS:
            weights.require(CLAPScore.weights_for({"backend": name, "backend_params": params}))
        emb = EMBEDDERS.get(name)(**params)
        weights.require(emb.required_weights() if hasattr(emb, "required_weights") else list(emb.weights))
        emb.load("cpu")
    except weights.WeightsMissingError as exc:
        written.notes.append(f"t-SNE of {name} embeddings left out: {exc} (`--embedder none` leaves it out on purpose)")
        return
    cache = FeatureCache(_cache_dir(col))

    from hsm_bench.audio.io import read_audio
    from hsm_bench.audio.resample import torchaudio_resample
    from hsm_bench.embedders.clap_common import to_mono

    def clip(path: Path) -> np.ndarray:
        x, sr = read_audio(path)  # not memoised: 1200 ten-second clips would hold 0.8 GB
        x = to_mono(x)
        # the clap metric's resampler: the same samples hit the features it cached
        return torchaudio_resample(x, sr, emb.sample_rate) if sr != emb.sample_rate else x

    for testset in col.testsets:
        manifest = col.manifest(testset).sort_index()
        todo = [(Path(manifest.at[i, "reference"]), {"system": "", "id": i, "role": "reference", "target_class": c})
                for i, c in manifest["target_class"].items()]  # fmt: skip
        for system in col.systems(testset):
            run = col.run(system, testset)
            todo += [(run.output(i), {"system": system, "id": i, "role": "output",
                                      "target_class": manifest.at[i, "target_class"]}) for i in manifest.index]  # fmt: skip
        rows: list[dict] = []
        feats: list[np.ndarray] = []
        missing = {s: 0 for s in col.systems(testset)}
        # 32 clips per call: the embedder fills its fixed-size batches with windows of several
        # clips (one clip alone would leave most of a batch zero), and memory stays bounded
        for start in range(0, len(todo), 32):
            clips, chunk_rows = [], []
            for path, row in todo[start : start + 32]:
                try:
                    clips.append(clip(path))
                except AudioReadError as exc:
                    if row["role"] == "reference":
                        raise ReportError(f"the test set {testset} is damaged: {exc}; rebuild it") from None
                    missing[row["system"]] += 1  # failed separation (no file) or a damaged one
                    continue
                chunk_rows.append(row)
            if clips:
                feats += [np.asarray(f["embedding"], dtype=np.float64).ravel() for f in emb.audio_features(clips, cache)]
                rows += chunk_rows
        if len(rows) < 6:
            written.notes.append(f"t-SNE on {testset} left out: {len(rows)} clips, too few for a map")
            continue
        xy, p = tsne_coords(np.stack(feats), seed)
        points = pd.DataFrame(rows).assign(x=xy[:, 0], y=xy[:, 1])
        out_dir = out / "tsne" / safe_name(testset)
        out_dir.mkdir(parents=True, exist_ok=True)
        points.to_csv(out_dir / "coords.csv", index=False)
        side = {"embedder": name, "embedder_params": params, "embedder_key": emb.cache_key(),
                "feature": "embedding", "seed": seed, "perplexity": p, "init": "random", "method": "barnes_hut",
                "learning_rate": "auto", "preprocessing": "L2 normalisation", "threads": 1,
                "n_points": len(points), "n_references": len(manifest), "outputs_missing": missing,
                "resampler": "torchaudio_resample (transform kernel), as the clap metric"}  # fmt: skip
        (out_dir / "tsne.json").write_text(json.dumps(side, indent=1, sort_keys=True, default=str) + "\n")
        written.files += [out_dir / "coords.csv", out_dir / "tsne.json"]
        gone = "; ".join(f"{s}: {m} missing output(s)" for s, m in missing.items() if m)
        caption = (f"t-SNE of {name} audio embeddings on {testset}: {{system}}'s outputs (x, {{n}} items) and the "
                   f"references (o), coloured by the target's top AudioSet class. One map over the references and "
                   f"every system's outputs ({len(points)} points), embeddings L2-normalised, perplexity {p:g}, "
                   f"random init from seed {seed} (scikit-learn TSNE, Barnes-Hut)"
                   + (f"; left out: {gone}." if gone else "."))  # fmt: skip
        _tsne_figures(points, out_dir, out, f"{name} embeddings: t-SNE, seed {seed}, perplexity {p:.3g}", caption,
                      captions, written, ("reference", "output"))


# -- entry ----------------------------------------------------------------------------------
def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def write_figures(col: Collection, out: Path, embedder: str | None = "msclap-2023", seed: int = 0,
                  embedder_params: dict | None = None) -> Written:  # fmt: skip
    """Every figure of the report under ``out``; ``embedder=None`` leaves the embedder t-SNE out
    on purpose, ``embedder_params`` go to the embedder's constructor."""
    out = Path(out)
    if embedder is not None:  # a typo fails before any figure is drawn
        from hsm_bench.registry import EMBEDDERS

        EMBEDDERS.check(embedder)
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    captions: dict[str, str] = {}
    palette = system_palette(col)
    audio = _Audio()
    if col.items.empty:
        written.notes.append("figures left out: no scored values in these runs (run `hsm-bench run` with metrics)")
    else:
        _distributions(col, out, palette, captions, written)
        _spectrograms(col, out, captions, written, audio)
    _global_tsne(col, out, seed, captions, written)
    _attention(col, out, captions, written)
    if embedder is None:
        written.notes.append("t-SNE of embeddings left out on purpose (--embedder none)")
    else:
        _embedder_tsne(col, out, embedder, dict(embedder_params or {}), seed, captions, written)
    written.notes = list(dict.fromkeys(written.notes))  # an item shown in several figures is one note
    if captions:
        lines = ["# Figure captions", ""] + [f"- `{k}` (and .pdf): {v}" for k, v in sorted(captions.items())]
        (out / "captions.md").write_text("\n".join(lines) + "\n")
        (out / "captions.json").write_text(json.dumps(captions, indent=1, sort_keys=True) + "\n")
        written.files += [out / "captions.md", out / "captions.json"]
    return written


__all__ = ["write_figures", "tsne_coords", "log_spectrogram", "ranked_items", "primary_key", "save_figure",
           "new_figure", "style", "system_palette", "safe_name", "OKABE_ITO", "COLUMN_IN"]  # fmt: skip
