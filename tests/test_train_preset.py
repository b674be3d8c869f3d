"""The demo training preset (training/preset.py) at micro scale: every stage runs in order (1 step each,
tiny widths, short clips of one demo family) into DIR/<stage>/, the final float32 and float16 checkpoints
and the card are written, the float16 checkpoint loads and separates, a second run in another folder gives
the same weights digest, and a rerun skips the finished stages. The preset's real architecture is checked
for the 15-MB budget from its parameter count. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from training.preset import VARIANT_STAGES

TINY = {"dim": 32, "depth": 1, "heads": 4, "ffn": 64}
MICRO = {
    "arch": {"audiomae": {"embed_dim": 32, "depth": 1, "num_heads": 4},
             "qaudio": {"hidden": 32, "layers": 1, "heads": 4, "ffn": 64, "proj_dim": 16},
             "global": TINY, "local": TINY, "acoustic": TINY,
             "codec": {"kind": "tfcodec", "arch": {"channels": [4, 4, 8, 8], "tcm_channels": 16, "latent_dim": 16,
                                                   "n_codebooks": 4, "codebook_size": 32}}},
    "data": {"pool_args": {"variants": 1, "families": ["procedural"]}, "seconds": 3.0},
    "text": {"d_model": 32, "layers": 1, "heads": 4, "d_ff": 64},
}  # fmt: skip
SCALE = 1e-4  # every stage: max(1, round(steps * 1e-4)) = 1 step


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(out: Path, logs: list | None = None) -> Path:
    from training.preset import run_preset

    return run_preset("hsm_tss", out, steps_scale=SCALE, threads=1, progress=False,
                      log=(logs.append if logs is not None else lambda _: None), **MICRO)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preset")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(root / "a")
        _run(root / "b")
    finally:
        torch.set_num_threads(n)
    return root


@pytest.mark.slow
def test_preset_trains_every_stage_in_order_and_writes_the_card(runs):
    from hsm_bench.hashing import sha256_file
    from systems.hsm_tss.checkpoint import read_config

    out = runs / "a"
    stages = VARIANT_STAGES["hierarchical"]
    assert stages == ("codec", "mae", "qaudio", "global", "local", "joint", "decoder")
    for k, stage in enumerate(stages):
        info = read_config(out / stage / "model")["info"]
        assert info["stage"] == stage and info["steps"] == 1 and info["data"]["kind"] == "mixtures"
        assert info["data"]["pool"] == "demo"
        # each stage started from the previous one's model (the first from the random init)
        assert Path(info["init"]["folder"]) == (out / stages[k - 1] / "model" if k else out / "init")
    card = json.loads((out / "card.json").read_text())
    assert [s["stage"] for s in card["stages"]] == list(stages)
    assert all(s["steps"] == 1 and s["seconds"] > 0 for s in card["stages"])
    assert card["seed"] == 0 and card["threads"] == 1 and card["torch"] == torch.__version__ and card["cpu"]
    assert card["data"]["pool"] == "demo" and set(card["data"]["held_out"]["by_seed"]) == {"instrument", "procedural"}
    fp16, fp32 = read_config(out / "model-fp16"), read_config(out / "model")
    assert fp16["dtype"] == "float16" and "dtype" not in fp32
    assert card["model_fp16"]["weights_sha256"] == sha256_file(out / "model-fp16" / "model.safetensors")
    assert [s["stage"] for s in fp32["info"]["stages"]] == list(stages)
    for folder in ("model", "model-fp16"):
        assert (out / folder / "text" / "config.json").is_file()


@pytest.mark.slow
def test_fp16_checkpoint_is_half_precision_loads_in_float32_and_separates(runs):
    from safetensors.torch import load_file

    from hsm_bench.api.system import SeparationBatch
    from systems.hsm_tss.checkpoint import load_checkpoint
    from systems.hsm_tss.system import HsmTss
    from systems.hsm_tss.text import TextEncoder

    out = runs / "a"
    stored = load_file(str(out / "model-fp16" / "model.safetensors"))
    full = load_file(str(out / "model" / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    model, config = load_checkpoint(out / "model-fp16", variant="hierarchical")
    state = model.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    for key, v in full.items():  # float16 rounding: relative 2^-11 of each value (plus its subnormal floor)
        if v.is_floating_point():
            assert torch.allclose(state[key], v, rtol=2**-11, atol=6e-8), key
    system = HsmTss(parser="rule")
    system._use(model, config, TextEncoder.from_folder(out / "model-fp16" / "text"), "cpu")
    n = 16000
    g = torch.Generator().manual_seed(0)
    batch = SeparationBatch(item_ids=["a", "b"], mixture=torch.randn(2, 1, n, generator=g) * 0.1,
                            lengths=torch.tensor([n, n]), instructions=["Extract the sound of rain.",
                                                                        "Remove this sound: a siren wails."],
                            task=["extract", "remove"], caption=["rain", "a siren wails"])  # fmt: skip
    wave = system.separate(batch)
    assert wave.shape == (2, 1, n) and torch.isfinite(wave).all()


@pytest.mark.slow
def test_rerun_in_another_folder_gives_the_same_weights(runs):
    a = json.loads((runs / "a" / "card.json").read_text())
    b = json.loads((runs / "b" / "card.json").read_text())
    assert a["model_fp16"]["weights_sha256"] == b["model_fp16"]["weights_sha256"]
    assert a["model"]["weights_sha256"] == b["model"]["weights_sha256"]


@pytest.mark.slow
def test_rerun_in_the_same_folder_skips_finished_stages(runs):
    out = runs / "a"
    before = {s: (out / s / "model" / "config.json").stat().st_mtime_ns for s in VARIANT_STAGES["hierarchical"]}
    logs: list[str] = []
    _run(out, logs)
    after = {s: (out / s / "model" / "config.json").stat().st_mtime_ns for s in VARIANT_STAGES["hierarchical"]}
    assert before == after  # no stage wrote its model again
    assert sum("skipped" in line for line in logs) == len(VARIANT_STAGES["hierarchical"])


def test_rerun_with_other_settings_is_refused(tmp_path):
    from hsm_bench.errors import ConfigError
    from training.preset import plan, run_preset

    (tmp_path / "preset.json").write_text(json.dumps(plan(steps_scale=0.5)))
    with pytest.raises(ConfigError, match="other settings"):
        run_preset("hsm_tss", tmp_path, steps_scale=1.0)


def test_real_preset_fp16_checkpoint_fits_15_mb():
    """Parameter count of the preset's real architecture (vocabulary: the demo words) x 2 bytes."""
    from systems.hsm_tss.model import HsmTssModel, architecture
    from training.preset import DEMO

    text = DEMO["text"]
    vocab = 3 + 56 + 6 + 500  # an upper bound: specials, letters/digits/punctuation, built-in and demo words
    for variant in ("hierarchical", "single"):
        sections = {k: v for k, v in DEMO["architecture"].items() if variant == "hierarchical" or k not in ("qaudio", "global")}
        model = HsmTssModel(architecture(variant, text={"d_model": text["d_model"], "vocab_size": vocab}, **sections))
        n = sum(v.numel() for v in model.state_dict().values())
        assert n * 2 <= 15e6, (variant, n)


def test_demo_words_cover_the_demo_captions_and_templates():
    from testsets.instructions import TEMPLATES
    from training.preset import demo_words

    words = set(demo_words())
    for w in ("siren", "wails", "meows", "accordion", "Extract", "extract", "Keep", "Take", "rid", "extraction",
              "removal", "'", ":"):  # fmt: skip
        assert w in words, w
    assert all(t.split()[0] in words for group in TEMPLATES.values() for t in group)


@pytest.mark.parametrize("args,words", [
    (["hsm_tss", "preset=demo"], "out=DIR"),
    (["hsm_tss", "preset=demo", "out=x", "budget=3"], "budget_minutes"),
    (["hsm_tss", "preset=demo", "out=x", "stage=local"], "stage="),
    (["hsm_tss", "preset=demo", "out=x", "seed=one"], "whole number"),
    (["lass_net", "preset=demo", "out=x"], "cannot train"),
])  # fmt: skip
def test_cli_usage_errors_are_one_line(args, words, capsys):
    from hsm_bench.cli import main

    status = main(["train", *args])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and words in err, err
