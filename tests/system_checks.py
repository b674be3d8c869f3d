"""What the tests of every separation system check the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from hsm_bench.api.system import SeparationBatch, System
from hsm_bench.audio.resample import resample


def batch(x: torch.Tensor, captions: list[str], styles: list[str] | None = None, lengths=None) -> SeparationBatch:
    """A hand-made batch of mixtures ``x [B, C, T]`` at the system's rate, all "extract"."""
    n = len(captions)
    lengths = torch.tensor(lengths or [x.shape[-1]] * n)
    return SeparationBatch(item_ids=[f"i{k}" for k in range(n)], mixture=x, lengths=lengths, instructions=[""] * n,
                           task=["extract"] * n, caption=captions, query_style=styles or ["caption"] * n)  # fmt: skip


def outputs_follow_the_model(run_dir: str | Path, testset: Path, system: System, tol: float) -> None:
    """Each output of a run on ``testset`` (one "extract" and one "remove" item) is the system's
    own extraction at its rate, or the mixture minus it for "remove", brought back to 16 kHz."""
    rows = [json.loads(line) for line in (testset / "manifest.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["extract", "remove"]
    rate = system.sample_rate
    for row in rows:
        mix, sr = sf.read(testset / row["mixture"], dtype="float32")
        out, sr_out = sf.read(Path(run_dir) / "outputs" / f"{row['id']}.wav", dtype="float32")
        assert sr_out == sr == 16000 and out.shape == mix.shape
        mix_sys = resample(mix, 16000, rate)
        with torch.inference_mode():
            ext = system.separate(batch(torch.from_numpy(mix_sys)[None, None], [row["caption"]]))[0, 0].numpy()
        expected = resample(ext if row["task"] == "extract" else mix_sys - ext, rate, 16000)[: len(mix)]
        assert np.abs(out - expected).max() < tol
        assert np.abs(ext).max() > 1e-3  # the model did produce something
