"""A tiny third-party plugin package, written and installed (pip --target, offline) by the tests.

It adds through entry points, without touching hsm-bench: a system (``half_gain``), a slow
system for interrupt tests (``slow_copy``), a metric (``peak_ratio``) and a test-set builder
(``plugin_tones``). :func:`bad` makes a second package that registers one system name badly
(a clash, a wrong type, a missing module), for the error paths.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def pyproject(name: str, package: str, entry_points: dict[str, dict[str, str]]) -> str:
    """A setuptools pyproject.toml declaring ``entry_points`` ({group: {name: "module:attr"}})."""
    groups = "".join(
        f'\n[project.entry-points."{group}"]\n' + "".join(f'{k} = "{v}"\n' for k, v in eps.items())
        for group, eps in entry_points.items()
    )
    return (f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "0.0.1"\n{groups}\n[tool.setuptools]\npackages = ["{package}"]\n')  # fmt: skip


GOOD = {
    "pyproject.toml": pyproject("hsm-plugin-demo", "hsm_plugin_demo", {
        "hsm_bench.systems": {"half_gain": "hsm_plugin_demo:HalfGain", "slow_copy": "hsm_plugin_demo:SlowCopy"},
        "hsm_bench.metrics": {"peak_ratio": "hsm_plugin_demo:PeakRatio"},
        "hsm_bench.testsets": {"plugin_tones": "hsm_plugin_demo:ToneBuilder"},
    }),  # fmt: skip
    "hsm_plugin_demo/__init__.py": '''
        import time

        import numpy as np

        from hsm_bench.api.metric import Metric, MetricInfo
        from hsm_bench.api.system import System
        from testsets.base import Builder, ItemSpec, TestSetWriter


        class HalfGain(System):
            name = "half_gain"

            def __init__(self, gain: float = 0.5, delay_s: float = 0.0):
                super().__init__(gain=gain, delay_s=delay_s)
                self.gain = gain

            def separate(self, batch):
                return batch.mixture * self.gain


        class SlowCopy(System):
            name = "slow_copy"

            def __init__(self, seconds: float = 0.3):
                super().__init__(seconds=seconds)
                self.seconds = seconds

            def separate(self, batch):
                time.sleep(self.seconds)
                return batch.mixture.clone()


        class PeakRatio(Metric):
            info = MetricInfo(name="peak_ratio", outputs=("peak_ratio",), higher_is_better=True, version="1",
                              reference="a plugin's own metric", sample_rate=None)

            def __init__(self, floor: float = 1e-9):
                super().__init__(floor=floor)
                self.floor = floor

            def compute(self, item):
                return {"peak_ratio": float(np.abs(item.estimate).max() / max(np.abs(item.reference).max(), self.floor))}


        class ToneBuilder(Builder):
            name = "plugin_tones"
            default_n_items = 3

            def build(self, out_dir, progress=True):
                rng = np.random.default_rng(self.seed)
                t = np.arange(16000) / 16000
                writer = TestSetWriter(out_dir)
                for k in range(self.n_items):
                    writer.add(ItemSpec(
                        id=f"tone-{k}", task="extract", caption="a tone", instruction="Extract the tone.",
                        target=(0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32),
                        interferer=(0.1 * rng.standard_normal(16000)).astype(np.float32), snr_db=5.0,
                        target_captions=["a tone"], target_labels=["tone"], interferer_labels=["noise"],
                        source={"dataset": "plugin"},
                    ))
                card = self.base_card()
                return writer.finish(card)
    ''',
}

BAD_MODULE = {
    "hsm_plugin_bad/__init__.py": '''
        class NotASystem:
            name = "not_a_system"
    ''',
}


def bad(name: str, target: str) -> dict[str, str]:
    """A package registering the system ``name`` as ``target`` (a clash, a wrong type, a missing module)."""
    return {"pyproject.toml": pyproject("hsm-plugin-bad", "hsm_plugin_bad", {"hsm_bench.systems": {name: target}}),
            **BAD_MODULE}  # fmt: skip


def install(root: Path, files: dict[str, str]) -> Path:
    """Write the package under ``root/src`` and pip-install it into ``root/site``; returns the site folder."""
    src, site = root / "src", root / "site"
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return site
