"""The Hydra application behind ``hsm-bench run``.

``hsm-bench run`` checks its arguments (:mod:`hsm_bench.run_config`), rewrites them into
Hydra overrides and calls :func:`main` with them as ``sys.argv``, so multirun (``-m``) and
launcher plugins (joblib processes, SLURM jobs) work unchanged. Each job records its result
(exit status, the line explaining a non-zero one, the run folder) in :data:`RESULTS` and, when
``HSM_BENCH_RESULTS_DIR`` is set, as a JSON file there: jobs of other processes or nodes
report back through that folder (on the runs' file system, which SLURM jobs share). A job
never raises into Hydra (which would print a traceback): a setup error becomes its result.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

RESULTS: list[dict[str, Any]] = []
RESULTS_ENV = "HSM_BENCH_RESULTS_DIR"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hsm_bench.errors import EXIT_ERROR, HsmBenchError
    from hsm_bench.pipeline.run import run_pipeline

    label = f"{cfg.system.name} on {cfg.testset.name}"
    shard = (cfg.runtime.get("shard") or {})
    if int(shard.get("count", 1) or 1) > 1:
        label += f" shard {shard.get('index')}/{shard.get('count')}"
    try:
        result = run_pipeline(cfg)
    except HsmBenchError as exc:
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        result = {"run_dir": None, "corpus": None, "status": EXIT_ERROR, "problem": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        result = {"run_dir": None, "corpus": None, "status": EXIT_ERROR,
                  "problem": f"unexpected {type(exc).__name__}: {exc} (set HSM_BENCH_TRACEBACK=1 for the traceback "
                             "and please report it)"}  # fmt: skip
    result["label"] = label
    RESULTS.append(result)
    folder = os.environ.get(RESULTS_ENV)
    if folder:
        record = {k: result[k] for k in ("run_dir", "status", "problem", "label")}
        path = Path(folder) / f"{uuid.uuid4().hex}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)


def collect(folder: str | Path) -> list[dict[str, Any]]:
    """The results the jobs of a sweep wrote into ``folder``, in a stable order."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    return sorted(rows, key=lambda r: r["label"])
