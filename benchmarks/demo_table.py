"""The README's demo-set table: signal metrics per system and task, from `hsm-bench run` folders.

Runs (or resumes) `hsm-bench run --system S --testset demo --metrics signal` for each system
and prints, per task ("extract", "remove"), the mean over items of LSD, aligned LSD, PSNR and
SDRi, as a Markdown table. The numbers are what `hsm-bench run` wrote in each run folder's
items.jsonl, split by the manifest's task.

Usage: python benchmarks/demo_table.py [--systems oracle_mixture,hsm_tss,oracle_irm] [--runs runs]
           [--weights SYSTEM:NAME=PATH ...]

e.g. the single-stage variant from a checkpoint trained with `hsm-bench train hsm_tss_single preset=demo
out=DIR`: --systems oracle_mixture,hsm_tss,hsm_tss_single,oracle_irm
--weights hsm_tss_single:hsm-tss-single=DIR/model-fp16
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

KEYS = ("lsd", "lsd_aligned", "psnr", "sdri")


def run_folder(runs: Path, system: str) -> Path:
    """The newest run folder of ``system`` on the demo set under ``runs``."""
    folders = sorted(runs.glob(f"demo@*/{system}/*/run.json"), key=lambda p: p.stat().st_mtime)
    if not folders:
        raise SystemExit(f"no run of {system} under {runs}")
    return folders[-1].parent


def means(folder: Path) -> dict[str, dict[str, float]]:
    run = json.loads((folder / "run.json").read_text())
    manifest = Path(run["testset"]["root"]) / "manifest.jsonl"
    task = {r["id"]: r["task"] for r in map(json.loads, manifest.read_text().splitlines())}
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in map(json.loads, (folder / "items.jsonl").read_text().splitlines()):
        if row["status"] != "ok":
            continue
        for key, v in row["values"].items():
            if key in KEYS and v is not None and math.isfinite(v):
                values[task[row["id"]]][key].append(v)
    return {t: {k: sum(v) / len(v) for k, v in by_key.items()} for t, by_key in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", default="oracle_mixture,hsm_tss,oracle_irm")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--no-run", action="store_true", help="only read existing run folders")
    ap.add_argument("--weights", action="append", default=[], metavar="SYSTEM:NAME=PATH",
                    help="pass --weights NAME=PATH to SYSTEM's run (repeatable)")
    args = ap.parse_args()
    runs = Path(args.runs)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    weights: dict[str, list[str]] = defaultdict(list)
    for spec in args.weights:
        system, sep, rest = spec.partition(":")
        if not sep or "=" not in rest:
            ap.error(f"--weights {spec}: expected SYSTEM:NAME=PATH")
        weights[system] += ["--weights", rest]
    for system in systems:
        if not args.no_run:
            cmd = ["hsm-bench", "run", "--system", system, "--testset", "demo", "--metrics", "signal",
                   *weights[system], f"paths.runs_dir={runs}", "runtime.progress=false"]  # fmt: skip
            status = subprocess.run(cmd).returncode
            if status not in (0, 1):
                sys.exit(f"{' '.join(cmd)} exited with {status}")
    print("| system | task | LSD ↓ | aligned LSD ↓ | PSNR ↑ | SDRi ↑ |")
    print("|---|---|---:|---:|---:|---:|")
    for system in systems:
        m = means(run_folder(runs, system))
        for task in ("extract", "remove"):
            row = m.get(task, {})
            cells = " | ".join(f"{row[k]:.2f}" if k in row else "–" for k in KEYS)
            print(f"| {system} | {task} | {cells} |")


if __name__ == "__main__":
    main()
