"""The published numbers shipped with hsm-bench: every row parses, names its source and a command."""

from __future__ import annotations

import csv
from pathlib import Path

import reports

PUBLISHED = Path(reports.__file__).parent / "published"


def test_baselines_own_numbers_are_complete_rows():
    with open(PUBLISHED / "baselines_own_lists.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    from hsm_bench.registry import SYSTEMS, resolve_metric_request

    for row in rows:
        SYSTEMS.check(row["system"])  # a system hsm-bench runs
        assert resolve_metric_request(row["metric"])[0] == ["sdr"]  # an output of the sdr metric
        float(row["value"])
        assert row["source"] and row["reproduce"] and int(row["sample_rate"]) in (16000, 32000)
    by = {(r["system"], r["evaluation_list"].split(" (")[0], r["metric"]): float(r["value"]) for r in rows}
    assert by[("audiosep", "AudioSep AudioCaps eval list", "sdri")] == 8.22
    assert by[("audiosep_dcase16k", "DCASE 2024 task 9 synthetic validation", "sdri")] == 5.673
