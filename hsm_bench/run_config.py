"""From ``hsm-bench run`` arguments to checked Hydra overrides.

``run`` takes sugar flags (``--system X --testset Y --metrics Z --weights N=P -m
--keep-errors``) and any Hydra override. Before Hydra starts, every job of the command is
composed here and checked, so that a mistake costs one line and nothing on disk:

* an unknown flag gets our usage hint (did-you-mean), not Hydra's usage;
* an override key that does not exist (``runtime.devcie=cpu``) is an error with
  did-you-mean against the keys that do exist; ``+`` adds keys only where the config is
  open (``system.params``, ``testset.params``, ``metrics.params``, ``weights``), and there a
  key is checked against the real parameters of the system, test set or metric;
* values are checked by the same functions the pipeline uses (:mod:`hsm_bench.params`):
  parameter types, device, batch sizes, weights names and paths.

Plugin systems and test sets (entry points) have no config file in ``hsm_bench/conf``; one
is generated from the class's signature defaults into ``$HSM_BENCH_HOME/plugin-conf`` and
added to Hydra's search path, so ``--system PLUGIN`` and sweeps over it work like the
built-in ones.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from hsm_bench.errors import ConfigError
from hsm_bench.params import did_you_mean, parameters

# (flag, takes a value) of `run`; Hydra's own flags that make sense are passed through
SUGAR = {"--system": True, "--testset": True, "--metrics": True, "--weights": True, "--keep-errors": False,
         "--command": True, "--shard": True, "-m": False, "--multirun": False}  # fmt: skip
HYDRA_FLAGS = {"--cfg": True, "-c": True, "--resolve": False, "--package": True, "-p": True, "--info": False}
GROUPS = ("system", "testset", "metrics", "paths", "runtime")
# config maps whose keys are open: `+`/`++` may add keys there (checked against real parameters)
OPEN_MAPS = ("system.params", "testset.params", "metrics.params", "weights")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(args: list[str]) -> tuple[list[str], list[str], bool]:
    """``(overrides, hydra flags, multirun)`` from ``run``'s arguments; unknown flags are errors."""
    from hsm_bench.registry import SYSTEMS, TESTSETS, resolve_metric_names

    overrides: list[str] = []
    flags: list[str] = []
    multirun = False
    it = iter(args)
    for arg in it:
        key, eq, val = arg.partition("=")
        if arg.startswith("-") and key not in SUGAR and key not in HYDRA_FLAGS:
            known = list(SUGAR) + list(HYDRA_FLAGS)
            raise ConfigError(f"unknown option {key}.{did_you_mean(key, known)} See `hsm-bench run --help`.")
        if key in SUGAR or key in HYDRA_FLAGS:
            takes = SUGAR.get(key, HYDRA_FLAGS.get(key))
            if takes and not eq:
                try:
                    val = next(it)
                except StopIteration:
                    raise ConfigError(f"{key} needs a value; see `hsm-bench run --help`") from None
            elif not takes and eq:
                raise ConfigError(f"{key} takes no value")
        if key == "--system":
            for name in _split(val):
                SYSTEMS.check(name)
            overrides.append(f"system={val}")
        elif key == "--testset":
            for name in _split(val):
                TESTSETS.check(name)
            overrides.append(f"testset={val}")
        elif key == "--metrics":
            resolve_metric_names(val)  # did-you-mean errors before Hydra starts
            overrides.append(f"metrics.names=[{','.join(_split(val))}]")
        elif key == "--weights":
            name, sep, path = val.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--weights expects NAME=PATH, got {val!r}")
            overrides.append(f"++weights.{name}={path}")
        elif key == "--command":  # the external system's command template
            if not any(o.startswith("system=") for o in overrides):
                overrides.append("system=external")
            overrides.append(f"++system.params.command={_hydra_string(val)}")
        elif key == "--shard":
            from hsm_bench.pipeline.sharding import parse_shard

            index, count = parse_shard(val)
            overrides += [f"runtime.shard.index={index}", f"runtime.shard.count={count}"]
        elif key == "--keep-errors":
            overrides.append("runtime.keep_errors=true")
        elif key in ("-m", "--multirun"):
            multirun = True
        elif key in HYDRA_FLAGS:
            flags += [key, val] if HYDRA_FLAGS[key] else [key]
        else:
            overrides.append(arg)
    return overrides, flags, multirun


