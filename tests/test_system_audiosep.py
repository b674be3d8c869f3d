"""AudioSep (``audiosep``, ``audiosep_dcase16k``): official key layout and containers, the
query-encoder load order, end to end through the pipeline, checkpoint rejections, the
STFT / mask / ISTFT path against librosa and torch.stft, the query text, the weights names.

Everything is built here (tests/audiosep_tiny.py): tiny widths with the full-size key names,
random weights, a locally trained tokenizer. The comparison with the official code (same random
weights at full size, same audio) is benchmarks/compare_audiosep_official.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hsm_bench import download, weights
from hsm_bench.errors import ConfigError
from hsm_bench.weights import CheckpointError
from systems.audiosep import AudioSep, AudioSepDCASE16k
from systems.audiosep_query import MAX_TOKENS
from systems.audiosep_stft import ConvISTFT, ConvSTFT
from systems.resunet30 import ResUNet30
from tests import audiosep_tiny as tiny
from tests.system_checks import batch as _batch
from tests.system_checks import outputs_follow_the_model

# Outputs computed in another batch shape (the pipeline's batches, one clip alone) go through
# other GEMM / convolution blockings: float32 rounding differs, never by more than this.
TOL = 2e-5
CLAP = "laion-clap-music-speech-audioset"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audiosep")
    f = {"roberta": tiny.roberta_folder(d / "roberta-base")}
    f["clap"] = tiny.clap_checkpoint(d / "music_speech_audioset_epoch_15_esc_89.98.pt", f["roberta"], seed=1)
    f["sep"] = tiny.lightning_checkpoint(d / "audiosep_base_4M_steps.ckpt", f["clap"], seed=2)
    f["sep16"] = tiny.lightning_checkpoint(d / "dcase16k.ckpt", f["clap"], 1024, 160, seed=3)
    return f


@pytest.fixture(scope="module", autouse=True)
def _stand_in_sizes():
    """The tiny CLAP file cannot have the published size of the real one."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(weights.WEIGHTS, CLAP, dataclasses.replace(weights.spec(CLAP), size=None, sha256=None))
        yield


@contextlib.contextmanager
def _weights(files, sep_name="audiosep-base-4m", sep=None, clap=None):
    with weights.overrides({sep_name: sep or files["sep"], CLAP: clap or files["clap"], "roberta-base": files["roberta"]}):
        yield


@pytest.fixture(scope="module")
def system(files):
    s = AudioSep(arch=tiny.TINY_ARCH)
    with _weights(files):
        s.load("cpu")
    return s




