"""The types every system, metric and test set builds on."""

from hsm_bench.api.metric import Metric, MetricInfo, ScoreItem
from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.api.testset import ManifestRow, TestSet

__all__ = ["Metric", "MetricInfo", "ScoreItem", "SeparationBatch", "System", "ManifestRow", "TestSet"]