def _hydra_string(value: str) -> str:
    """``value`` as a quoted Hydra string that composes back to exactly ``value``: a quote is
    escaped (with the backslashes before it doubled, Hydra's rule), and ``${`` escaped so
    OmegaConf does not take a shell variable for an interpolation."""
    import re

    text = value.replace("${", "\\${")
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)  # they precede the closing quote
    return "'" + text + "'"


# -- plugin configs ------------------------------------------------------------------
def _plain_default(p: inspect.Parameter) -> Any:
    d = p.default
    if d is inspect.Parameter.empty:
        return "???"  # Hydra's mandatory value: the user must set it
    if d is None or isinstance(d, (bool, int, float, str)):
        return d
    if isinstance(d, (list, tuple)) and all(isinstance(x, (bool, int, float, str)) for x in d):
        return list(d)
    return None


def plugin_conf_dir() -> Path | None:
    """Write configs for plugin systems / test sets that have none; the folder or None."""
    import yaml

    from hsm_bench.paths import CONF_DIR, default_paths
    from hsm_bench.registry import SYSTEMS, TESTSETS

    files: dict[str, dict[str, Any]] = {}
    for group, reg in (("system", SYSTEMS), ("testset", TESTSETS)):
        for name in reg.names():
            if reg.origin(name) == "hsm-bench" or (CONF_DIR / group / f"{name}.yaml").exists():
                continue
            cls = reg.get(name)
            named, _ = parameters(cls)
            if group == "system":
                params = {k: _plain_default(p) for k, p in named.items()}
                body = {"name": name, "params": params, "batch_size": 8}
            else:
                params = {k: _plain_default(p) for k, p in named.items() if k not in ("n_items", "seed", "source")}
                body = {"name": name, "builder": name, "source": None, "params": params, "root": None,
                        "build_if_missing": True}  # fmt: skip
            header = f"# generated for the plugin {group} {name!r} ({reg.target(name)}, package {reg.origin(name)!r})\n"
            files[f"{group}/{name}.yaml"] = header + yaml.safe_dump(body, sort_keys=False)
    if not files:
        return None
    from hsm_bench.store.jsonl import atomic_write_text

    root = Path(default_paths()["home"]) / "plugin-conf"
    for rel, text in files.items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            atomic_write_text(path, text)
    return root


# -- checking overrides -----------------------------------------------------------------
def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from hsm_bench.paths import CONF_DIR

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(" ".join(str(exc).split())) from None


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}{k}"
            out.append(path)
            out += _dotted_keys(node._get_node(k), path + ".")
    return out


def _unknown_key(cfg: Any, key: str, added: bool) -> ConfigError:
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    hint, where = "", ""
    found_parent = node is not None and hasattr(node, "keys")
    if found_parent:
        leaves = [str(k) for k in node.keys()]
        close = did_you_mean(leaf, leaves)
        if close:  # name the full key, not just the leaf
            match = close.split("'")[1]
            hint = f" Did you mean {(parent + '.' if parent else '') + match!r}?"
        where = f" Keys under {parent}: {', '.join(leaves)}." if parent else ""
    if not found_parent:
        hint = did_you_mean(key, _dotted_keys(cfg))
    plus = (" (`+` adds keys only under " + ", ".join(OPEN_MAPS) + ")") if added else ""
    return ConfigError(f"unknown config key {key!r}{plus}.{hint}{where}")


def _open_map(key: str) -> str | None:
    return next((m for m in OPEN_MAPS if key == m or key.startswith(m + ".")), None)


def _check_open_key(base: Any, key: str) -> None:
    """A key added under an open map must be a real parameter of what takes it."""
    from hsm_bench import weights
    from hsm_bench.registry import SYSTEMS, TESTSETS

    parts = key.split(".")
    if parts[0] == "weights":
        if len(parts) != 2:
            raise ConfigError(f"{key}: weights take NAME=PATH (`--weights NAME=PATH`)")
        weights.spec(parts[1])  # unknown name: did-you-mean
        return
    if len(parts) < 3:
        raise ConfigError(f"{key}: set single parameters, e.g. {key}.NAME=VALUE")
    if parts[0] in ("system", "testset"):
        name = base.system.name if parts[0] == "system" else base.testset.builder
        reg = SYSTEMS if parts[0] == "system" else TESTSETS
        named, open_ended = parameters(reg.get(name))
        if not open_ended and parts[2] not in named:
            raise ConfigError(
                f"{key}: {parts[0]} {name!r} has no parameter {parts[2]!r}.{did_you_mean(parts[2], list(named))} "
                f"Its parameters: {', '.join(named) or 'none'}."
            )
    # metrics.params.<metric>.<key>: checked on the composed job (the metric list may change)


