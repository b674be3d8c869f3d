"""Benchmark: build `three_sets` (1,000 pairs) from fixture pools of a few thousand short files.

Generates (once, in --workdir) AudioCaps-, Clotho- and FSD50K-layout trees with N short
synthetic clips each (16 / 44.1 kHz, mono and stereo, captions and labels taken from the
test fixtures' real metadata), then times `ThreeSetsBuilder(n_items=1000).build(...)`.

Usage: python benchmarks/bench_build_three_sets.py [--per-dataset 1400] [--n-items 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import dataset_fixtures as fx  # noqa: E402
from testsets.ontology import load  # noqa: E402
from testsets.three_sets import ThreeSetsBuilder  # noqa: E402


def make_pools(root: Path, n: int) -> None:
    if (root / "done").exists():
        return
    rng = np.random.default_rng(0)
    with open(fx.DATA / "audiocaps_test_subset.csv", newline="") as f:
        ac_caps = [r["caption"] for r in csv.DictReader(f)]
    cl_caps = [c for _, caps in fx.CLOTHO_CAPTIONS for c in caps]
    # AudioCaps: test.csv with 5 captions per clip, files named Y{ytid}.wav
    (root / "audiocaps").mkdir(parents=True, exist_ok=True)
    with open(root / "audiocaps" / "test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        for k in range(n):
            ytid = f"yt{k:09d}"
            for j in range(5):
                w.writerow([k * 5 + j, ytid, 30, ac_caps[int(rng.integers(len(ac_caps)))]])
            fx.write(root / "audiocaps" / "audio" / f"Y{ytid}.wav", f"ac{k}", float(rng.uniform(3, 6)), 16000)
    # Clotho: captions csv and short 44.1 kHz files with spaces in their names
    (root / "clotho").mkdir(exist_ok=True)
    with open(root / "clotho" / "clotho_captions_evaluation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{j}" for j in range(1, 6)])
        for k in range(n):
            name = f"field recording {k}, take.wav"
            w.writerow([name, *(cl_caps[int(rng.integers(len(cl_caps)))] for _ in range(5))])
            fx.write(root / "clotho" / "evaluation" / name, f"cl{k}", float(rng.uniform(3, 6)), 44100, 1 + k % 2)
    # FSD50K: eval.csv with smeared mids, files of 5-7 s
    onto = load()
    leaves = [onto.mid(x) for x in fx.FSD_LEAVES]
    gt = root / "fsd50k" / "FSD50K.ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    with open(gt / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        for k in range(n):
            leaf = leaves[k % len(leaves)]
            mids = [leaf, *sorted(onto.ancestors(leaf))]
            w.writerow([str(k), ",".join(onto.name(m) for m in mids), ",".join(mids)])
            fx.write(root / "fsd50k" / "FSD50K.eval_audio" / f"{k}.wav", f"fsd{k}", float(rng.uniform(5, 7)), 44100)
    (root / "done").touch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-dataset", type=int, default=1400)
    ap.add_argument("--n-items", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="hsm-bench-three-"))
    t = time.perf_counter()
    make_pools(root / "pools", a.per_dataset)
    print(f"fixture pools: 3 x {a.per_dataset} files in {root / 'pools'} ({time.perf_counter() - t:.1f} s to generate)")
    out = root / "built"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ThreeSetsBuilder(n_items=a.n_items, source=str(root / "pools")).build(out, progress=False)
    wall = time.perf_counter() - t
    print(f"three_sets: {a.n_items} pairs built in {wall:.1f} s ({a.n_items / wall:.1f} items/s; target < 120 s)")


if __name__ == "__main__":
    main()
