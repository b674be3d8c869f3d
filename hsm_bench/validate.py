"""``hsm-bench validate``: check the configuration tree, or re-hash a built test set."""

from __future__ import annotations

from pathlib import Path

from hsm_bench.errors import ConfigError
from hsm_bench.paths import CONF_DIR, default_paths


def validate_config_tree() -> list[str]:
    """Every registered system/test set has a config and every config a registered name;
    every config composes; every system and metric class can be constructed cheaply."""
    from hydra import compose, initialize_config_dir

    from hsm_bench.pipeline.score import build_metrics
    from hsm_bench.registry import METRIC_ALIASES, METRICS, SYSTEMS, TESTSETS, resolve_metric_names

    problems = []
    for group, reg in (("system", SYSTEMS), ("testset", TESTSETS)):
        configs = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
        builtin = {n for n in reg.names() if reg.origin(n) == "hsm-bench"}  # plugins get generated configs
        for name in sorted(builtin - configs):
            problems.append(f"{group} {name!r} is registered but has no conf/{group}/{name}.yaml")
        for name in sorted(configs - set(reg.names())):
            problems.append(f"conf/{group}/{name}.yaml has no registered {group}")
    from hsm_bench.run_config import plugin_conf_dir

    conf = plugin_conf_dir()
    extra = [f"hydra.searchpath=[file://{conf}]"] if conf else []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name in SYSTEMS.names():
            try:
                cfg = compose("config", overrides=[*extra, f"system={name}"])
                cls = SYSTEMS.get(name)
                if not cls.needs_user_params:  # e.g. `external` cannot run on its defaults
                    cls(**dict(cfg.system.get("params") or {}))
            except Exception as exc:
                problems.append(f"system {name}: {type(exc).__name__}: {exc}")
        for path in sorted((CONF_DIR / "metrics").glob("*.yaml")):
            try:
                cfg = compose("config", overrides=[f"metrics={path.stem}"])
                resolve_metric_names(list(cfg.metrics.names))
            except Exception as exc:
                problems.append(f"metrics set {path.stem}: {type(exc).__name__}: {exc}")
    outputs: dict[str, tuple[str, ...]] = {}
    for name in METRICS.names():
        try:
            outputs[name] = build_metrics([name])[0].info.outputs
        except Exception as exc:
            problems.append(f"metric {name}: {type(exc).__name__}: {exc}")
    for key, metric in METRIC_ALIASES.items():  # the alias table must agree with what metrics emit
        if metric in outputs and key not in outputs[metric]:
            problems.append(f"output key {key!r} is mapped to metric {metric!r}, which does not emit it")
    for metric, keys in outputs.items():
        for key in keys:
            if key != metric and key not in METRIC_ALIASES:
                problems.append(f"output key {key!r} of metric {metric!r} has no entry in registry.METRIC_ALIASES")
    return problems


def _find_testset(target: str) -> Path:
    p = Path(target).expanduser()
    if (p / "card.json").exists():
        return p
    root = Path(default_paths()["data_dir"]) / "testsets" / target
    versions = sorted(q.parent for q in root.glob("*/card.json"))
    if not versions:
        raise ConfigError(f"no built test set at {p} or under {root}; build one with `hsm-bench build-testset {target}`")
    return versions[-1]


def validate(target: str | None, check_audio: bool = True) -> int:
    if target is None:
        problems = validate_config_tree()
        what = "configuration tree"
    else:
        from hsm_bench.api.testset import TestSet

        path = _find_testset(target)
        problems = TestSet(path).validate(check_audio=check_audio)
        what = f"test set {path}"
    if problems:
        print(f"{what}: {len(problems)} problem(s)")
        for p in problems[:50]:
            print(f"  - {p}")
        return 1
    print(f"{what}: ok")
    return 0