def _tones(sr: int, seconds: float, n: int = 1, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = [0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.05 * rng.standard_normal(len(t)) for k in range(n)]
    return torch.from_numpy(np.stack(x).astype(np.float32))[:, None]


# -- layout -----------------------------------------------------------------------------------
def test_full_size_network_has_the_official_keys_and_shapes():
    """332 ``ss_model.`` tensors as in the official checkpoint (benchmarks/compare_audiosep_official.py
    checks the whole key set against the official module), FiLM layers named with ``->``."""
    with torch.device("meta"):
        sd32 = ResUNet30(2048, 320).state_dict()
        sd16 = ResUNet30(1024, 160).state_dict()
    assert len(sd32) == 332 and set(sd32) == set(sd16)
    film = [k for k in sd32 if k.startswith("film.")]
    assert len(film) == 2 * (6 * 2 + 2 + 6 * 4)  # weight + bias of every beta: encoders, centre, decoders
    for k, shape in {
        "base.stft.conv_real.weight": (1025, 1, 2048),
        "base.istft.conv_imag.weight": (2048, 2048, 1),
        "base.istft.ola_window": (2048,),
        "base.bn0.running_var": (1025,),
        "base.pre_conv.weight": (32, 1, 1, 1),
        "base.encoder_block1.conv_block1.conv1.weight": (32, 32, 3, 3),
        "base.encoder_block5.conv_block1.shortcut.bias": (384,),
        "base.conv_block7a.conv_block1.bn2.running_mean": (384,),
        "base.decoder_block1.conv1.weight": (384, 384, 1, 2),
        "base.decoder_block3.conv_block2.conv1.weight": (256, 512, 3, 3),
        "base.decoder_block6.bn2.weight": (64,),
        "base.after_conv.weight": (3, 32, 1, 1),
        "film.encoder_block1->conv_block1->beta1.weight": (32, 512),
        "film.decoder_block1->beta2.weight": (384, 512),
        "film.decoder_block6->conv_block2->beta1.bias": (64,),
    }.items():
        assert tuple(sd32[k].shape) == shape, k
    assert "base.encoder_block1.conv_block1.shortcut.weight" not in sd32  # 32 -> 32: identity shortcut
    assert tuple(sd16["base.stft.conv_imag.weight"].shape) == (513, 1, 1024)
    tiny_keys = {k[len("ss_model.") :] for k in tiny.separator_state(2048, 320)}
    assert tiny_keys == set(sd32)


def test_query_encoder_is_built_from_clap_then_overwritten_by_the_lightning_file(files, tmp_path):
    """What the official strict=False load leaves: CLAP tensors, replaced where the Lightning file
    has ``query_encoder.model.*`` ones (here: a new text projection, one RoBERTa tensor absent)."""
    clap = {k[len("module.") :]: v for k, v in torch.load(files["clap"], weights_only=True)["state_dict"].items()}
    query = dict(clap)
    query["text_projection.0.weight"] = torch.randn_like(clap["text_projection.0.weight"])
    query["text_projection.2.bias"] = torch.randn_like(clap["text_projection.2.bias"])
    absent = "text_branch.encoder.layer.0.output.dense.weight"
    del query[absent]
    del query["audio_branch.head.weight"]  # any subset of the CLAP keys is accepted
    sep = tiny.lightning_checkpoint(tmp_path / "override.ckpt", files["clap"], seed=2, query=query)
    s = AudioSep(arch=tiny.TINY_ARCH)
    with _weights(files, sep=sep):
        s.load("cpu")
    got = s.text.state_dict()
    assert torch.equal(got["text_projection.0.weight"], query["text_projection.0.weight"])
    assert torch.equal(got["text_projection.2.bias"], query["text_projection.2.bias"])
    assert torch.equal(got[absent], clap[absent])
    assert torch.equal(got["text_branch.encoder.layer.0.attention.self.query.weight"],
                       clap["text_branch.encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    saved = torch.load(sep, weights_only=True)["state_dict"]
    for k, v in s.model.state_dict().items():
        assert torch.equal(v, saved["ss_model." + k]), k


# -- pipeline -----------------------------------------------------------------------------
def test_pipeline_end_to_end(files, compose_config, tmp_path, system):
    from hsm_bench.hashing import sha256_file
    from hsm_bench.pipeline.run import run_pipeline
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts", n_items=2, seconds=1.0, seed=3)  # one extract, one remove item
    arch = "{widths:[4,4,6,8,10,12,12],clap:{embed_dim:8,depths:[2,2,2,2],num_heads:[1,1,2,2],num_classes:5,joint_dim:16}}"
    res = run_pipeline(compose_config(
        "system=audiosep", f"system.params.arch={arch}", f"testset.root={ts}", f"paths.runs_dir={tmp_path / 'runs'}",
        "runtime.progress=false", "metrics.names=[sdr]", f"+weights.audiosep-base-4m={files['sep']}",
        f"+weights.{CLAP}={files['clap']}", f"+weights.roberta-base={files['roberta']}",
    ))  # fmt: skip
    assert res["status"] == 0, res["problem"]
    run = json.loads((Path(res["run_dir"]) / "run.json").read_text())["system"]
    assert run["checkpoint_sha256"] == sha256_file(files["sep"])
    assert run["text_encoder"]["weights"] == CLAP and run["text_encoder"]["sha256"] == sha256_file(files["clap"])
    assert "max_length=512" in run["text_encoder"]["tokenizer"]
    assert run["query_template"] == {"caption": "{}", "label": "{}"}
    assert run["remove"] == "mixture minus extraction (harness)" and run["sample_rate"] == 32000

    outputs_follow_the_model(res["run_dir"], ts, system, TOL)


def test_items_of_a_batch_are_separated_at_their_own_length(system):
    """Zero padding to the longest item would change the short item's frames: each length runs alone."""
    x = _tones(32000, 1.0, n=2)
    x[1, :, 20000:] = 0.0
    both = system.separate(_batch(x, ["a dog barks", "rain falls"], lengths=[32000, 20000]))
    alone = system.separate(_batch(x[1:, :, :20000], ["rain falls"]))
    assert torch.all(both[1, :, 20000:] == 0)
    assert (both[1, :, :20000] - alone[0]).abs().max() < TOL
    first = system.separate(_batch(x[:1], ["a dog barks"]))
    assert (both[0] - first[0]).abs().max() < TOL


def test_a_pass_holds_at_most_pass_seconds_of_audio(system, monkeypatch):
    import systems.audiosep as mod

    x = _tones(32000, 0.3, n=3)
    captions = ["a dog barks", "rain falls", "a bell rings"]
    whole = system.separate(_batch(x, captions))
    sizes = []
    hook = system.model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    monkeypatch.setattr(mod, "PASS_SECONDS", 0.7)  # two 0.3-s items per pass
    try:
        split = system.separate(_batch(x, captions))
    finally:
        hook.remove()
    assert sizes == [2, 1]
    assert (split - whole).abs().max() < TOL


# -- checkpoints ----------------------------------------------------------------------------
def test_checkpoint_with_wrong_keys_is_rejected_in_one_line(files, tmp_path):
    raw = torch.load(files["sep"], weights_only=True)
    state = raw["state_dict"]
    del state["ss_model.base.decoder_block2.conv_block2.conv2.weight"]
    state["ss_model.base.decoder_block2.extra.weight"] = torch.zeros(3)
    state["ss_model.film.conv_block7a->conv_block1->beta2.bias"] = torch.zeros(7)
    torch.save(raw, tmp_path / "bad.ckpt")
    with _weights(files, sep=tmp_path / "bad.ckpt"), pytest.raises(CheckpointError) as err:
        AudioSep(arch=tiny.TINY_ARCH).load("cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("bad.ckpt is not a Lightning AudioSep (audiosep) checkpoint")
    for key in ("ss_model.base.decoder_block2.conv_block2.conv2.weight", "ss_model.base.decoder_block2.extra.weight",
                "ss_model.film.conv_block7a->conv_block1->beta2.bias [7]"):  # fmt: skip
        assert key in msg
    assert "1 missing" in msg and "1 unexpected" in msg and "1 wrong shape" in msg


def test_other_files_are_named_in_the_error(files, tmp_path):
    with _weights(files, sep=files["sep16"]), pytest.raises(CheckpointError, match="belongs to audiosep_dcase16k"):
        AudioSep(arch=tiny.TINY_ARCH).load("cpu")
    with _weights(files, sep=files["clap"]), pytest.raises(CheckpointError, match="This is a LAION-CLAP checkpoint"):
        AudioSep(arch=tiny.TINY_ARCH).load("cpu")
    torch.save({"ss_model.base.bn0.weight": torch.ones(1025)}, tmp_path / "bare.ckpt")
    with _weights(files, sep=tmp_path / "bare.ckpt"), pytest.raises(CheckpointError, match="not an AudioSep Lightning"):
        AudioSep(arch=tiny.TINY_ARCH).load("cpu")
    with _weights(files, clap=files["sep"]), pytest.raises(CheckpointError, match="This is an AudioSep checkpoint"):
        AudioSep(arch=tiny.TINY_ARCH).load("cpu")
    s = AudioSepDCASE16k(arch=tiny.TINY_ARCH)
    with _weights(files, "audiosep-dcase2024-baseline-16k", sep=files["sep16"]):
        s.load("cpu")
    out = s.separate(_batch(_tones(16000, 0.5), ["a dog barks"]))
    assert out.shape == (1, 1, 8000) and torch.isfinite(out).all() and out.abs().max() > 1e-4


# -- the signal path ----------------------------------------------------------------------
@pytest.mark.parametrize("n_fft,hop", [(2048, 320), (1024, 160)])
def test_stft_and_istft_match_librosa(n_fft, hop):
    librosa = pytest.importorskip("librosa")
    x = _tones(32000, 0.4, seed=1)[0, 0].numpy()
    real, imag = ConvSTFT(n_fft, hop)(torch.from_numpy(x)[None])
    ours = (real[0, 0].double().numpy() + 1j * imag[0, 0].double().numpy()).T
    ref = librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect")
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
    back = ConvISTFT(n_fft, hop)(real, imag, len(x))[0].numpy()
    ref_back = librosa.istft(ref, hop_length=hop, window="hann", center=True, length=len(x))
    assert np.abs(back - ref_back).max() < 1e-5 and np.abs(back - x).max() < 1e-5


def test_mask_and_phase_rotation_by_hand(system):
    """From the network's three output maps, the estimate computed with torch.stft/istft:
    relu(|X| sigmoid(m)) e^{i angle X} (tanh a + i tanh b) / |tanh a + i tanh b|, Nyquist bin 0; and
    the network input: bn0 over bins, frames zero-padded to a multiple of 32, last bin dropped."""
    net = system.model
    base = net.base
    seen = {}
    hooks = [base.after_conv.register_forward_hook(lambda m, i, o: seen.update(maps=o)),
             base.pre_conv.register_forward_hook(lambda m, i, o: seen.update(pre=i[0]))]  # fmt: skip
    x = _tones(32000, 0.4, seed=2)
    cond = torch.nn.functional.normalize(torch.randn(1, 16), dim=-1)
    try:
        with torch.inference_mode():
            y = net(x, cond)[0, 0].double()
    finally:
        for h in hooks:
            h.remove()
    n = x.shape[-1]
    window = torch.hann_window(2048, periodic=True, dtype=torch.float64)
    spec = torch.stft(x[0, 0].double(), 2048, 320, window=window, center=True, pad_mode="reflect", return_complex=True).T
    frames = spec.shape[0]
    bn = base.bn0
    z = (spec.abs() - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps) * bn.weight.double() + bn.bias.double()
    z = torch.cat([z, torch.zeros(-frames % 32, 1025, dtype=torch.float64)])[:, :1024]
    assert (seen["pre"][0, 0].double() - z).abs().max() < 1e-4 * z.abs().max()
    maps = torch.nn.functional.pad(seen["maps"], (0, 1))[0, :, :frames].double()
    phasor = torch.complex(torch.tanh(maps[1]), torch.tanh(maps[2]))
    est = torch.relu(spec.abs() * torch.sigmoid(maps[0])) * torch.exp(1j * spec.angle()) * phasor / phasor.abs()
    est[:, -1] = 0  # the zero column the network pads back
    ref = torch.istft(est.T, 2048, 320, window=window, center=True, length=n)
    assert (y - ref).abs().max() < 1e-4 * ref.abs().max()


def test_decoder_bn2_and_beta2_are_unused_and_the_query_matters(system):
    x = _tones(32000, 0.3, seed=4)
    cond = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    with torch.inference_mode():
        y = system.model(x.repeat(2, 1, 1), cond)
    assert (y[0] - y[1]).abs().max() > 1e-4
    net = AudioSep(arch=tiny.TINY_ARCH).network().eval()
    net.load_state_dict(system.model.state_dict())
    with torch.no_grad():
        net.base.decoder_block2.bn2.running_mean.add_(5.0)
        getattr(net.film, "decoder_block2->beta2").bias.add_(5.0)
        assert torch.equal(net(x, cond[:1]), system.model(x, cond[:1]))


# -- the query ------------------------------------------------------------------------------
def test_query_text_is_the_caption_or_label_verbatim_and_templates_are_checked(system):
    assert system.query_text("A man speaks, then a dog barks", "caption") == "A man speaks, then a dog barks"
    assert system.query_text("acoustic guitar", "label") == "acoustic guitar"
    s = AudioSep(caption_template="{}", label_template="the sound of {}")
    assert s.query_text("dog bark", "label") == "the sound of dog bark" and s.query_text("x {y}", "caption") == "x {y}"
    for bad in ("no slot", "{} and {}", "{0}", "{caption}", "{"):
        with pytest.raises(ConfigError, match="exactly one"):
            AudioSep(label_template=bad)
    with pytest.raises(ConfigError, match="unknown key"):
        AudioSep(arch={"depth": 3})


def test_tokens_are_padded_and_truncated_to_512_and_embedded_by_hand(system):
    text = system.text
    short, long = "a dog barks while cars pass by", " ".join(["rain falls on a metal roof"] * 120)
    tok = text.tokens(system.tokenizer, [short, long])
    assert tok["input_ids"].shape == (2, MAX_TOKENS)
    n = len(system.tokenizer(short)["input_ids"])
    assert int(tok["attention_mask"][0].sum()) == n and (tok["input_ids"][0, n:] == system.tokenizer.pad_token_id).all()
    assert int(tok["attention_mask"][1].sum()) == MAX_TOKENS and tok["input_ids"][1, -1] == system.tokenizer.eos_token_id
    with torch.inference_mode():
        pooled = text.text_branch(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
        p = text.text_projection
        want = torch.nn.functional.normalize(p[2](torch.relu(p[0](pooled))), dim=-1)
    got = system.embed([short, long, short])
    assert got.shape == (3, 16) and torch.equal(got[0], got[2])
    assert (got[:2] - want).abs().max() < 1e-5


# -- weights ---------------------------------------------------------------------------------
def test_download_weights_names_the_checkpoints():
    assert download.names_for(system="audiosep") == ["audiosep-base-4m", CLAP, "roberta-base"]
    assert download.names_for(system="audiosep_dcase16k") == ["audiosep-dcase2024-baseline-16k", CLAP, "roberta-base"]
    sep, dcase = weights.spec("audiosep-base-4m"), weights.spec("audiosep-dcase2024-baseline-16k")
    assert sep.source == "hf://spaces/Audio-AGI/AudioSep/checkpoint/audiosep_base_4M_steps.ckpt" and not sep.is_repo
    assert dcase.source.startswith("https://zenodo.org/records/10887460/files/audiosep%2Cbaseline-16k")
    assert sep.manual is None and dcase.manual is None  # both hosts serve scripts: no manual step


def test_a_space_file_is_fetched_with_repo_type_space(monkeypatch, capsys):
    hub = pytest.importorskip("huggingface_hub")
    assert download.hub_file(weights.spec("audiosep-base-4m").source) == \
        ("space", "Audio-AGI/AudioSep", "checkpoint/audiosep_base_4M_steps.ckpt")  # fmt: skip
    assert download.hub_file("hf://lukewys/laion_clap/x/y.pt") == (None, "lukewys/laion_clap", "x/y.pt")
    calls = []

    def fake(repo_id, filename, repo_type=None, local_dir=None, endpoint=None):
        calls.append((repo_id, filename, repo_type))
        got = Path(local_dir) / filename
        got.parent.mkdir(parents=True, exist_ok=True)
        got.write_bytes(b"ckpt")
        return str(got)

    monkeypatch.setattr(hub, "hf_hub_download", fake)
    monkeypatch.setattr(download, "probe", lambda base, timeout=None: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    dest = download.download_one("audiosep-base-4m")
    assert calls == [("Audio-AGI/AudioSep", "checkpoint/audiosep_base_4M_steps.ckpt", "space")]
    assert dest == weights.default_path("audiosep-base-4m") and dest.read_bytes() == b"ckpt"
    # only the file (and its sha256 memo) is left: no sub-folder or .cache of the Space layout
    assert sorted(p.name for p in dest.parent.iterdir()) == [f".{dest.name}.sha256.json", dest.name]
    assert weights.spec("audiosep-base-4m").repo_id == "Audio-AGI/AudioSep"


# -- random weights (benchmarks) ----------------------------------------------------------
@pytest.mark.slow
def test_load_random_at_full_size_separates():
    s = AudioSep()
    s.load_random("cpu", seed=0)
    assert sum(p.numel() for p in s.text.parameters()) > 120e6  # RoBERTa-base + projection
    out = s.separate(_batch(_tones(32000, 1.0), ["a dog barks"]))
    assert out.shape == (1, 1, 32000) and torch.isfinite(out).all()
    assert s.checkpoint_sha256() == "random-0" and s.info()["text_encoder"]["sha256"] == "random-0"


def test_load_random_with_a_small_network_is_ready_to_separate():
    s = AudioSepDCASE16k(arch={"widths": tiny.TINY_WIDTHS, "text": {"num_hidden_layers": 1, "hidden_size": 32,
                                                                      "num_attention_heads": 2, "intermediate_size": 64}})
    s.load_random("cpu", seed=1)
    out = s.separate(_batch(_tones(16000, 0.3), ["a dog barks"], ["label"]))
    assert out.shape == (1, 1, 4800) and torch.isfinite(out).all()
