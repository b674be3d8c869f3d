"""The Hydra application behind ``hsm-bench run``.

``hsm-bench run`` checks its arguments (:mod:`hsm_bench.run_config`), rewrites them into
Hydra overrides and calls :func:`main` with them as ``sys.argv``, so multirun (``-m``) and
launcher plugins work unchanged. Each job's result (exit status and the line explaining a
non-zero one) is appended to :data:`RESULTS`; a job that cannot start raises
:class:`JobAbort`, which Hydra lets through (it is not an ``Exception``, so Hydra prints no
traceback) and the command turns into one line.
"""

from __future__ import annotations

import os
from typing import Any

import hydra
from omegaconf import DictConfig

RESULTS: list[dict[str, Any]] = []


class JobAbort(BaseException):
    """A job failed before it could start (bad setup); carries the one-line reason."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hsm_bench.errors import HsmBenchError
    from hsm_bench.pipeline.run import run_pipeline

    try:
        result = run_pipeline(cfg)
    except HsmBenchError as exc:
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        raise JobAbort(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        raise JobAbort(f"unexpected {type(exc).__name__}: {exc} (set HSM_BENCH_TRACEBACK=1 for the traceback "
                       "and please report it)") from None  # fmt: skip
    result["label"] = f"{cfg.system.name} on {cfg.testset.name}"
    RESULTS.append(result)
