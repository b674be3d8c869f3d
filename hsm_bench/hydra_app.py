"""The Hydra application behind ``hsm-bench run``.

``hsm-bench run`` rewrites its sugar flags into Hydra overrides and calls :func:`main`
with them as ``sys.argv``, so multirun (``-m``) and launcher plugins work unchanged.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hsm_bench.pipeline.run import run_pipeline

    run_pipeline(cfg)
