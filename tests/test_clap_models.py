"""CLAP embedders: official key layouts, checkpoint round trips and rejections, text pooling.

Everything is built here: tokenizers trained on a few sentences, tiny text models, tiny
HTS-AT / Cnn14 widths on the real front end, random weights saved in the official file
layouts. The comparison with the official model code (identical outputs) is
benchmarks/compare_clap_msclap.py (it needs the unpacked msclap / laion_clap wheels).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.embedders.clap_common import tokenizer_from
from hsm_bench.embedders.laion_clap import (
    LaionClap630kAudioset,
    LaionClapHF,
    LaionClapMusicSpeechAudioset,
)
from hsm_bench.embedders.msclap import MSCLAP2022, MSCLAP2023
from hsm_bench.weights import CheckpointError
from tests import clap_tiny

TINY_2023 = {**clap_tiny.TINY_HTSAT, "d_proj": 16}
TINY_2022 = {**clap_tiny.TINY_CNN14, "d_proj": 16}
TINY_LAION = {**clap_tiny.TINY_HTSAT, "joint_dim": 16}
CAPTIONS = ["a dog barks while cars pass by", "rain falls on a metal roof!", "noise hisses"]
# References computed by hand run at other batch shapes than the embedders (which fill
# fixed-size batches), so other GEMM kernels round float32 sums differently (<= 1e-7 seen);
# they are compared with this bound. Repeated computations are compared exactly.
TOL = 1e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("clap-files")
    f = {
        "gpt2": clap_tiny.gpt2_folder(d / "gpt2"),
        "bert": clap_tiny.bert_folder(d / "bert"),
        "roberta": clap_tiny.roberta_folder(d / "roberta"),
        "hf": clap_tiny.clap_hf_folder(d / "hf"),
    }
    f["2023"] = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2023.pth", "2023", f["gpt2"], TINY_2023, seed=1)
    f["2022"] = clap_tiny.msclap_checkpoint(d / "CLAP_weights_2022.pth", "2022", f["bert"], TINY_2022, seed=2)
    f["laion"] = clap_tiny.laion_checkpoint(d / "630k-audioset-best.pt", f["roberta"], TINY_LAION, seed=3)
    return f


@pytest.fixture
def use(monkeypatch):
    """``use(name, path)``: a --weights override until the end of the test."""
    with contextlib.ExitStack() as stack:

        def _use(name: str, path: Path) -> None:
            stack.enter_context(weights.overrides({name: path}))
            spec = weights.spec(name)
            if spec.size or spec.sha256:  # a stand-in file cannot have the published size
                monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(spec, size=None, sha256=None))

        yield _use


def _clips(sr: int, seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k, s in enumerate(seconds):
        t = np.arange(int(s * sr)) / sr
        out.append((0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
    return out


def _emb(e, clips):
    return np.stack([f["embedding"] for f in e.embed_audio(clips)])


# ------------------------------------------------------------------ official layouts
def _layout(embedder, text_config=None) -> dict:
    """The state dict of the full-size model on the meta device: names and shapes, no
    memory and no random initialisation (seconds for these 35-90 M parameter models)."""
    with torch.device("meta"):
        return embedder.build(None, text_config).state_dict()


def test_full_size_state_dicts_have_the_official_audio_keys():
    """Counts and names of the official modules (checked against their code by
    benchmarks/compare_clap_msclap.py: 237 / 132 / 241 / 328 keys with the tiny text models)."""
    from transformers import BertConfig, GPT2Config

    tiny_text = {"num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10}
    sd = _layout(MSCLAP2023(), GPT2Config(n_embd=8, bos_token_id=0, eos_token_id=0, **tiny_text))
    audio = [k for k in sd if k.startswith("audio_encoder.")]
    assert len(audio) == 204
    for k, shape in {
        "audio_encoder.base.htsat.spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "audio_encoder.base.htsat.logmel_extractor.melW": (513, 64),
        "audio_encoder.base.htsat.patch_embed.proj.weight": (96, 1, 4, 4),
        "audio_encoder.base.htsat.layers.2.blocks.5.attn.relative_position_bias_table": (225, 16),
        "audio_encoder.base.htsat.layers.0.blocks.1.attn_mask": (64, 64, 64),
        "audio_encoder.base.htsat.layers.2.downsample.reduction.weight": (768, 1536),
        "audio_encoder.base.htsat.tscam_conv.weight": (527, 768, 2, 3),
        "audio_encoder.base.htsat.head.weight": (527, 527),
        "audio_encoder.projection.linear1.weight": (1024, 768),
        "audio_encoder.projection.layer_norm.bias": (1024,),
        "logit_scale": (),
    }.items():
        assert tuple(sd[k].shape) == shape, k
    assert "audio_encoder.base.htsat.layers.3.blocks.1.attn_mask" not in sd  # 8x8 stage: one window, no shift

    sd = _layout(MSCLAP2022(), BertConfig(hidden_size=8, intermediate_size=8, **tiny_text))
    assert len([k for k in sd if k.startswith("audio_encoder.")]) == 88
    assert tuple(sd["audio_encoder.base.conv_block6.conv2.weight"].shape) == (2048, 2048, 3, 3)
    assert tuple(sd["audio_encoder.projection.linear1.weight"].shape) == (1024, 2048)

    for cls, n_audio, dim in ((LaionClap630kAudioset, 200, 768), (LaionClapMusicSpeechAudioset, 287, 1024)):
        sd = _layout(cls())
        assert len([k for k in sd if k.startswith("audio_branch.")]) == n_audio
        assert tuple(sd["audio_projection.0.weight"].shape) == (512, dim)
        assert {"audio_transform.sequential.3.bias", "logit_scale_a", "logit_scale_t"} <= set(sd)


def test_front_end_matches_librosa():
    """The fixed front end equals librosa's STFT power and Slaney mel filterbank."""
    librosa = pytest.importorskip("librosa")
    e = MSCLAP2023(arch=TINY_2023)  # the tiny widths keep the full-size front end
    e.init_random()
    htsat = e.model.audio_encoder.base.htsat
    x = _clips(44100, [1.0])[0]
    power = htsat.spectrogram_extractor(torch.from_numpy(x)[None])[0, 0].double().numpy()
    ref = np.abs(librosa.stft(x.astype(np.float64), n_fft=1024, hop_length=320, window="hann", center=True, pad_mode="reflect")) ** 2
    np.testing.assert_allclose(power, ref.T, rtol=1e-3, atol=1e-6 * ref.max())
    mel = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
    np.testing.assert_allclose(htsat.logmel_extractor.melW.numpy(), mel.T, atol=1e-7)


