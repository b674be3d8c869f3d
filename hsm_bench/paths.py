"""Default storage locations, read from the same ``conf/paths/default.yaml`` Hydra uses."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).parent / "conf"


def default_paths() -> dict[str, str]:
    cfg = OmegaConf.create({"paths": OmegaConf.load(CONF_DIR / "paths" / "default.yaml")})
    return {k: str(Path(v).expanduser()) for k, v in OmegaConf.to_container(cfg, resolve=True)["paths"].items()}
