"""Lazy name registries.

Each registry maps a short name to a ``"module:Attr"`` string that is imported only when
the name is used, so ``import hsm_bench`` never pulls in a model, a dataset reader or an
optional dependency. Unknown names raise :class:`UnknownNameError` with close matches.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterator


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self._targets: dict[str, str] = dict(entries or {})
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, target: str | Any) -> None:
        if isinstance(target, str):
            self._targets[name] = target
            self._loaded.pop(name, None)
        else:
            self._targets[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target

    def names(self) -> list[str]:
        return sorted(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def target(self, name: str) -> str:
        self.check(name)
        return self._targets[name]

    def check(self, name: str) -> None:
        if name not in self._targets:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"Known {self.kind}s: {', '.join(self.names())} (see `hsm-bench ls {self.kind}s`)."
            )

    def get(self, name: str) -> Any:
        """Import and return the registered object."""
        self.check(name)
        if name not in self._loaded:
            module, _, attr = self._targets[name].partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._loaded[name] = obj
        return self._loaded[name]


SYSTEMS = Registry(
    "system",
    {
        "oracle_mixture": "systems.oracles:MixtureOracle",
        "oracle_target": "systems.oracles:TargetOracle",
        "oracle_irm": "systems.oracles:IdealRatioMask",
    },
)

TESTSETS = Registry(
    "testset",
    {
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
    {
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
    {
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


def resolve_metric_names(spec: str | list[str]) -> list[str]:
    """Expand a comma list / list of metric names, output keys and set names, in order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name in METRIC_SETS:
            expanded = METRIC_SETS[name]
        elif name in METRIC_ALIASES:
            expanded = [METRIC_ALIASES[name]]
        else:
            if name not in METRICS:
                close = difflib.get_close_matches(
                    name, sorted(set(METRICS.names()) | set(METRIC_SETS) | set(METRIC_ALIASES)), n=3, cutoff=0.5
                )
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise UnknownNameError(
                    f"unknown metric or metric set {name!r}.{hint} Metrics: {', '.join(METRICS.names())}; "
                    f"sets: {', '.join(sorted(METRIC_SETS))} (see `hsm-bench ls metrics`)."
                )
            expanded = [name]
        for m in expanded:
            if m not in out:
                out.append(m)
    if not out:
        raise ValueError("no metrics selected")
    return out