def _rewrite(override: Any, base: Any) -> str:
    """One override, checked against the composed ``base`` config, as Hydra should get it."""
    from omegaconf import OmegaConf

    from hydra.core.override_parser.types import OverrideType

    key = override.key_or_group
    value = override.get_value_element_as_str()
    if key.split(".")[0].split("/")[0] == "hydra" or (key in GROUPS and override.type == OverrideType.CHANGE):
        return override.input_line
    exists = OmegaConf.select(base, key, default=_MISSING) is not _MISSING
    if override.type == OverrideType.DEL:
        if not exists:
            raise _unknown_key(base, key, added=False)
        return override.input_line
    if _open_map(key) and key not in OPEN_MAPS:
        _check_open_key(base, key)
        return f"++{key}={value}"  # add or change: the user need not know whether the YAML lists it
    if not exists:
        raise _unknown_key(base, key, added=override.type != OverrideType.CHANGE)
    return f"{key}={value}"


_MISSING = object()


def _jobs(parsed: list[Any], multirun: bool) -> list[list[Any]]:
    """Override lists to check: the first value of every sweep, then each other value once."""
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise ConfigError(f"{sweeps[0].input_line} sweeps over several values: add -m to run them all")
    from hydra.core.override_parser.types import Glob

    choices = []
    for o in parsed:
        if o.is_sweep_override() and not isinstance(o.value(), Glob):
            key = o.get_key_element()
            choices.append([(o, f"{key}={v}") for v in o.sweep_string_iterator()])
        else:
            choices.append([(o, None)])
    first = [c[0] for c in choices]
    jobs = [first]
    for i, c in enumerate(choices):
        for alt in c[1:]:
            jobs.append(first[:i] + [alt] + first[i + 1 :])
    return [[_single(o, line) for o, line in job] for job in jobs]


def _single(o: Any, line: str | None) -> Any:
    if line is None:
        return o
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(line)


def check_job(cfg: Any) -> None:
    """The checks ``run_pipeline`` also makes, on a composed job config, without loading anything."""
    from hsm_bench import weights
    from hsm_bench.pipeline.run import _runtime, make_system
    from hsm_bench.pipeline.score import build_metrics
    from hsm_bench.registry import TESTSETS, resolve_metric_names

    _runtime(cfg)
    make_system(cfg)
    build_metrics(resolve_metric_names(list(cfg.metrics.names)), _container(cfg.metrics.get("params") or {}))
    TESTSETS.check(cfg.testset.builder)
    with weights.overrides(_container(cfg.get("weights") or {})):
        pass  # names and paths checked
    root = cfg.testset.get("root")
    if root and not (Path(str(root)).expanduser() / "card.json").is_file():
        raise ConfigError(f"testset.root={root}: not a built test set (no card.json there)")


def _container(node: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def checked_overrides(overrides: list[str], multirun: bool) -> tuple[list[str], str]:
    """The overrides Hydra should get, after every job they describe was composed and checked,
    and the runs folder of the first job (where a sweep's jobs report their results)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from hsm_bench.registry import SYSTEMS, TESTSETS

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{first}: write overrides as KEY=VALUE (see `hsm-bench run --help`)") from None
    for o in parsed:  # group names: did-you-mean before composing
        if o.key_or_group in ("system", "testset") and not o.is_delete():
            reg = SYSTEMS if o.key_or_group == "system" else TESTSETS
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            for v in values:
                reg.check(v)
    conf = plugin_conf_dir()
    extra = [f"hydra.searchpath=[file://{conf}]"] if conf else []
    out: list[str] | None = None
    runs_dir = "runs"
    for job in _jobs(parsed, multirun):
        groups = [o.input_line for o in job if o.key_or_group in GROUPS or o.key_or_group.startswith(("hydra.", "hydra/"))]
        base = _compose(extra + groups)
        lines = [_rewrite(o, base) for o in job]
        cfg = _compose(extra + lines)
        check_job(cfg)
        if out is None:
            out = extra + [_rewrite_sweepable(o, base, line) for o, line in zip(parsed, lines)]
            runs_dir = str(cfg.paths.runs_dir)
    return (out if out is not None else extra), runs_dir


def _rewrite_sweepable(original: Any, base: Any, checked: str) -> str:
    """The checked form of an override, keeping its sweep (the check ran on one value)."""
    if not original.is_sweep_override():
        return checked
    prefix = checked.split("=", 1)[0]
    return f"{prefix}={original.input_line.split('=', 1)[1]}"

