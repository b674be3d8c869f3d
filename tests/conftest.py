"""Shared fixtures: an isolated HSM_BENCH_HOME, a tiny synthetic test set, config composition."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SR = 16000


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_collection_modifyitems(config, items):
    # slow end-to-end tests are deselected by default so `python -m pytest -q` stays quick;
    # `.ci/run` passes --run-slow
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """torch on one thread: tiny models only pay OpenMP's overhead, and on a busy machine a lot of it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Tests never touch the user's ~/.cache/hsm-bench (unless a test sets its own home)."""
    home = tmp_path_factory.getbasetemp() / "hsm-home"
    monkeypatch.setenv("HSM_BENCH_HOME", str(home))
    # a real Hugging Face cache on the machine must not make a "missing weights" test pass
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _tone(f0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 5))
    return (0.5 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))).astype(np.float32)


def _noise(n: int, rng: np.random.Generator, colour: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    x = np.fft.irfft(spec / f**colour, n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def build_tiny_testset(root: Path, n_items: int = 12, seconds: float = 2.0, seed: int = 0) -> Path:
    """A small set in the contract layout: harmonic tones against coloured noises."""
    from testsets.base import ItemSpec, TestSetWriter

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    writer = TestSetWriter(root)
    for k in range(n_items):
        target = _tone(float(rng.uniform(150, 900)), n, rng) + 1e-3 * rng.standard_normal(n).astype(np.float32)
        interferer = _noise(n, rng, colour=float(rng.uniform(0.0, 1.0)))
        task = "extract" if k % 2 == 0 else "remove"
        caption = "a harmonic tone hums" if task == "extract" else "noise hisses"
        writer.add(
            ItemSpec(
                id=f"tiny-{k:03d}",
                task=task,
                caption=caption,
                instruction=f"{task.capitalize()} this sound: {caption}.",
                target=target,
                interferer=interferer,
                snr_db=float(rng.uniform(-10, 10)),
                target_captions=["a harmonic tone hums", "a steady musical tone"],
                target_labels=["tone"],
                interferer_labels=["noise"],
                source={"dataset": "tiny"},
            )
        )
    return writer.finish({"name": "tiny", "version": "v1", "builder": "tests", "seed": seed})


@pytest.fixture(scope="session")
def tiny_testset(tmp_path_factory) -> Path:
    return build_tiny_testset(tmp_path_factory.mktemp("tiny") / "tiny" / "v1")


@pytest.fixture
def compose_config():
    """Compose the real Hydra config tree with overrides (as `hsm-bench run` would)."""
    from hydra import compose, initialize_config_dir

    from hsm_bench.paths import CONF_DIR

    def _compose(*overrides: str):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_afsim(compose_config, tiny_testset, tmp_path):
    """``run_afsim(system, *overrides)``: `hsm-bench run` with only AFSim on the tiny test set
    (one runs and cache folder per test, so a second system reuses the reference features)."""
    from hsm_bench.pipeline.run import run_pipeline

    def _run(system: str, *overrides: str):
        return run_pipeline(compose_config(
            f"system={system}", f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.cache_dir={tmp_path / 'cache'}", "runtime.progress=false", "metrics.names=[afsim]", *overrides,
        ))  # fmt: skip

    return _run
