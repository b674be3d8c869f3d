"""Audio Flamingo 1 (the paper's 2048-d AFSim model) on tiny random weights built in tests/af1_tiny.py.

The reference embedding here is computed independently of hsm-bench's Flamingo modules:
the audio transformer and the gated cross-attention are written out below as plain tensor
algebra on the checkpoint's tensors (looked up by their official names), and the LM is
transformers' own ``OPTForCausalLM`` with the cross-attention applied by forward pre-hooks;
``hidden_states[-2]`` comes from transformers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsm_bench import weights
from hsm_bench.api.metric import ScoreItem
from tests import af1_tiny

pytest.importorskip("transformers")
SR = 16000  # what the embedder takes; AF1 works at 44.1 kHz
PROMPT = "</s>the task is audio captioning. <audio>describe the sound in a sentence.\nanswer:<SEP>"


@pytest.fixture(scope="module")
def af1(tmp_path_factory):
    return af1_tiny.build_all(tmp_path_factory.mktemp("af1"))


def _embedder(paths, **params):
    from hsm_bench.embedders.audio_flamingo1 import AudioFlamingo1

    e = AudioFlamingo1(arch=af1_tiny.TINY_ARCH, **params)
    with weights.overrides(paths):
        e.load()
    return e


def _clip(seconds, seed=0, f=330.0, sr=SR):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.4 * np.sin(2 * np.pi * f * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def _raw(path):
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
    return {k.removeprefix("module."): v.double() for k, v in sd.items()}


# -- audio front end, derived by hand ---------------------------------------------------------
def test_window_geometry_by_hand():
    from hsm_bench.embedders.audio_flamingo1 import af1_windows, window_count

    # 7-s windows every 1.75 s: 308700 and 77175 samples at 44.1 kHz; 16 windows span 33.25 s
    assert window_count(1000) == (1, 308700)
    assert window_count(308700) == (1, 308700)
    assert window_count(308701) == (2, 308700 + 77175)
    assert window_count(441000) == (3, 308700 + 2 * 77175)  # 10 s: 1 + ceil(3 / 1.75)
    assert window_count(40 * 44100) == (16, 1466325)
    x = _clip(10.0, sr=44100)
    w = af1_windows(x, 44100)
    assert w.shape == (3, 308700) and w.dtype == np.float32
    peak = np.abs(x.astype(np.float64)).max()
    q = lambda v: np.trunc(np.clip(v / peak, -1, 1) * 32767) / 32767  # noqa: E731
    for i, start in enumerate((0, 77175, 154350)):
        np.testing.assert_allclose(w[i, :1000], q(x[start : start + 1000].astype(np.float64)), atol=1e-7)
    assert not w[2, 441000 - 154350 :].any()  # zero padding after the clip's end
    assert af1_windows(_clip(60.0, sr=44100), 44100).shape == (16, 308700)  # read at most 33.25 s
    assert af1_windows(_clip(60.0)).shape == (16, 308700)  # 16 kHz in: 532000 samples -> 1466325


def test_16khz_input_is_resampled_like_librosa():
    librosa = pytest.importorskip("librosa")  # its first resample call loads librosa.core: ~2 s
    from hsm_bench.embedders.audio_flamingo1 import af1_load

    x = _clip(1.5, seed=7)[:16003]  # 44108.27 output samples: librosa's length rule rounds up
    expected = librosa.resample(x.astype(np.float64), orig_sr=16000, target_sr=44100)  # AF1's call, default soxr_hq
    expected = expected / np.abs(expected).max()
    got = af1_load(x, 16000)
    assert got.shape == (int(np.ceil(x.size * 44100 / 16000)),)
    np.testing.assert_array_equal(got, expected)


def test_peak_normalisation_and_int16_by_hand():
    from hsm_bench.embedders.audio_flamingo1 import af1_peak_normalize, int16_round_trip

    np.testing.assert_allclose(af1_peak_normalize(np.array([0.5, -0.25, 0.1])), [1.0, -0.5, 0.2])
    np.testing.assert_allclose(af1_peak_normalize(np.array([-0.8, 0.4])), [-1.0, 0.5])
    np.testing.assert_allclose(af1_peak_normalize(np.array([0.0, 0.5, 0.25])), [-1.0, 1.0, 0.0])  # no negative sample
    assert not af1_peak_normalize(np.zeros(4)).any()
    np.testing.assert_array_equal(int16_round_trip(np.array([0.5, -0.5, 2.0, 1e-5])),
                                  [16383 / 32767, -16383 / 32767, 1.0, 0.0])  # fmt: skip


def test_media_mask_by_hand():
    import torch

    from hsm_bench.embedders.flamingo import media_attention_mask

    # text: x <audio> y <audio> z; 2 windows per audio, 4 windows, the last one padding
    locations = torch.tensor([[0, 1, 0, 1, 0]], dtype=torch.bool)
    windows = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    expected = [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    assert media_attention_mask(locations, windows, 2)[0].int().tolist() == expected


# -- loading -------------------------------------------------------------------------------------
def test_prompt_and_tokens(af1):
    e = _embedder(af1)
    assert e.prompt_text() == PROMPT
    tok = e.tokenizer
    assert e.input_ids.tolist() == tok(PROMPT)["input_ids"] and e.input_ids[:2].tolist() == [2, 2]  # BOS twice, as AF1
    assert e.audio_token_id == tok.encode("<audio>")[-1] and len(tok) == 4 + len(set(af1_tiny.WORDS)) + 3


def test_loads_the_official_layout(af1):
    import torch
    from safetensors.torch import load_file

    e = _embedder(af1)
    ck = {k: v.float() for k, v in _raw(af1["audio-flamingo-1-foundation"]).items()}
    mine = e.model.state_dict()
    for k in af1_tiny.foundation_keys(3, 32, len(e.tokenizer)):
        assert torch.equal(mine[k], ck[k]), k
    lm_keys = [k for k in ck if ".decoder_layer." in k]
    assert lm_keys and all(torch.equal(mine[k], ck[k]) for k in lm_keys)
    base = load_file(str(af1["opt-iml-max-1_3b"] / "model.safetensors"))
    # LM tensors the checkpoint lacks come from the OPT folder, as the official non-strict load does
    assert torch.equal(mine["lang_encoder.model.decoder.embed_positions.weight"], base["model.decoder.embed_positions.weight"])
    assert e.lm_keys_from_base == 3  # embed_positions + final_layer_norm weight and bias
    clap = torch.load(af1["msclap-clapcap-2023"], weights_only=True)["model"]
    for k, v in e.clap.state_dict().items():
        assert torch.equal(v, clap["clap." + k]), k
    assert len(e.checkpoint_sha256) == 64 and e.info()["hidden_size"] == 32 and e.info()["af_version"] == "1"


def test_checkpoint_without_lm_weights_takes_them_from_the_opt_folder(af1, tmp_path):
    import torch
    from safetensors.torch import load_file

    paths = {**af1, "audio-flamingo-1-foundation": af1_tiny.foundation_checkpoint(
        tmp_path / "foundation.pt", af1["opt-iml-max-1_3b"], seed=5, with_lm=False, ddp=False)}  # fmt: skip
    e = _embedder(paths)
    base = load_file(str(af1["opt-iml-max-1_3b"] / "model.safetensors"))
    got = e.model.state_dict()["lang_encoder.model.decoder.layers.1.decoder_layer.fc1.weight"]
    assert torch.equal(got, base["model.decoder.layers.1.fc1.weight"])
    assert e.lm_keys_from_base == 3 + 3 * 16  # 16 tensors per OPT decoder layer


def test_duplicate_module_lists_are_accepted(af1, tmp_path):
    """Unfiltered official state dicts also hold lang_encoder.old_decoder_blocks.* and
    lang_encoder.gated_cross_attn_layers.* (the same tensors under a second name)."""
    import torch

    sd = torch.load(af1["audio-flamingo-1-foundation"], weights_only=True)["model_state_dict"]
    extra = {}
    for k, v in sd.items():
        if ".decoder.layers." in k:
            i, rest = k.split(".decoder.layers.")[1].split(".", 1)
            part, tail = rest.split(".", 1)
            name = "old_decoder_blocks" if part == "decoder_layer" else "gated_cross_attn_layers"
            extra[f"module.lang_encoder.{name}.{i}.{tail}"] = v
    torch.save({"model_state_dict": {**sd, **extra}}, tmp_path / "full.pt")
    a = _embedder(af1).embed_audio([_clip(2.0)])[0]["embedding"]
    b = _embedder({**af1, "audio-flamingo-1-foundation": tmp_path / "full.pt"}).embed_audio([_clip(2.0)])[0]["embedding"]
    np.testing.assert_array_equal(a, b)


# -- the independent reference ----------------------------------------------------------------
def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / (var + eps).sqrt() * w + b


def _heads(x, h):
    b, n, d = x.shape
    return x.reshape(b, n, h, d // h).transpose(1, 2)


def _merge(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _ref_audio_transformer(sd, x, arch):
    p = "audio_transformer."
    d = x.shape[-1]
    x = x * d**0.5 + sd[p + "position_enc.pos_table"][:, : x.shape[1]]
    x = _ln(x, sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"], 1e-6)
    for j in range(arch["n_layers"]):
        q = f"{p}layer_stack.{j}."
        qh, kh, vh = (_heads(x @ sd[q + f"slf_attn.{w}.weight"].T, arch["n_head"]) for w in ("w_qs", "w_ks", "w_vs"))
        att = ((qh @ kh.transpose(-1, -2)) / (d // arch["n_head"]) ** 0.5).softmax(-1)
        x = _ln(_merge(att @ vh) @ sd[q + "slf_attn.fc.weight"].T + x, sd[q + "slf_attn.layer_norm.weight"],
                sd[q + "slf_attn.layer_norm.bias"], 1e-6)  # fmt: skip
        f = (x @ sd[q + "pos_ffn.w_1.weight"].T + sd[q + "pos_ffn.w_1.bias"]).relu()
        x = _ln(f @ sd[q + "pos_ffn.w_2.weight"].T + sd[q + "pos_ffn.w_2.bias"] + x, sd[q + "pos_ffn.layer_norm.weight"],
                sd[q + "pos_ffn.layer_norm.bias"], 1e-6)  # fmt: skip
    return x


def _ref_xattn(sd, i, x, media, real, arch):
    """One <audio> token in the prompt: every text position attends to every real window."""
    import torch

    p = f"lang_encoder.model.decoder.layers.{i}.gated_cross_attn_layer."
    h = arch["xattn_heads"]
    y = _ln(x, sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"], 1e-5)
    q = _heads(y @ sd[p + "attn.to_q.weight"].T, h)
    k, v = (_heads(z, h) for z in (media @ sd[p + "attn.to_kv.weight"].T).chunk(2, dim=-1))
    sim = (q @ k.transpose(-1, -2)) * arch["xattn_dim_head"] ** -0.5
    sim = sim.masked_fill(~real[:, None, None, :], float("-inf"))
    x = _merge(sim.softmax(-1) @ v) @ sd[p + "attn.to_out.weight"].T * torch.tanh(sd[p + "attn_gate"]) + x
    f = torch.nn.functional.gelu(_ln(x, sd[p + "ff.0.weight"], sd[p + "ff.0.bias"], 1e-5) @ sd[p + "ff.1.weight"].T)
    return f @ sd[p + "ff.3.weight"].T * torch.tanh(sd[p + "ff_gate"]) + x


def _reference_hidden(af1, e, clip, layer=-2):
    import torch
    from transformers import AutoTokenizer, OPTForCausalLM

    from tests.clap_tiny import load_local

    arch = af1_tiny.TINY_ARCH
    import librosa

    sd = _raw(af1["audio-flamingo-1-foundation"])
    # windows by hand: librosa to 44.1 kHz, peak-normalise, pad to whole windows, int16, 7 s every 1.75 s
    x = librosa.resample(clip.astype(np.float64), orig_sr=16000, target_sr=44100)
    x = x / np.abs(x).max()
    n = 1 if x.size <= 308700 else 1 + int(np.ceil((x.size - 308700) / 77175))
    x = np.concatenate([x, np.zeros(308700 + (n - 1) * 77175 - x.size)])
    x = np.trunc(np.clip(x, -1, 1) * 32767) / 32767
    wins = [x[i * 77175 : i * 77175 + 308700] for i in range(n)] + [np.zeros(308700)]
    with torch.no_grad():  # the 16 - n padding windows are all zero: one embedding serves them all
        emb = e.clap(torch.tensor(np.stack(wins), dtype=torch.float32)).double()
        media = torch.cat([emb[:n], emb[n:].expand(16 - n, -1)])[None]
        real = torch.arange(16)[None] < n
        audio = _ref_audio_transformer(sd, media, arch)

        tok = load_local(AutoTokenizer, af1["opt-iml-max-1_3b"])
        # the official factory's order: the two media tokens, then (no sep token in OPT's) <SEP>
        tok.add_special_tokens({"additional_special_tokens": ["<audio>", "<|endofchunk|>"]})
        tok.add_special_tokens({"sep_token": "<SEP>"})
        ids = torch.tensor([tok(PROMPT)["input_ids"]])
        lm = load_local(OPTForCausalLM, af1["opt-iml-max-1_3b"]).double().eval()
        lm.resize_token_embeddings(len(tok), mean_resizing=False)
        own = {k.removeprefix("lang_encoder.").replace(".decoder_layer.", "."): v for k, v in sd.items()
               if k.startswith("lang_encoder.") and "gated_cross_attn_layer" not in k}  # fmt: skip
        lm.load_state_dict(own, strict=False)
        for i, layer_module in enumerate(lm.model.decoder.layers):
            def pre(module, args, kwargs, i=i):
                return (_ref_xattn(sd, i, args[0], audio, real, arch), *args[1:]), kwargs

            layer_module.register_forward_pre_hook(pre, with_kwargs=True)
        hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
    return hidden, ids[0], tok.convert_tokens_to_ids("<audio>")


@pytest.mark.parametrize("seconds,pooling", [(10.0, "all"), (3.0, "post_audio"), (10.0, "audio")])
def test_embedding_matches_the_independent_reference(af1, seconds, pooling):
    e = _embedder(af1, pooling=pooling)
    clip = _clip(seconds, seed=3)
    feats = e.embed_audio([clip])[0]
    hidden, ids, audio_id = _reference_hidden(af1, e, clip)
    first = int((ids == audio_id).nonzero()[0])
    rows = {"all": slice(0, len(ids)), "post_audio": slice(first, len(ids)), "audio": slice(first, first + 1)}[pooling]
    expected = hidden[rows].mean(0).numpy()
    assert feats["n_pooled"][0] == len(range(len(ids))[rows]) and feats["n_windows"][0] == (3 if seconds == 10 else 1)
    np.testing.assert_allclose(feats["embedding"], expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    assert np.abs(expected).max() > 0.1


def test_layer_parameter_follows_transformers_numbering(af1):
    e = _embedder(af1, layer=1)
    clip = _clip(2.0, seed=4)
    hidden, ids, _ = _reference_hidden(af1, e, clip, layer=1)
    np.testing.assert_allclose(e.embed_audio([clip])[0]["embedding"], hidden.mean(0).numpy(), atol=2e-5)
    last = _embedder(af1, layer=-1)
    hidden, _, _ = _reference_hidden(af1, last, clip, layer=-1)
    np.testing.assert_allclose(last.embed_audio([clip])[0]["embedding"], hidden.mean(0).numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="out of range"):
        _embedder(af1, layer=9)


def test_batches_gain_and_silence(af1):
    clips = [_clip(2.0, seed=s, f=200 + 100 * s) for s in range(3)]
    e = _embedder(af1)
    one = e.embed_audio(clips)
    for a, b in zip(one, e.embed_audio(clips)):  # the same computation repeated: bit-identical
        np.testing.assert_array_equal(a["embedding"], b["embedding"])
    # Other batch sizes (LM batch 2, CLAP batch 3) run other GEMM kernels and blockings, so
    # float32 sums round differently (up to 4.6e-7 of the largest component seen on 2-core
    # x86); fixed-size batches make an embedding independent of the other clips, not of the
    # batch size. The bound leaves 20x room for other CPUs and thread counts.
    e2 = _embedder(af1, batch_size=2, clap_batch_size=3)
    for a, b in zip(one, e2.embed_audio(clips[::-1])[::-1]):
        np.testing.assert_allclose(b["embedding"], a["embedding"], rtol=0, atol=1e-5 * np.abs(a["embedding"]).max())
    # same batch shape and row, other companions: the same arithmetic on the same numbers
    x, y, z = clips
    first = e2.embed_audio([x, y])[0]["embedding"]
    np.testing.assert_array_equal(e2.embed_audio([x, z])[0]["embedding"], first)
    np.testing.assert_array_equal(e2.embed_audio([x])[0]["embedding"], first)  # filled with a copy of x
    # another row of the same shape: threads may split the rows differently (2e-8 seen)
    np.testing.assert_allclose(e2.embed_audio([y, x])[1]["embedding"], first, rtol=0, atol=1e-5 * np.abs(first).max())
    # a power-of-two gain is exact in binary floating point, and peak normalisation removes it
    np.testing.assert_array_equal(e.embed_audio([0.25 * clips[0]])[0]["embedding"], one[0]["embedding"])
    silent = e.embed_audio([np.zeros(SR, dtype=np.float32)])[0]["embedding"]  # AF1 itself would divide 0 by 0
    assert np.all(np.isfinite(silent)) and not np.allclose(silent, one[0]["embedding"])


# -- wrong files ---------------------------------------------------------------------------------
def test_rejects_wrong_checkpoints(af1, tmp_path):
    import torch

    from hsm_bench.weights import CheckpointError

    sd = torch.load(af1["audio-flamingo-1-foundation"], weights_only=True)["model_state_dict"]

    def variant(name, state):
        torch.save({"model_state_dict": state}, tmp_path / name)
        return {**af1, "audio-flamingo-1-foundation": tmp_path / name}

    gate = "module.lang_encoder.model.decoder.layers.0.gated_cross_attn_layer.attn_gate"
    with pytest.raises(CheckpointError, match="1 missing .*attn_gate"):
        _embedder(variant("a.pt", {k: v for k, v in sd.items() if k != gate}))
    emb = "module.lang_encoder.model.decoder.embed_tokens.weight"
    with pytest.raises(CheckpointError, match="wrong shape.*token embeddings must have"):
        _embedder(variant("b.pt", {**sd, emb: sd[emb][:-1]}))
    with pytest.raises(CheckpointError, match="unexpected .*vision_encoder"):
        _embedder(variant("c.pt", {**sd, "vision_encoder.w": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="Audio Flamingo 3"):
        _embedder(variant("d.pt", {"language_model.model.norm.weight": torch.zeros(2)}))
    torch.save({"model": sd}, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="model_state_dict"):
        _embedder({**af1, "audio-flamingo-1-foundation": tmp_path / "e.pt"})
    clap = torch.load(af1["msclap-clapcap-2023"], weights_only=True)["model"]
    torch.save({"model": {"audio_encoder." + k[5:]: v for k, v in clap.items() if k.startswith("clap.")}}, tmp_path / "f.pth")
    with pytest.raises(CheckpointError, match="CLAP_weights_2023.pth"):
        _embedder({**af1, "msclap-clapcap-2023": tmp_path / "f.pth"})


def test_rejects_a_folder_of_another_model(af1, tmp_path):
    from tests.af3_tiny import build_folder

    af3 = build_folder(tmp_path / "af3")
    with pytest.raises(weights.WeightsMismatchError, match="'audioflamingo3' model, not OPT-IML-MAX-1.3B.*download-weights opt-iml-max-1_3b"):
        _embedder({**af1, "opt-iml-max-1_3b": af3})


def test_missing_weights_name_the_download(tmp_path, monkeypatch):
    from hsm_bench.embedders.audio_flamingo1 import AudioFlamingo1

    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path))
    with pytest.raises(weights.WeightsMissingError, match="download-weights audio-flamingo-1-foundation"):
        AudioFlamingo1().load()


# -- the metric ---------------------------------------------------------------------------------
def _metric(af1, **params):
    from hsm_bench.metrics.afsim import AFSim

    m = AFSim(backend="audio-flamingo-1", backend_params={"arch": af1_tiny.TINY_ARCH, **params})
    with weights.overrides(af1):
        m.setup()
    return m


def test_afsim_with_audio_flamingo_1(af1):
    m = _metric(af1)
    assert m.info.sample_rate == SR and m.weights_for({"backend": "audio-flamingo-1"}) == [
        "audio-flamingo-1-foundation", "opt-iml-max-1_3b", "msclap-clapcap-2023"]  # fmt: skip
    a, b = _clip(3.0, seed=1), _clip(3.0, seed=2, f=900.0)
    items = [ScoreItem("same", a, SR, reference=a), ScoreItem("gain", 0.5 * a, SR, reference=a),
             ScoreItem("other", b, SR, reference=a), ScoreItem("rate", a, 44100, reference=a)]  # fmt: skip
    out = m.compute_batch(items)
    assert out[0]["afsim"] == pytest.approx(1.0, abs=1e-12) and out[1]["afsim"] == pytest.approx(1.0, abs=1e-12)
    assert out[2]["afsim"] < 1 - 1e-6
    assert isinstance(out[3], Exception) and "16000 Hz" in str(out[3])
    assert m.compute_batch(items[:3])[2]["afsim"] == out[2]["afsim"]


def test_run_pipeline_with_audio_flamingo_1(af1, run_afsim):
    arch = json.dumps(af1_tiny.TINY_ARCH).replace('"', "")

    def run(system):
        # one CLAP window per pass: each 2-s clip has one window (the default 4 would embed 3 zero windows)
        return run_afsim(system, "+metrics.params.afsim.backend=audio-flamingo-1",
                         f"+metrics.params.afsim.backend_params.arch={arch}",
                         "+metrics.params.afsim.backend_params.clap_batch_size=1",
                         *(f"+weights.{k}={v}" for k, v in af1.items()))  # fmt: skip

    target = run("oracle_target")
    afs = target["corpus"]["metrics"]["afsim"]
    assert afs["n"] == 12 and afs["n_failed"] == 0 and abs(afs["mean"] - 1.0) < 1e-9
    meta = json.loads(open(f"{target['run_dir']}/run.json").read())["metrics"]["afsim"]
    assert meta["embedder"]["name"] == "audio-flamingo-1" and meta["embedder"]["params"]["pooling"] == "all"
    assert len(meta["embedder"]["checkpoint_sha256"]) == 64
    mixture = run("oracle_mixture")["corpus"]["metrics"]["afsim"]
    assert mixture["n"] == 12 and mixture["mean"] < 1.0 - 1e-6


def test_bfloat16_runs_close_to_float32(af1):
    clip = _clip(3.0, seed=9)
    a = _embedder(af1).embed_audio([clip])[0]["embedding"]
    e = _embedder(af1, dtype="bfloat16")
    assert next(e.model.parameters()).dtype.is_floating_point and str(next(e.model.parameters()).dtype) == "torch.bfloat16"
    b = e.embed_audio([clip])[0]["embedding"]
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert 0.99 < cos < 1.0 and not np.array_equal(a, b)
