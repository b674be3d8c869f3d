"""The Metric interface.

A metric declares what it needs (reference audio? mixture? text?) and what it emits in a
:class:`MetricInfo`; the scorer loads exactly that, at the metric's sample rate, and calls
:meth:`Metric.compute_batch`. Item metrics return one ``{key: value}`` dict per item (a
value may be ``float('inf')``/``nan``; the store keeps such values as null with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

import numpy as np

# What an output can need beside the estimate. A run always has all three; `hsm-bench score`
# has the reference, the mixture with --mix-dir and text with --captions.
INPUTS = ("reference", "mixture", "text")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    outputs: tuple[str, ...]
    higher_is_better: bool
    version: str
    reference: str  # the public definition this metric reproduces
    kind: Literal["item", "corpus"] = "item"
    # inputs every output needs (an item without them is an error)
    requires_reference: bool = True
    requires_mixture: bool = False
    requires_text: bool = False
    # inputs single outputs need on top (e.g. sdri: mixture); an output whose input is absent
    # from the whole job is skipped and announced once, not counted as an item failure
    output_needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sample_rate: int | None = 16000  # None: the test set's rate
    embedder: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for key, needs in self.output_needs.items():
            if key not in self.outputs:
                raise ValueError(f"{self.name}: output_needs names {key!r}, which is not an output")
            bad = set(needs) - set(INPUTS)
            if bad:
                raise ValueError(f"{self.name}: output {key!r} needs unknown input(s) {sorted(bad)}")

    def needs(self, key: str) -> frozenset[str]:
        """Every input the output ``key`` needs."""
        base = {n for n, flag in (("reference", self.requires_reference), ("mixture", self.requires_mixture),
                                  ("text", self.requires_text)) if flag}  # fmt: skip
        return frozenset(base | set(self.output_needs.get(key, ())))

    def uses(self, what: str) -> bool:
        """Whether any output reads ``what`` ("reference", "mixture" or "text")."""
        return any(what in self.needs(k) for k in self.outputs)

    def available(self, have: set[str] | frozenset[str]) -> tuple[list[str], dict[str, list[str]]]:
        """``(outputs computable with the inputs in have, {skipped output: missing inputs})``."""
        ok, skipped = [], {}
        for key in self.outputs:
            missing = sorted(self.needs(key) - set(have))
            if missing:
                skipped[key] = missing
            else:
                ok.append(key)
        return ok, skipped


@dataclass
class ScoreItem:
    """Everything a metric may look at for one item (mono float32 arrays)."""

    id: str
    estimate: np.ndarray
    sample_rate: int
    reference: np.ndarray | None = None
    mixture: np.ndarray | None = None
    caption: str | None = None
    captions: list[str] = field(default_factory=list)
    task: str | None = None


class MetricError(ValueError):
    """An item the metric cannot score; the message becomes the row's error reason."""


class Metric:
    info: ClassVar[MetricInfo]

    def __init__(self, **params: Any):
        self.params = dict(params)

    def setup(self, device: str = "cpu", cache: Any = None) -> None:
        """Heavy initialisation (weights, filterbanks); called once before scoring."""

    def required_weights(self) -> list[str]:
        """Weights names ``setup`` will load with these parameters (``weights_for`` of the class)."""
        weights_for = getattr(type(self), "weights_for", None)
        return list(weights_for(self.params)) if weights_for else []

    def compute(self, item: ScoreItem) -> dict[str, float]:
        raise NotImplementedError

    def compute_batch(self, items: list[ScoreItem]) -> list[dict[str, float] | Exception]:
        """Score several items; a failure of one item is returned in its place, not raised."""
        out: list[dict[str, float] | Exception] = []
        for item in items:
            try:
                out.append(self.compute(item))
            except Exception as exc:  # one bad item must not stop the others
                out.append(exc)
        return out

    def describe(self) -> dict[str, Any]:
        """Name, version and parameters: stored with every result the metric produced."""
        return {
            "name": self.info.name,
            "version": self.info.version,
            "reference": self.info.reference,
            "outputs": list(self.info.outputs),
            "output_needs": {k: sorted(self.info.needs(k)) for k in self.info.outputs},
            "higher_is_better": self.info.higher_is_better,
            "sample_rate": self.info.sample_rate,
            "params": self.params,
        }

    @property
    def version_key(self) -> str:
        """Changes whenever the definition or a parameter changes (resume key)."""
        import hashlib
        import json

        blob = json.dumps({"v": self.info.version, "p": self.params}, sort_keys=True, default=str)
        return f"{self.info.version}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"
