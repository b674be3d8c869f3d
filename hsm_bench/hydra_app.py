"""The Hydra application behind ``hsm-bench run``.

``hsm-bench run`` rewrites its sugar flags into Hydra overrides and calls :func:`main`
with them as ``sys.argv``, so multirun (``-m``) and launcher plugins work unchanged.
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hsm_bench.api.testset import ManifestError
    from hsm_bench.pipeline.run import run_pipeline
    from hsm_bench.registry import UnknownNameError
    from hsm_bench.weights import WeightsError

    try:
        run_pipeline(cfg)
    except (WeightsError, UnknownNameError, ManifestError, FileNotFoundError, NotImplementedError) as exc:
        # Setup problems the user fixes (missing weights or test set, a model hsm-bench cannot
        # load) get one line; Hydra would print a traceback. SystemExit passes through Hydra.
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise SystemExit(f"hsm-bench run: error: {msg}") from None
