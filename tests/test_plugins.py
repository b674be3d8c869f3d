"""Plugins: a separately installed package adds a system, a metric and a test set through entry
points, without editing hsm-bench; clashes and wrong types are one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hsm_bench.cli import main
from hsm_bench.registry import METRICS, SYSTEMS, TESTSETS, RegistryError
from tests import plugin_pkg


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    return plugin_pkg.install(tmp_path_factory.mktemp("plugin"), plugin_pkg.GOOD)


@pytest.fixture
def with_plugin(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    for reg in (SYSTEMS, METRICS, TESTSETS):
        reg.reset_plugins()
    yield plugin_site
    monkeypatch.undo()
    for reg in (SYSTEMS, METRICS, TESTSETS):
        reg.reset_plugins()


def test_plugin_names_are_listed_and_load(with_plugin, capsys):
    assert {"half_gain", "slow_copy"} <= set(SYSTEMS.names()) and "peak_ratio" in METRICS.names()
    assert SYSTEMS.origin("half_gain") == "hsm-plugin-demo" and SYSTEMS.origin("oracle_irm") == "hsm-bench"
    assert SYSTEMS.get("half_gain").__name__ == "HalfGain"
    assert main(["ls", "systems"]) == 0
    out = capsys.readouterr().out
    assert "half_gain" in out and "(plugin: hsm-plugin-demo)" in out
    assert main(["validate"]) == 0  # plugins need no config file of their own


def test_run_a_plugin_system_metric_and_testset(with_plugin, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["run", "--system", "half_gain", "--testset", "plugin_tones", "--metrics", "peak_ratio,sdr",
            "system.params.gain=0.25", f"paths.runs_dir={runs}", "runtime.progress=false"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    corpus = json.loads(next(runs.rglob("half_gain/*/corpus.json")).read_text())
    assert corpus["n_items"] == 3 and corpus["metrics"]["peak_ratio"]["n"] == 3
    run = json.loads(next(runs.rglob("half_gain/*/run.json")).read_text())
    assert run["system"]["params"] == {"gain": 0.25, "delay_s": 0.0}  # the generated config's defaults + override
    # a misspelt parameter of the plugin is checked against its real signature
    assert main([*args[:-3], "system.params.gian=1", f"paths.runs_dir={runs}"]) == 2
    err = capsys.readouterr().err
    assert "has no parameter 'gian'. Did you mean 'gain'?" in err and err.count("\n") == 1


def test_console_script_sees_the_installed_plugin(plugin_site, tiny_testset, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "hsm_bench.cli", "run", "--system", "half_gain", "--metrics", "sdr",
         f"testset.root={tiny_testset}", f"paths.runs_dir={runs}", "runtime.progress=false"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    corpus = json.loads(next(runs.rglob("half_gain/*/corpus.json")).read_text())
    # half the mixture: SDRi is exactly the SDR of 0.5 x mixture minus that of the mixture
    assert corpus["metrics"]["sdr"]["n"] == 12


@pytest.mark.parametrize(
    "name,target,expected",
    [
        ("oracle_irm", "hsm_plugin_bad:NotASystem",
         "registers system 'oracle_irm' (hsm_plugin_bad:NotASystem), which hsm-bench already provides"),
        ("not_a_system", "hsm_plugin_bad:NotASystem", "is not a subclass of hsm_bench.api.system.System"),
        ("gone", "hsm_plugin_bad.missing:Gone", "cannot load system 'gone' from hsm_plugin_bad.missing:Gone"),
    ],
)  # fmt: skip
def test_bad_plugins_are_one_line_errors(tmp_path, monkeypatch, capsys, name, target, expected):
    site = plugin_pkg.install(tmp_path, plugin_pkg.bad(name, target))
    monkeypatch.syspath_prepend(str(site))
    SYSTEMS.reset_plugins()
    try:
        assert main(["run", "--system", name, "runtime.progress=false", f"paths.runs_dir={tmp_path / 'runs'}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hsm-bench run: error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert expected in err and "hsm-plugin-bad" in err
        assert not (tmp_path / "runs").exists()
    finally:
        monkeypatch.undo()
        SYSTEMS.reset_plugins()


def test_two_packages_with_one_name_clash(tmp_path, plugin_site, monkeypatch):
    other = plugin_pkg.install(tmp_path, plugin_pkg.bad("half_gain", "hsm_plugin_bad:NotASystem"))
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.syspath_prepend(str(other))
    SYSTEMS.reset_plugins()
    try:
        with pytest.raises(RegistryError, match="registered by two packages"):
            SYSTEMS.names()
    finally:
        monkeypatch.undo()
        SYSTEMS.reset_plugins()
