"""The types every system, metric and test set builds on.

Names are imported on first use (PEP 562), so that ``hsm_bench.api.metric`` and
``hsm_bench.api.testset`` load without torch; only ``hsm_bench.api.system`` needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Metric": "metric", "MetricInfo": "metric", "ScoreItem": "metric", "SeparationBatch": "system",
    "System": "system", "ManifestRow": "testset", "TestSet": "testset",
}  # fmt: skip

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'hsm_bench.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hsm_bench.api.{_WHERE[name]}"), name)
