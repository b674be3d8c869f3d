"""The Metric interface.

A metric declares what it needs (reference audio? mixture? text?) and what it emits in a
:class:`MetricInfo`; the scorer loads exactly that, at the metric's sample rate, and calls
:meth:`Metric.compute_batch`. Item metrics return one ``{key: value}`` dict per item (a
value may be ``float('inf')``/``nan``; the store keeps such values as null with a reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np


@dataclass(frozen=True)
class MetricInfo:
    name: str
    outputs: tuple[str, ...]
    higher_is_better: bool
    version: str
    reference: str  # the public definition this metric reproduces
    kind: Literal["item", "corpus"] = "item"
    requires_reference: bool = True
    requires_mixture: bool = False  # the item fails without a mixture
    uses_mixture: bool = False  # given the mixture when there is one (e.g. SDRi)
    requires_text: bool = False
    sample_rate: int | None = 16000  # None: the test set's rate
    embedder: str | None = None
    description: str = ""


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
