"""Scale-out on CPU: items per second of one process against two shard processes, and the merge.

On the offline demo set (built first if missing, under $HSM_BENCH_HOME), with ``oracle_irm``
and the given metrics:

1. one process: ``hsm-bench run`` (``runtime.threads`` = all cores);
2. two processes through the joblib launcher: ``hsm-bench run -m hydra/launcher=local_2
   runtime.shard.index=0,1 runtime.shard.count=2`` (one thread each, as loky sets it);
3. the merge: ``aggregate_run`` over the shards' row files, timed alone.

Each run starts from an empty runs folder, so separation and scoring are both timed; the
test set build and the feature cache are shared and warm. Reported: wall time, items per
second, and whether the two corpus.json files agree (with ``--threads 1`` in both, identical).

Usage: python benchmarks/bench_scale.py [--metrics signal] [--threads 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="signal")
    ap.add_argument("--threads", type=int, default=None, help="runtime.threads in both setups (default: unset)")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    base = [sys.executable, "-m", "hsm_bench.cli", "run", "--system", "oracle_irm", "--metrics", a.metrics,
            "runtime.progress=false"] + ([f"runtime.threads={a.threads}"] if a.threads else [])  # fmt: skip
    run([*base, f"paths.runs_dir={work / 'warmup'}", "stages=[separate]"])  # builds the demo set if needed
    one = run([*base, f"paths.runs_dir={work / 'one'}"])
    two = run([*base, f"paths.runs_dir={work / 'two'}", "-m", "hydra/launcher=local_2",
               "runtime.shard.index=0,1", "runtime.shard.count=2"])  # fmt: skip

    from hsm_bench.api.testset import TestSet
    from hsm_bench.pipeline.aggregate import aggregate_run
    from hsm_bench.store.runstore import RunDir

    (run_two,) = [p.parent for p in (work / "two").rglob("run.json")]
    (run_one,) = [p.parent for p in (work / "one").rglob("run.json")]
    ts = TestSet(json.loads((run_two / "run.json").read_text())["testset"]["root"])
    t = time.perf_counter()
    aggregate_run(RunDir(run_two), ts)
    merge = time.perf_counter() - t
    same = json.loads((run_one / "corpus.json").read_text()) == json.loads((run_two / "corpus.json").read_text())
    n = len(ts)
    print(f"demo set, {n} items, metrics {a.metrics}, threads {a.threads or 'default'}")
    print(f"1 process : {one:6.1f} s  {n / one:6.2f} items/s")
    print(f"2 processes: {two:6.1f} s  {n / two:6.2f} items/s  (speed-up {one / two:.2f}x, launcher start-up included)")
    print(f"merge (aggregate over 2 shards' rows): {merge * 1000:.0f} ms")
    print(f"corpus.json identical: {same}")


if __name__ == "__main__":
    main()
