"""Audio Flamingo 3 embedder and the AFSim metric, on a tiny random-weight AF3 folder built here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from tests.af3_tiny import build_folder

pytest.importorskip("transformers")
W = "audio-flamingo-3-hf"


@pytest.fixture(scope="module")
def af3_folder(tmp_path_factory):
    return build_folder(tmp_path_factory.mktemp("af3") / "audio-flamingo-3-hf")


def _embedder(folder, **params):
    from hsm_bench.embedders.audio_flamingo import AudioFlamingo3

    e = AudioFlamingo3(**params)
    with weights.overrides({W: folder}):
        e.load()
    return e


def _clips(n=3, seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return [(0.3 * np.sin(2 * np.pi * (220 + 150 * k) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
            for k in range(n)]  # fmt: skip


def test_loads_the_saved_folder_with_identical_weights_and_outputs(af3_folder):
    """save_pretrained layout in, the same tensors and the same embeddings out."""
    import torch
    from safetensors.torch import load_file

    from hsm_bench.embedders.audio_flamingo import AudioFlamingo3
    from tests.af3_tiny import build_config, build_processor

    loaded = _embedder(af3_folder)
    saved = load_file(str(af3_folder / "model.safetensors"))
    # the serialized layout of nvidia/audio-flamingo-3-hf: audio_tower.*, multi_modal_projector.*,
    # language_model.model.* (Qwen2 body) and language_model.lm_head.weight, which AFSim drops
    assert {k.split(".")[0] for k in saved} == {"audio_tower", "multi_modal_projector", "language_model"}
    assert "language_model.lm_head.weight" in saved and "language_model.model.norm.weight" in saved
    expected = {k.replace("language_model.model.", "language_model.", 1): v for k, v in saved.items()
                if k != "language_model.lm_head.weight"}  # fmt: skip
    mine = dict(loaded.model.state_dict())
    assert set(mine) == set(expected)
    assert all(torch.equal(mine[k], expected[k]) for k in mine)

    fresh = AudioFlamingo3()
    processor = build_processor()
    fresh.init_random(build_config(processor), processor, seed=0)  # the seed build_folder used
    x = _clips(2)
    a, b = loaded.embed_audio(x), fresh.embed_audio(x)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa["embedding"], fb["embedding"])
    assert loaded.checkpoint_sha256 and len(loaded.checkpoint_sha256) == 64
    assert loaded.info()["hidden_size"] == 32


def _hand_pooled(e, clip, pooling):
    """Penultimate block output via a forward hook, positions found from the token strings."""
    import torch

    from hsm_bench.embedders.audio_flamingo import peak_normalize

    captured = {}
    layer = e.model.language_model.layers[-2]
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    try:
        inputs = e.processor(text=[e.prompt_text()], audio=[peak_normalize(clip)], sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            e.model(**{k: inputs[k] for k in ("input_ids", "attention_mask", "input_features", "input_features_mask")})
    finally:
        handle.remove()
    tokens = e.processor.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    first = tokens.index("<sound>")
    if pooling == "all":
        keep = list(range(len(tokens)))
    elif pooling == "audio":
        keep = [i for i, t in enumerate(tokens) if t == "<sound>"]
    else:
        keep = list(range(first, len(tokens)))
    h = captured["h"][0].double().numpy()
    return h[keep].mean(axis=0), len(keep), len(tokens)


@pytest.mark.parametrize("pooling", ["post_audio", "all", "audio"])
def test_pooled_penultimate_layer_matches_a_hook_on_the_decoder(af3_folder, pooling):
    e = _embedder(af3_folder, pooling=pooling)
    clip = _clips(1, seconds=10.0)[0]
    feats = e.embed_audio([clip])[0]
    ref, n, n_tokens = _hand_pooled(e, clip, pooling)
    np.testing.assert_allclose(feats["embedding"], ref, rtol=0, atol=1e-12)
    assert int(feats["n_pooled"][0]) == n
    # 10 s at 16 kHz: 1000 mel frames -> 500 after the stride-2 conv -> 250 after pooling
    assert {"audio": 250, "post_audio": 250 + 3, "all": n_tokens}[pooling] == n


def test_the_layer_parameter_picks_another_block(af3_folder):
    clip = _clips(1)[0]
    a = _embedder(af3_folder, layer=-2).embed_audio([clip])[0]["embedding"]
    b = _embedder(af3_folder, layer=-1).embed_audio([clip])[0]["embedding"]
    assert np.abs(a - b).max() > 1e-4


def test_afsim_values_identity_gain_and_determinism(af3_folder):
    from hsm_bench.metrics.afsim import AFSim

    e = _embedder(af3_folder)
    m = AFSim(backend="audio-flamingo-3")
    m.use_embedder(e)
    x, y, _ = _clips(3)
    items = [
        ScoreItem(id="same", estimate=x, reference=x.copy(), sample_rate=16000),
        ScoreItem(id="gain", estimate=0.25 * x, reference=x, sample_rate=16000),
        ScoreItem(id="other", estimate=y, reference=x, sample_rate=16000),
    ]
    first = m.compute_batch(items)
    assert abs(first[0]["afsim"] - 1.0) < 1e-12
    assert abs(first[1]["afsim"] - 1.0) < 1e-12  # peak normalisation: gain-invariant
    assert first[2]["afsim"] < 1.0 - 1e-6
    ex, ey = (f["embedding"] for f in e.embed_audio([x, y]))
    expected = float(ex @ ey / np.linalg.norm(ex) / np.linalg.norm(ey))
    assert abs(first[2]["afsim"] - expected) < 1e-12
    # batch_size 1: each clip runs alone, so another order repeats the same computations
    again = m.compute_batch(list(reversed(items)))[::-1]
    assert [r["afsim"] for r in again] == [r["afsim"] for r in first]


def test_an_embedding_does_not_depend_on_its_batch(af3_folder):
    e = _embedder(af3_folder, batch_size=2)
    x, y, z = _clips(3)
    a = e.embed_audio([x, y])[0]["embedding"]
    # same batch shape and row, other companions: the same arithmetic on the same numbers
    np.testing.assert_array_equal(e.embed_audio([x, z])[0]["embedding"], a)
    np.testing.assert_array_equal(e.embed_audio([x])[0]["embedding"], a)  # last batch filled with copies
    # another row: threads may split the batch rows differently, so float32 sums can round
    # differently (a few ulps); 1e-5 of the largest component leaves ample room
    b = e.embed_audio([z, x])[1]["embedding"]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_afsim_item_errors():
    from hsm_bench.metrics.afsim import AFSim

    m = AFSim(backend="audio-flamingo-3")
    m.use_embedder(type("E", (), {"sample_rate": 16000})())
    x = _clips(1)[0]
    bad = x.copy()
    bad[5] = np.nan
    out = m.compute_batch([
        ScoreItem(id="noref", estimate=x, sample_rate=16000),
        ScoreItem(id="rate", estimate=x, reference=x, sample_rate=8000),
        ScoreItem(id="nan", estimate=bad, reference=x, sample_rate=16000),
    ])  # fmt: skip
    assert "reference" in str(out[0]) and "16000 Hz" in str(out[1]) and "NaN" in str(out[2])


def test_wrong_checkpoints_are_rejected(tmp_path, af3_folder):
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2Model

    other = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0)).save_pretrained(str(other))
    with pytest.raises(weights.WeightsMismatchError, match="not Audio Flamingo 3"):
        _embedder(other)

    broken = tmp_path / "broken"
    shutil.copytree(af3_folder, broken)
    sd = load_file(str(broken / "model.safetensors"))
    sd.pop(next(k for k in sd if "language_model.model.layers.1." in k))
    save_file(sd, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(weights.WeightsMismatchError, match="missing_keys"):
        _embedder(broken)


def test_missing_weights_name_the_download_command(tmp_path, monkeypatch):
    from hsm_bench.embedders.audio_flamingo import AudioFlamingo3

    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(weights.WeightsMissingError, match=f"hsm-bench download-weights {W}"):
        AudioFlamingo3().load()


def test_af2_refuses_clearly_and_backend_names():
    from hsm_bench.metrics.afsim import AFSim

    with pytest.raises(NotImplementedError, match="does not load this model.*'audio-flamingo-1'"):
        AFSim(backend="audio-flamingo-2").setup()
    with pytest.raises(ValueError, match="did you mean 'audio-flamingo-3'"):
        AFSim(backend="audio-flamingo3")
    assert AFSim.weights_for({"backend": "audio-flamingo-3"}) == [W] and W in AFSim.all_weights()
    assert AFSim.weights_for(None) == ["audio-flamingo-1-foundation", "opt-iml-max-1_3b", "msclap-clapcap-2023"]


def test_afsim_through_hsm_bench_run(run_afsim, af3_folder):
    """The run pipeline with a local AF3 folder; reference embeddings come from the cache on a second system."""

    def run(system):
        return run_afsim(system, "+metrics.params.afsim.backend=audio-flamingo-3", f"+weights.{W}={af3_folder}")

    target = run("oracle_target")
    afs = target["corpus"]["metrics"]["afsim"]
    assert afs["n"] == 12 and afs["n_failed"] == 0 and abs(afs["mean"] - 1.0) < 1e-9
    meta = json.loads(open(f"{target['run_dir']}/run.json").read())["metrics"]["afsim"]
    assert meta["embedder"]["params"]["pooling"] == "post_audio" and meta["embedder"]["params"]["layer"] == -2
    assert meta["embedder"]["checkpoint_sha256"] == weights.path_sha256(af3_folder)
    mixture = run("oracle_mixture")["corpus"]["metrics"]["afsim"]
    assert mixture["n"] == 12 and mixture["mean"] < 1.0 - 1e-6
