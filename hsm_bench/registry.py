"""Lazy name registries, open to plugins.

Each registry maps a short name to a ``"module:Attr"`` string that is imported only when
the name is used, so ``import hsm_bench`` never pulls in a model, a dataset reader or an
optional dependency. Unknown names raise :class:`UnknownNameError` with close matches.

Third-party packages add systems, metrics and test sets without editing hsm-bench through
Python entry points in the groups ``hsm_bench.systems``, ``hsm_bench.metrics`` and
``hsm_bench.testsets`` (``name = "package.module:Class"``). They are discovered on first use
of a registry; a name registered twice (by hsm-bench and a plugin, or by two plugins) is an
error naming both, and a class that is not a subclass of the registry's base class is
refused when it is loaded.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterator

from hsm_bench.errors import HsmBenchError


class UnknownNameError(HsmBenchError, KeyError):
    """A name that is not registered; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RegistryError(HsmBenchError):
    """A plugin that clashes with another name, cannot be imported or has the wrong type."""


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    def __init__(self, kind: str, entries: dict[str, str] | None = None, group: str | None = None,
                 base: str | None = None):  # fmt: skip
        self.kind = kind
        self.group = group  # entry-point group of plugins (None: no plugins)
        self.base = base  # "module:Class" every registered object must subclass
        self._targets: dict[str, str] = dict(entries or {})
        self._origin: dict[str, str] = {n: "hsm-bench" for n in self._targets}
        self._loaded: dict[str, Any] = {}
        self._discovered = group is None

    def register(self, name: str, target: str | Any, origin: str = "hsm-bench") -> None:
        if isinstance(target, str):
            self._targets[name] = target
            self._loaded.pop(name, None)
        else:
            self._targets[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target
        self._origin[name] = origin

    def unregister(self, name: str) -> None:
        for d in (self._targets, self._loaded, self._origin):
            d.pop(name, None)

    def _discover(self) -> None:
        """Add the entry points of ``group`` once; clashes are errors, not silent overrides."""
        if self._discovered:
            return
        self._discovered = True
        from importlib.metadata import entry_points

        seen: dict[str, str] = {}
        for ep in sorted(entry_points(group=self.group), key=lambda e: (e.name, e.value)):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown package"
            if ep.name in self._targets and self._origin.get(ep.name) == "hsm-bench":
                raise RegistryError(
                    f"package {dist!r} registers {self.kind} {ep.name!r} ({ep.value}), which hsm-bench already "
                    f"provides; rename it in that package's entry points ({self.group})"
                )
            if ep.name in seen and seen[ep.name] != dist:
                raise RegistryError(
                    f"{self.kind} {ep.name!r} is registered by two packages, {seen[ep.name]!r} and {dist!r} "
                    f"(entry-point group {self.group}); uninstall or rename one"
                )
            seen[ep.name] = dist
            self.register(ep.name, ep.value, origin=dist)

    def reset_plugins(self) -> None:
        """Forget discovered plugins; the next use discovers them again (tests, notebooks)."""
        for name in [n for n, o in self._origin.items() if o != "hsm-bench"]:
            self.unregister(name)
        self._discovered = self.group is None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._targets)

    def origin(self, name: str) -> str:
        """``hsm-bench`` or the distribution of the plugin that registered ``name``."""
        self.check(name)
        return self._origin.get(name, "hsm-bench")

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def target(self, name: str) -> str:
        self.check(name)
        return self._targets[name]

    def check(self, name: str) -> None:
        self._discover()
        if name not in self._targets:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"Known {self.kind}s: {', '.join(self.names())} (see `hsm-bench ls {self.kind}s`)."
            )

    def get(self, name: str) -> Any:
        """Import and return the registered object (checked against the base class)."""
        self.check(name)
        if name not in self._loaded:
            target = self._targets[name]
            try:
                obj = _import(target)
            except Exception as exc:  # a broken plugin must not look like a bug of hsm-bench
                if self._origin.get(name, "hsm-bench") == "hsm-bench":
                    raise
                raise RegistryError(
                    f"cannot load {self.kind} {name!r} from {target} (package {self._origin[name]!r}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if self.base is not None:
                base = _import(self.base)
                if not (isinstance(obj, type) and issubclass(obj, base)):
                    raise RegistryError(
                        f"{self.kind} {name!r} ({target}, package {self._origin.get(name, 'hsm-bench')!r}) is not a "
                        f"subclass of {self.base.replace(':', '.')}"
                    )
            self._loaded[name] = obj
        return self._loaded[name]


SYSTEMS = Registry(
    "system",
    group="hsm_bench.systems",
    base="hsm_bench.api.system:System",
    entries={
        "oracle_mixture": "systems.oracles:MixtureOracle",
        "oracle_target": "systems.oracles:TargetOracle",
        "oracle_irm": "systems.oracles:IdealRatioMask",
        "audiosep": "systems.audiosep:AudioSep",
        "audiosep_dcase16k": "systems.audiosep:AudioSepDCASE16k",
        "bimodalsep": "systems.bimodalsep:BiModalSep",
        "lass_net": "systems.lass_net:LassNet",
        "clipsep": "systems.clipsep:CLIPSep",
        "external": "systems.external:External",
        "hsm_tss": "systems.hsm_tss.system:HsmTss",
        "hsm_tss_single": "systems.hsm_tss.system:HsmTssSingle",
    },
)

TESTSETS = Registry(
    "testset",
    group="hsm_bench.testsets",
    base="testsets.base:Builder",
    entries={
        "demo": "testsets.demo:DemoBuilder",
        "audiocaps": "testsets.audiocaps:AudioCapsBuilder",
        "clotho": "testsets.clotho:ClothoBuilder",
        "fsd50k": "testsets.fsd50k:FSD50KBuilder",
        "three_sets": "testsets.three_sets:ThreeSetsBuilder",
        "music": "testsets.music:MusicBuilder",
    },
)

METRICS = Registry(
    "metric",
    group="hsm_bench.metrics",
    base="hsm_bench.api.metric:Metric",
    entries={
        "lsd": "hsm_bench.metrics.signal:LSD",
        "psnr": "hsm_bench.metrics.signal:MelPSNR",
        "sdr": "hsm_bench.metrics.signal:SDRFamily",
        "kl": "hsm_bench.metrics.kl:KL",
        "clap": "hsm_bench.metrics.clap:CLAPScore",
        "afsim": "hsm_bench.metrics.afsim:AFSim",
    },
)

# Named metric sets (aac-metrics style); each entry is a list of metric names.
METRIC_SETS: dict[str, list[str]] = {
    "signal": ["lsd", "psnr", "sdr"],
    "sdr": ["sdr"],
    "paper": ["kl", "lsd", "psnr", "clap", "afsim"],
    "semantic": ["kl", "clap", "afsim"],
    "all": ["kl", "lsd", "psnr", "sdr", "clap", "afsim"],
}

# Audio (and text) encoders shared by metrics; names match hsm_bench.weights entries
# where a checkpoint is involved.
EMBEDDERS = Registry(
    "embedder",
    base="hsm_bench.embedders.base:Embedder",
    entries={
        "panns-cnn14-16k": "hsm_bench.embedders.panns:Cnn14_16k",
        "panns-cnn14-32k": "hsm_bench.embedders.panns:Cnn14_32k",
        "msclap-2023": "hsm_bench.embedders.msclap:MSCLAP2023",
        "msclap-2022": "hsm_bench.embedders.msclap:MSCLAP2022",
        "laion-clap-music-speech-audioset": "hsm_bench.embedders.laion_clap:LaionClapMusicSpeechAudioset",
        "laion-clap-630k-audioset": "hsm_bench.embedders.laion_clap:LaionClap630kAudioset",
        "laion-clap-hf": "hsm_bench.embedders.laion_clap:LaionClapHF",
        "audio-flamingo-3": "hsm_bench.embedders.audio_flamingo:AudioFlamingo3",
        "audio-flamingo-2": "hsm_bench.embedders.audio_flamingo:AudioFlamingo2",
        "audio-flamingo-1": "hsm_bench.embedders.audio_flamingo1:AudioFlamingo1",
    },
)

REGISTRIES = {"systems": SYSTEMS, "testsets": TESTSETS, "metrics": METRICS, "embedders": EMBEDDERS}

# An output key that is not itself a metric name resolves to the metric that emits it,
# so `--metrics lsd_aligned,sdri` works; the whole metric runs (its outputs share work).
METRIC_ALIASES: dict[str, str] = {
    "lsd_aligned": "lsd",
    "sdri": "sdr",
    "si_sdr": "sdr",
    "si_sdri": "sdr",
    "kl_sigmoid": "kl",
    "clap_a": "clap",
    "clapi": "clap",
}


def resolve_metric_request(spec: str | list[str]) -> tuple[list[str], dict[str, list[str] | None]]:
    """Metric names to run for a comma list / list of metric names, output keys and set names,
    in order, and what was asked of each: ``{metric: [output keys]}``, or None for all of its
    outputs (a metric or set name). ``sdri`` runs ``sdr`` but asks only for ``sdri``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    asked: dict[str, list[str] | None] = {}
    for raw in items:
        token = str(raw).strip()
        if not token:
            continue
        if token in METRIC_SETS:
            pairs = [(m, None) for m in METRIC_SETS[token]]
        elif token in METRIC_ALIASES:
            pairs = [(METRIC_ALIASES[token], token)]
        elif token in METRICS:
            pairs = [(token, None)]
        else:
            close = difflib.get_close_matches(
                token, sorted(set(METRICS.names()) | set(METRIC_SETS) | set(METRIC_ALIASES)), n=3, cutoff=0.5
            )
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown metric or metric set {token!r}.{hint} Metrics: {', '.join(METRICS.names())}; "
                f"sets: {', '.join(sorted(METRIC_SETS))} (see `hsm-bench ls metrics`)."
            )
        for metric, key in pairs:
            if metric not in names:
                names.append(metric)
                asked[metric] = [] if key else None
            if key is None:
                asked[metric] = None
            elif asked[metric] is not None and key not in asked[metric]:
                asked[metric].append(key)
    if not names:
        raise UnknownNameError("no metrics selected: give metric names, output keys or sets (see `hsm-bench ls metrics`)")
    return names, asked


def resolve_metric_names(spec: str | list[str]) -> list[str]:
    """Expand a comma list / list of metric names, output keys and set names, in order."""
    return resolve_metric_request(spec)[0]