# ------------------------------------------------------------------ MS-CLAP round trips
def test_msclap2023_round_trip(files, use):
    use("msclap-2023", files["2023"])
    use("gpt2", files["gpt2"])
    built = MSCLAP2023(arch=TINY_2023)
    torch.manual_seed(1)
    model = built.build(files["gpt2"])
    clap_tiny.randomise_statistics(model, 1)  # same recipe as the saved file
    built._finish(model, tokenizer_from(files["gpt2"], built._fix_tokenizer), "cpu")
    loaded = MSCLAP2023(arch=TINY_2023)
    loaded.load("cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    clips = _clips(44100, [7.0, 10.0, 2.5])
    np.testing.assert_array_equal(_emb(built, clips), _emb(loaded, clips))
    np.testing.assert_array_equal(built.embed_text(CAPTIONS), loaded.embed_text(CAPTIONS))
    assert loaded.checkpoint_sha256 == weights.file_sha256(files["2023"])
    assert _emb(loaded, clips[:1]).shape == (1, 16)


def test_gpt2_text_pooling_follows_msclap(files, use):
    """' <|endoftext|>' appended, '!' (id 0) pads to 77, state at count(ids != 0) - 1."""
    use("msclap-2023", files["2023"])
    use("gpt2", files["gpt2"])
    e = MSCLAP2023(arch=TINY_2023)
    e.load("cpu")
    toks = e._tokens(["a dog barks", "rain falls on a metal roof!"])
    ids = toks["input_ids"]
    assert ids.shape == (2, 77)
    eot = e.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    n0 = len(e.tokenizer("a dog barks <|endoftext|>")["input_ids"])
    assert ids[0, n0 - 1] == eot and (ids[0, n0:] == 0).all() and toks["attention_mask"][0].sum() == n0
    # a '!' inside the caption is id 0 too: the pooled index moves one token left, as in msclap
    n1 = int(toks["attention_mask"][1].sum())
    last = int((ids[1] != 0).sum()) - 1
    assert last == n1 - 2
    base = e.model.caption_encoder.base
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=toks["attention_mask"])[0]
        want = e.model.caption_encoder.projection(hidden[1, last])
    got = e.embed_text(["rain falls on a metal roof!"])[0]
    np.testing.assert_allclose(got, torch.nn.functional.normalize(want, dim=-1).numpy(), atol=TOL)
    # a text longer than 77 tokens is padded to its own length (msclap does not truncate)
    long = " ".join(["a dog barks"] * 20)
    assert 77 < e._tokens([long])["input_ids"].shape[1] <= 128
    assert np.isfinite(e.embed_text([long])).all()
    with pytest.raises(ValueError, match="exceeds the text encoder's 128 positions"):
        e.embed_text([long * 2])


