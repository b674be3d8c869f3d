"""What the docs promise about imports: ``import hsm_bench`` loads no model and no optional
dependency, and the weights declarations (the catalogue, the clap/afsim metrics' ``weights_for``)
load without torch, so listing and fetching weights stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("code", [
    "import hsm_bench, hsm_bench.registry, hsm_bench.errors",
    "from hsm_bench import weights; weights._ensure_registered()",
    "from hsm_bench.metrics.clap import CLAPScore; CLAPScore.weights_for(None)",
    "from hsm_bench.metrics.afsim import AFSim; AFSim.weights_for(None)",
    "import hsm_bench.api.metric, hsm_bench.api.testset",
])  # fmt: skip
def test_no_torch_where_none_is_claimed(code):
    loaded = _loaded_after(code)
    assert not loaded & {"torch", "transformers", "librosa"}, code
