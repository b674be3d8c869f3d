"""``hsm-bench report RUNS... --out DIR``: everything a paper needs from a set of run folders.

Layout of DIR (each part says in ``report.json`` what it wrote and what it left out, and why):

    tables/       the paper's Tables II-VIII (Markdown, LaTeX, long CSV), published numbers
                  beside the measured ones; significance.csv (paired tests)
    breakdowns/   every metric by SNR bin, task, sound class and query kind (CSV + figures)
    figures/      t-SNE, attention maps, spectrogram panels, per-item distributions (PNG + PDF)
    listen/       the listening page: index.html with audio and images, no network needed
    report.json   inputs (run folders, manifest hashes), what was written, notes, timings, versions

The report is written into a temporary sibling folder and renamed into place, so a failed
report leaves nothing half-made; an existing DIR is replaced only if it is a report.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from hsm_bench.errors import ConfigError
from reports.collect import Collection, ReportError, Written, load

PARTS = ("tables", "breakdowns", "figures", "listen")


def make_report(paths: list[str | Path], out: str | Path, parts: tuple[str, ...] = PARTS, published: bool = True,
                reference: str | None = None, embedder: str | None = "msclap-2023", seed: int = 0,
                max_items: int | None = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write the report; returns the summary also stored as report.json."""
    out = Path(out)
    if out.exists() and not (out / "report.json").is_file():
        raise ConfigError(f"--out {out} exists and is not a report folder: choose another folder")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"unknown report part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    t0 = time.perf_counter()
    col = load(paths)
    timings = {"load": round(time.perf_counter() - t0, 2)}
    tmp = out.with_name(f".{out.name}.writing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written: dict[str, Written] = {}
    try:
        for part in parts:
            t = time.perf_counter()
            written[part] = _write_part(part, col, tmp, published, reference, embedder, seed, max_items, progress)
            timings[part] = round(time.perf_counter() - t, 2)
            if progress:
                print(f"{part}: {len(written[part].files)} file(s) in {timings[part]:.1f} s")
                for note in written[part].notes:
                    print(f"  {note}")
        summary = _summary(col, written, timings, tmp)
        from hsm_bench.store.jsonl import atomic_write_json

        atomic_write_json(tmp / "report.json", summary)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _write_part(part: str, col: Collection, out: Path, published: bool, reference: str | None, embedder: str | None,
                seed: int, max_items: int | None, progress: bool) -> Written:  # fmt: skip
    if part == "tables":
        from reports.tables import write_tables

        return write_tables(col, out / "tables", published=published, reference=reference)
    if part == "breakdowns":
        from reports.breakdowns import write_breakdowns

        return write_breakdowns(col, out / "breakdowns")
    if part == "figures":
        from reports.plots import write_figures

        return write_figures(col, out / "figures", embedder=embedder, seed=seed)
    from reports.listening import write_page

    return write_page(col, out / "listen", max_items=max_items)


def _summary(col: Collection, written: dict[str, Written], timings: dict[str, float], root: Path) -> dict[str, Any]:
    from hsm_bench.store.runstore import environment

    return {
        "runs": [{"path": str(r.path), "system": r.label, "testset": r.testset,
                  "manifest_sha256": r.manifest_sha256} for r in col.runs],  # fmt: skip
        "parts": {name: {"files": [str(p.relative_to(root)) for p in w.files], "notes": w.notes}
                  for name, w in written.items()},  # fmt: skip
        "timings_s": timings,
        "environment": environment(),
    }


__all__ = ["make_report", "ReportError", "PARTS"]