def test_msclap2022_round_trip_and_bert_cls(files, use):
    use("msclap-2022", files["2022"])
    use("bert-base-uncased", files["bert"])
    e = MSCLAP2022(arch=TINY_2022)
    e.load("cpu")
    saved = torch.load(files["2022"], weights_only=True)["model"]
    for k, v in saved.items():
        assert torch.equal(v, e.model.state_dict()[k]), k
    toks = e._tokens(["A Dog barks"])
    assert toks["input_ids"].shape == (1, 100) and toks["input_ids"][0, 0] == e.tokenizer.cls_token_id
    assert (toks["token_type_ids"] == 0).all()
    with torch.no_grad():
        h = e.model.caption_encoder.base(**toks)[0][:, 0]
        want = torch.nn.functional.normalize(e.model.caption_encoder.projection(h), dim=-1).numpy()
    np.testing.assert_allclose(e.embed_text(["A Dog barks"]), want, atol=TOL)
    clips = _clips(44100, [5.0, 1.0])
    a, b = _emb(e, clips), _emb(e, clips)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 16)


def test_text_weights_come_from_the_folder_only_when_the_checkpoint_has_none(files, use, tmp_path):
    sd = torch.load(files["2023"], weights_only=True)["model"]
    no_text = {k: v for k, v in sd.items() if not k.startswith("caption_encoder.base.")}
    torch.save({"model": no_text}, tmp_path / "a.pth")
    use("msclap-2023", tmp_path / "a.pth")
    use("gpt2", files["gpt2"])
    e = MSCLAP2023(arch=TINY_2023)
    e.load("cpu")  # msclap semantics: the text model from its folder, then the checkpoint
    from transformers import GPT2Model

    ref = clap_tiny.load_local(GPT2Model, files["gpt2"])
    assert torch.equal(e.model.caption_encoder.base.wte.weight, ref.wte.weight)
    part = {k: v for k, v in sd.items() if k != "caption_encoder.base.ln_f.bias"}
    torch.save({"model": part}, tmp_path / "b.pth")
    use("msclap-2023", tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="1 missing.*ln_f.bias"):
        MSCLAP2023(arch=TINY_2023).load("cpu")


