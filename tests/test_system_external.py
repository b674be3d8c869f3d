"""The `external` system: a model without an hsm-bench class, as a command or a callable."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hsm_bench.cli import main
from hsm_bench.store.jsonl import read_jsonl

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import soundfile as sf
    inp, out, item = sys.argv[1], sys.argv[2], sys.argv[3]
    if item == "tiny-003":
        print("Traceback ...\\nRuntimeError: this model cannot handle tiny-003", file=sys.stderr)
        sys.exit(3)
    if item == "tiny-005":
        sys.exit(0)  # claims success, writes nothing
    if item == "tiny-007":
        time.sleep(30)  # longer than the timeout
    x, sr = sf.read(inp, dtype="float32")
    sf.write(out, x, sr, subtype="FLOAT")
    """
)
BATCH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import soundfile as sf
    for line in open(sys.argv[1]):
        row = json.loads(line)
        x, sr = sf.read(row["input"], dtype="float32")
        sf.write(row["output"], 0.5 * x if row["task"] == "remove" else x, sr, subtype="FLOAT")
    """
)


def _py(script: Path, *placeholders: str) -> str:
    return " ".join([shlex.quote(sys.executable), shlex.quote(str(script)), *placeholders])


@pytest.fixture
def args(tiny_testset, tmp_path):
    return ["--metrics", "sdr", f"testset.root={tiny_testset}", f"paths.runs_dir={tmp_path / 'runs'}",
            "runtime.progress=false"]  # fmt: skip


def _corpus(tmp_path: Path) -> dict:
    return json.loads(next((tmp_path / "runs").rglob("external/*/corpus.json")).read_text())


def test_a_command_that_returns_its_input_gives_sdri_0_and_failures_stay_with_their_item(tmp_path, args, capsys):
    script = tmp_path / "my_sep.py"
    script.write_text(SCRIPT)
    cmd = _py(script, "{input}", "{output}", "{id}")
    status = main(["run", "--system", "external", "--command", cmd, "system.params.timeout_s=2", "runtime.batch_size=1",
                   *args])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 1, err
    assert "3 of 12 items failed separation" in err
    rows = {r["id"]: r for r in read_jsonl(next((tmp_path / "runs").rglob("separate.jsonl")))}
    assert rows["tiny-003"]["error"].startswith("system failed: command exited with status 3: Traceback ...")
    assert rows["tiny-003"]["error"].endswith("RuntimeError: this model cannot handle tiny-003")
    assert rows["tiny-005"]["error"] == "system failed: the command wrote no output for tiny-005 (expected output.wav)"
    assert rows["tiny-007"]["error"] == "system failed: command timed out after 2 s (system.params.timeout_s)"
    corpus = _corpus(tmp_path)
    sdri = corpus["metrics"]["sdri"]
    assert sdri["n"] == 9 and sdri["n_failed"] == 3 and sdri["mean"] == 0.0 and sdri["ci95"] == [0.0, 0.0]
    run = json.loads(next((tmp_path / "runs").rglob("external/*/run.json")).read_text())
    assert run["system"]["params"]["command"] == cmd  # spaces, quotes and braces kept verbatim
    assert str(script) in run["system"]["external"]["files_sha1"]


def test_editing_the_script_starts_a_new_run(tmp_path, args, capsys):
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT)
    cmd = _py(script, "{manifest}") + " # {input_dir} {output_dir}"
    assert main(["run", "--system", "external", "--command", cmd, "runtime.batch_size=12", *args]) == 0
    script.write_text(script.read_text() + "\n# edited\n")
    assert main(["run", "--system", "external", "--command", cmd, "runtime.batch_size=12", *args]) == 0
    capsys.readouterr()
    assert len(list((tmp_path / "runs").rglob("external/*/run.json"))) == 2


def test_a_batch_command_runs_once_per_batch(tmp_path, args, capsys, tiny_testset):
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT)
    cmd = _py(script, "{manifest}") + " # {input_dir} {output_dir}"
    assert main(["run", "--system", "external", "--command", cmd, "runtime.batch_size=5", *args]) == 0
    capsys.readouterr()
    run_dir = next((tmp_path / "runs").rglob("external/*/outputs")).parent
    import soundfile as sf

    for k in (0, 1):  # the tiny set: even items extract, odd remove (the model halves them)
        est, _ = sf.read(run_dir / f"outputs/tiny-00{k}.wav", dtype="float32")
        mix, _ = sf.read(tiny_testset / f"audio/mixture/tiny-00{k}.wav", dtype="float32")
        np.testing.assert_array_equal(est, mix * (0.5 if k else 1.0))


def test_a_callable_and_subtracted_removal(tmp_path, args, capsys, tiny_testset):
    fn = "tests.external_fns:quarter"
    assert main(["run", "--system", "external", f"system.params.callable={fn}", "system.params.removal=subtract",
                 *args]) == 0  # fmt: skip
    capsys.readouterr()
    run_dir = next((tmp_path / "runs").rglob("external/*/outputs")).parent
    run = json.loads((run_dir / "run.json").read_text())
    assert run["system"]["remove"] == "mixture minus extraction (harness)" and run["system"]["external"]["module_sha1"]
    import soundfile as sf

    mix, _ = sf.read(tiny_testset / "audio/mixture/tiny-001.wav", dtype="float32")
    est, _ = sf.read(run_dir / "outputs/tiny-001.wav", dtype="float32")  # a remove item: mixture - mixture / 4
    np.testing.assert_allclose(est, mix - 0.25 * mix, atol=1e-7)


@pytest.mark.parametrize("extra,expected", [
    ([], "system external needs exactly one of system.params.callable=module:function or --command"),
    (["--command", "my_sep {input}"], "a per-item command needs {input} and {output}"),
    (["--command", "my_sep {input} {output} {lang}"], "unknown placeholder(s) lang"),
    (["system.params.callable=tests.external_fns:nothing_here"], "cannot import system.params.callable="),
    (["--command", "x {input} {output}", "system.params.removal=drop"], "choose native or subtract"),
])  # fmt: skip
def test_misconfigured_external_is_one_line(extra, expected, args, capsys, tmp_path):
    status = main(["run", "--system", "external", *extra, *args])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # 200 ten-second items through a subprocess per batch
def test_the_demo_set_through_a_command(tmp_path, capsys):
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT.replace("0.5 * x if", "x if"))
    cmd = _py(script, "{manifest}") + " # {input_dir} {output_dir}"
    assert main(["run", "--system", "external", "--command", cmd, "--metrics", "sdr", "runtime.progress=false",
                 f"paths.runs_dir={tmp_path / 'runs'}"]) == 0  # fmt: skip
    capsys.readouterr()
    sdri = _corpus(tmp_path)["metrics"]["sdri"]
    assert sdri["n"] == 200 and sdri["mean"] == 0.0