def test_legacy_gpt2_buffers_are_accepted_only_with_their_values(files, use, tmp_path):
    sd = dict(torch.load(files["2023"], weights_only=True)["model"])
    sd["caption_encoder.base.h.0.attn.bias"] = torch.ones(128, 128).tril()[None, None]
    sd["caption_encoder.base.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save({"model": sd}, tmp_path / "legacy.pth")
    use("msclap-2023", tmp_path / "legacy.pth")
    use("gpt2", files["gpt2"])
    MSCLAP2023(arch=TINY_2023).load("cpu")
    sd["caption_encoder.base.h.0.attn.bias"] = torch.ones(1, 1, 128, 128)
    torch.save({"model": sd}, tmp_path / "legacy.pth")
    with pytest.raises(CheckpointError, match="unexpected buffer values"):
        MSCLAP2023(arch=TINY_2023).load("cpu")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda sd: sd.update({"audio_encoder.projection.linear_1.weight": sd.pop("audio_encoder.projection.linear1.weight")}),
         r"1 missing \(audio_encoder.projection.linear1.weight\); 1 unexpected \(audio_encoder.projection.linear_1.weight\)"),
        (lambda sd: sd.pop("audio_encoder.base.htsat.norm.weight"), r"1 missing \(audio_encoder.base.htsat.norm.weight\)"),
        (lambda sd: sd.update({"logit_scale": torch.zeros(3)}), r"1 wrong shape \(logit_scale \[3\] \(model \[\]\)\)"),
        (lambda sd: sd.update({k.replace("audio_encoder", "module.audio_encoder", 1): sd.pop(k) for k in list(sd)}),
         "'module.' prefix"),
    ],
    ids=["renamed", "missing", "shape", "prefixed"],
)
def test_msclap_rejects_wrong_checkpoints(files, use, tmp_path, mutate, message):
    sd = dict(torch.load(files["2023"], weights_only=True)["model"])
    mutate(sd)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    use("msclap-2023", tmp_path / "bad.pth")
    use("gpt2", files["gpt2"])
    with pytest.raises(CheckpointError, match=message) as exc:
        MSCLAP2023(arch=TINY_2023).load("cpu")
    assert "\n" not in str(exc.value) and "is not a MS-CLAP 2023 checkpoint" in str(exc.value)


def test_other_models_files_are_named_in_the_error(files, use, tmp_path):
    use("gpt2", files["gpt2"])
    use("msclap-2023", files["2022"])
    with pytest.raises(CheckpointError, match="MS-CLAP 2022 checkpoint.*use msclap-2022"):
        MSCLAP2023(arch=TINY_2023).load("cpu")
    use("msclap-2023", files["laion"])
    with pytest.raises(CheckpointError, match=r"expected \{'model': state_dict\}"):
        MSCLAP2023(arch=TINY_2023).load("cpu")
    torch.save({"model": torch.load(files["laion"], weights_only=True)["state_dict"]}, tmp_path / "x.pth")
    use("msclap-2023", tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="LAION-CLAP"):
        MSCLAP2023(arch=TINY_2023).load("cpu")
    use("bert-base-uncased", files["bert"])
    use("msclap-2022", files["2023"])
    with pytest.raises(CheckpointError, match="MS-CLAP 2023 checkpoint.*use msclap-2023"):
        MSCLAP2022(arch=TINY_2022).load("cpu")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    use("msclap-2022", tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        MSCLAP2022(arch=TINY_2022).load("cpu")


def test_wrong_text_folder_is_rejected(files, use):
    use("msclap-2023", files["2023"])
    use("gpt2", files["bert"])
    with pytest.raises(weights.WeightsError, match="holds a 'bert' model, expected 'gpt2'"):
        MSCLAP2023(arch=TINY_2023).load("cpu")


def test_missing_weights_name_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # Hub folders may come from there
    for cls, name in ((MSCLAP2023, "msclap-2023"), (LaionClapMusicSpeechAudioset, "laion-clap-music-speech-audioset")):
        with pytest.raises(weights.WeightsMissingError, match=f"hsm-bench download-weights {name}") as exc:
            cls().load("cpu")
        assert "\n" not in str(exc.value)
    with pytest.raises(weights.WeightsMissingError, match="download-weights laion-clap-hf-larger-music-speech"):
        LaionClapHF(model="larger-music-speech").load("cpu")


# ------------------------------------------------------------------ LAION-CLAP
def test_laion_original_round_trip(files, use):
    use("laion-clap-630k-audioset", files["laion"])
    use("roberta-base", files["roberta"])
    e = LaionClap630kAudioset(arch=TINY_LAION)
    e.load("cpu")
    saved = torch.load(files["laion"], weights_only=True)["state_dict"]
    assert all(k.startswith("module.") for k in saved)
    for k, v in e.model.state_dict().items():
        assert torch.equal(v, saved["module." + k]), k
    clips = _clips(48000, [10.0, 4.0, 12.5])
    a = _emb(e, clips)
    np.testing.assert_array_equal(a, _emb(e, clips))
    # by hand: int16 round trip, repeatpad, projection, L2 normalisation
    x = clips[1]
    q = ((np.clip(x, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
    padded = np.zeros(480000, np.float32)
    reps = np.tile(q, 480000 // len(q))
    padded[: len(reps)] = reps
    with torch.no_grad():
        want = e.model.audio_projection(e.model.audio_branch(torch.from_numpy(padded)[None])["embedding"])
    np.testing.assert_allclose(a[1], torch.nn.functional.normalize(want, dim=-1)[0].numpy(), atol=TOL)
    # text: RoBERTa pooler_output -> projection, padded / truncated to 77
    tok = e.tokenizer(CAPTIONS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        pooled = e.model.text_branch(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
        want = torch.nn.functional.normalize(e.model.text_projection(pooled), dim=-1).numpy()
    np.testing.assert_allclose(e.embed_text(CAPTIONS), want, atol=TOL)
    # int16=False skips the quantisation
    e2 = LaionClap630kAudioset(arch=TINY_LAION, int16=False)
    e2.load("cpu")
    assert not np.array_equal(_emb(e2, clips[:1]), a[:1])
    assert e.cache_key() != e2.cache_key()


def test_laion_rejects_a_base_checkpoint_for_tiny(files, use, tmp_path):
    use("roberta-base", files["roberta"])
    base = clap_tiny.laion_checkpoint(tmp_path / "base.pt", files["roberta"], {**TINY_LAION, "depths": [2, 2, 12, 2]}, base=True)
    use("laion-clap-630k-audioset", base)
    with pytest.raises(CheckpointError, match="unexpected.*HTSAT-base checkpoint"):
        LaionClap630kAudioset(arch=TINY_LAION).load("cpu")
    use("laion-clap-630k-audioset", files["2023"])
    with pytest.raises(CheckpointError, match="MS-CLAP checkpoint"):
        LaionClap630kAudioset(arch=TINY_LAION).load("cpu")


def test_laion_hf_clapmodel_from_a_local_folder(files, use):
    from transformers import ClapModel, ClapProcessor

    use("laion-clap-hf-htsat-unfused", files["hf"])
    e = LaionClapHF()
    e.load("cpu")
    assert e.required_weights() == ["laion-clap-hf-htsat-unfused"] and e.embed_dim == 16
    model = clap_tiny.load_local(ClapModel, files["hf"]).eval()
    proc = clap_tiny.load_local(ClapProcessor, files["hf"])
    clips = _clips(48000, [10.0, 3.0])
    padded = [clips[0], np.concatenate([np.tile(clips[1], 3), np.zeros(480000 - 3 * len(clips[1]), np.float32)])]
    feats = proc.feature_extractor(padded, sampling_rate=48000, return_tensors="pt", truncation="rand_trunc", padding="repeatpad")
    with torch.no_grad():
        want = model.get_audio_features(input_features=feats["input_features"], is_longer=feats["is_longer"]).pooler_output
    np.testing.assert_allclose(_emb(e, clips), want.numpy(), atol=1e-5)
    tok = proc.tokenizer(CAPTIONS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        want = model.get_text_features(**tok).pooler_output
    np.testing.assert_allclose(e.embed_text(CAPTIONS), want.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="unknown model"):
        LaionClapHF(model="fused")
