"""BiModalSep: official key layout and container, end to end through the pipeline, checkpoint
rejections, the STFT / mask / ISTFT path against librosa, the query text, the weights names.

Everything is built here (tests/bimodalsep_tiny.py): tiny widths with the full-size key
names, random weights, a locally trained tokenizer. The comparison with the official code
(same random weights at full size, same audio) is benchmarks/compare_bimodalsep_official.py.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hsm_bench import weights
from hsm_bench.errors import ConfigError
from hsm_bench.weights import CheckpointError
from systems.bimodalsep import ARCH, BiModalSep, chunk_samples
from systems.bimodalsep_stft import ConvISTFT, ConvSTFT, magphase
from tests import bimodalsep_tiny as tiny
from tests.system_checks import batch as _batch
from tests.system_checks import outputs_follow_the_model

# Outputs computed in another batch shape (the pipeline's batches, one clip alone) go through
# other GEMM / convolution blockings: float32 rounding differs, never by more than this.
TOL = 2e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny.build_files(tmp_path_factory.mktemp("bimodalsep"))


@contextlib.contextmanager
def _weights(files, separator=None):
    with weights.overrides({"bimodalsep": separator or files["separator"], "laion-clap-music-audioset": files["clap"],
                            "roberta-base": files["roberta"]}):  # fmt: skip
        yield


@pytest.fixture(scope="module")
def system(files):
    s = BiModalSep(arch=tiny.TINY_ARCH)
    with _weights(files):
        s.load("cpu")
    return s




# -- layout -----------------------------------------------------------------------------------
def test_full_size_layout_is_the_official_one():
    """Key names and shapes at the released size (built on the meta device), against the
    official CondAttUNet / NetWrapper read by hand: per 1-layer ResBlock 7 keys (conv w+b,
    BatchNorm w, b, running mean / var, step count), per SCA block 28 (unused norm1 2,
    self-attention block 12, cross-attention block 14); levels: outer 22, middle 26 (x3),
    bottom 26 + 28 (x2), inner 26 + 28; bn0 5: 267 U-Net keys."""
    from torch import nn
    from transformers import RobertaConfig, RobertaModel

    from systems.bimodalsep import ROBERTA_BASE, ClapText

    s = BiModalSep()
    with torch.device("meta"):
        text = ClapText(RobertaModel(RobertaConfig(**ROBERTA_BASE)), nn.Sequential(nn.Linear(768, 512), nn.ReLU(), nn.Linear(512, 512)))
        sd = {k: tuple(v.shape) for k, v in s._build(text, 512, 768).state_dict().items()}
    assert s.chunk == 131070 and s.sample_rate == 16000 and s.max_duration_s is None and s.tasks == ("extract",)
    unet = [k for k in sd if k.startswith("net_sound.")]
    assert len(unet) == 22 + 3 * 26 + 2 * (26 + 28) + (26 + 28) + 5 == 267
    inner = "net_sound.unet_block" + ".submodule" * 6
    bottom = "net_sound.unet_block" + ".submodule" * 4
    expect = {
        "net_sound.bn0.running_var": (1,),
        "net_sound.unet_block.downconv.weight": (64, 1, 4, 4),
        "net_sound.unet_block.downnorm.weight": (64,),
        "net_sound.unet_block.downresblock.res_layers.0.0.weight": (64, 64, 3, 3),
        "net_sound.unet_block.upresblock.res_layers.0.1.running_mean": (128,),
        "net_sound.unet_block.upconv.weight": (32, 128, 3, 3),
        "net_sound.unet_block.upconv.bias": (32,),
        "net_sound.unet_block.submodule.upconv.weight": (64, 256, 3, 3),
        "net_sound.unet_block.submodule.upnorm.num_batches_tracked": (),
        "net_sound.unet_block.submodule.submodule.submodule.downconv.weight": (512, 256, 4, 4),
        f"{bottom}.ca_blocks.0.norm1.weight": (512,),
        f"{bottom}.ca_blocks.0.sa_block.attn.qkv.weight": (1536, 512),
        f"{bottom}.ca_blocks.0.sa_block.mlp.fc1.weight": (1024, 512),
        f"{bottom}.ca_blocks.0.ca_block.attn.q.weight": (512, 512),
        f"{bottom}.ca_blocks.0.ca_block.attn.kv.weight": (1024, 768),
        f"{bottom}.upresblock.res_layers.0.0.weight": (1024, 1024, 3, 3),
        f"{bottom}.upconv.weight": (512, 1024, 3, 3),
        f"{inner}.upresblock.res_layers.0.0.weight": (512, 512, 3, 3),
        f"{inner}.upconv.weight": (512, 512, 3, 3),
        f"{inner}.ca_blocks.0.ca_block.mlp.fc2.bias": (512,),
        "net_clap.fc.weight": (32, 512),
        "net_synthesizer.scale": (32,),
        "net_synthesizer.bias": (1,),
        "stft.conv_real.weight": (512, 1, 1022),
        "istft.conv_imag.weight": (1022, 1022, 1),
        "istft.ola_window": (1022,),
    }
    assert {k: sd.get(k) for k in expect} == expect
    assert f"{inner}.submodule.downconv.weight" not in sd and f"{inner}.upconv.bias" not in sd
    assert not any(".upnorm." in k for k in sd if k.startswith("net_sound.unet_block.up"))  # the outer level has none
    rest = {k for k in sd if not k.startswith(("net_sound.", "net_clap.model.model."))}
    assert rest == {"net_clap.fc.weight", "net_clap.fc.bias", "net_synthesizer.scale", "net_synthesizer.bias",
                    "stft.conv_real.weight", "stft.conv_imag.weight", "istft.conv_real.weight",
                    "istft.conv_imag.weight", "istft.ola_window"}  # fmt: skip


def test_tiny_variant_keeps_every_key_name(files):
    full = BiModalSep()
    with torch.device("meta"):
        names = set(full._build(torch.nn.Module(), 512, 768).state_dict())
    tiny_names = {k for k in files["state"] if not k.startswith("net_clap.model.")}
    assert tiny_names == names


# -- pipeline -----------------------------------------------------------------------------
def test_pipeline_end_to_end(files, compose_config, tmp_path, system):
    from hsm_bench.hashing import sha256_file
    from hsm_bench.pipeline.run import run_pipeline
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts", n_items=2, seconds=1.0, seed=3)  # one extract, one remove item
    res = run_pipeline(compose_config(
        "system=bimodalsep", f"+system.params.arch={tiny.TINY_ARCH_OVERRIDE}", f"testset.root={ts}",
        f"paths.runs_dir={tmp_path / 'runs'}", "runtime.progress=false", "metrics.names=[sdr]",
        f"+weights.bimodalsep={files['separator']}", f"+weights.laion-clap-music-audioset={files['clap']}",
        f"+weights.roberta-base={files['roberta']}",
    ))  # fmt: skip
    assert res["status"] == 0, res["problem"]
    run = json.loads((Path(res["run_dir"]) / "run.json").read_text())["system"]
    assert run["checkpoint_sha256"] == sha256_file(files["separator"])
    assert run["text_encoder"]["checkpoint_sha256"] == sha256_file(files["clap"])
    assert run["text_encoder"]["weights"] == ["laion-clap-music-audioset", "roberta-base"]
    assert run["query_template"] == {"caption": "{caption}", "label": "The sound of {label}"}
    assert run["remove"] == "mixture minus extraction (harness)"

    outputs_follow_the_model(res["run_dir"], ts, system, TOL)


# -- checkpoints ----------------------------------------------------------------------------
def test_checkpoint_with_wrong_keys_is_rejected_in_one_line(files, tmp_path):
    state = dict(files["state"])
    del state["net_sound.unet_block.upconv.bias"]
    state["net_sound.unet_block.extra.weight"] = torch.zeros(3)
    state["net_synthesizer.scale"] = torch.ones(7)
    bad = tiny.write_separator(tmp_path / "bad.pth.tar", state)
    with _weights(files, bad), pytest.raises(CheckpointError) as err:
        BiModalSep(arch=tiny.TINY_ARCH).load("cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("bad.pth.tar is not a BiModalSep checkpoint")
    for key in ("net_sound.unet_block.upconv.bias", "net_sound.unet_block.extra.weight", "net_synthesizer.scale [7]"):
        assert key in msg
    assert "1 missing" in msg and "1 unexpected" in msg and "1 wrong shape" in msg


def test_other_containers_are_rejected(files, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in files["state"].items()}, bare)  # no {'state_dict': ...}
    with _weights(files, bare), pytest.raises(CheckpointError, match=r"expected \{'state_dict'"):
        BiModalSep(arch=tiny.TINY_ARCH).load("cpu")
    with _weights(files, files["clap"]), pytest.raises(CheckpointError, match="pass it as laion-clap-music-audioset"):
        BiModalSep(arch=tiny.TINY_ARCH).load("cpu")


def test_optional_parts_and_the_clap_copy(files, tmp_path, system):
    """The official non-strict load: the CLAP copy, the STFT kernels and BatchNorm step counts
    may be absent (an unprefixed file loads too); a CLAP copy that is present wins."""
    lean = {k: v for k, v in files["state"].items()
            if not k.startswith(("net_clap.model.", "stft.", "istft.")) and not k.endswith("num_batches_tracked")}  # fmt: skip
    path = tiny.write_separator(tmp_path / "lean.pth.tar", lean, prefix="")
    s = BiModalSep(arch=tiny.TINY_ARCH)
    with _weights(files, path):
        s.load("cpu")
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (1, 1, 9000)).astype(np.float32))
    with torch.inference_mode():
        assert torch.equal(s.separate(_batch(x, ["a dog barks"])), system.separate(_batch(x, ["a dog barks"])))
    key = "net_clap.model.model.text_projection.2.bias"
    moved = {**files["state"], key: files["state"][key] + 1.0}
    path = tiny.write_separator(tmp_path / "moved.pth.tar", moved)
    with _weights(files, path):
        s.load("cpu")
    assert torch.equal(s.net.net_clap.model.model.text_projection[2].bias, moved[key])
    assert not hasattr(s.net.net_clap.model.model, "audio_branch")  # only the text side is kept


# -- signal path ----------------------------------------------------------------------------
def _istft_by_hand(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Least-squares inverse STFT in float64: inverse real FFT of each frame, periodic Hann
    synthesis window, overlap-add, division by the summed squared window, centring cut."""
    from scipy.signal import get_window

    win = get_window("hann", n_fft)
    frames = np.fft.irfft(spec, n=n_fft, axis=0) * win[:, None]
    n = n_fft + hop * (spec.shape[1] - 1)
    y, norm = np.zeros(n), np.zeros(n)
    for t in range(spec.shape[1]):
        y[t * hop : t * hop + n_fft] += frames[:, t]
        norm[t * hop : t * hop + n_fft] += win**2
    return (y / np.where(norm > 1e-11, norm, 1.0))[n_fft // 2 : n_fft // 2 + length]


def test_stft_and_istft_match_librosa():
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(1).standard_normal(20000).astype(np.float32) * 0.3
    stft, istft = ConvSTFT(1022, 256), ConvISTFT(1022, 256)
    with torch.no_grad():
        real, imag = stft(torch.from_numpy(x)[None])
        ref = librosa.stft(x.astype(np.float64), n_fft=1022, hop_length=256, window="hann", center=True,
                           pad_mode="reflect")  # fmt: skip
        ours = (real + 1j * imag)[0, 0].numpy().T.astype(np.complex128)
        assert ours.shape == ref.shape == (512, 79)
        assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()  # float32 kernels vs float64
        y = istft(real, imag, len(x))[0].numpy()
    assert np.abs(y - _istft_by_hand(ref, 1022, 256, len(x))).max() < 1e-5
    assert np.abs(y - x).max() < 1e-5
    mag, cos, sin = magphase(real, imag)
    assert torch.allclose(mag * cos, real, atol=1e-6) and torch.allclose(mag * sin, imag, atol=1e-6)


def test_masking_path_against_librosa(system):
    """With the mask replaced by a known one, the network is X * M (mixture phase) and its
    inverse transform, the official way: checked with librosa's STFT in float64."""
    librosa = pytest.importorskip("librosa")
    n_fft, hop = tiny.TINY_ARCH["n_fft"], tiny.TINY_ARCH["hop"]
    chunk = chunk_samples(n_fft, hop)
    x = (np.random.default_rng(2).standard_normal(chunk) * 0.2).astype(np.float32)
    ramp = np.linspace(0.1, 0.9, n_fft // 2 + 1, dtype=np.float32)  # a mask over frequency
    net = system.net
    seen = {}

    def known_mask(mag, embed, hidden):
        seen["shape"] = tuple(mag.shape)
        return torch.from_numpy(ramp)[None, None, :, None].expand_as(mag)

    net.mask = known_mask
    try:
        with torch.no_grad():
            y = net(torch.from_numpy(x)[None], torch.zeros(1, 16), torch.zeros(1, 77, 32))[0].numpy()
    finally:
        del net.mask
    assert seen["shape"] == (1, 1, 128, 128)  # frequency x frames: 128 x 128 for the 8190-sample chunk
    spec = librosa.stft(x.astype(np.float64), n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect")
    assert np.abs(y - _istft_by_hand(spec * ramp[:, None], n_fft, hop, chunk)).max() < 1e-5


def test_chunking_clipping_and_padding(system):
    """The demo's protocol: clip to [-1, 1], zero-pad to whole chunks, separate them one by one."""
    chunk = system.chunk
    rng = np.random.default_rng(4)
    x = rng.uniform(-1.6, 1.6, 2 * chunk + 1000).astype(np.float32)
    with torch.inference_mode():
        out = system.separate(_batch(torch.from_numpy(x)[None, None], ["rain falls"]))[0, 0]
        embed, hidden = system.encode_text(["rain falls"])
        padded = np.zeros(3 * chunk, np.float32)
        padded[: len(x)] = np.clip(x, -1, 1)
        parts = [system.net(torch.from_numpy(padded[k * chunk : (k + 1) * chunk])[None], embed, hidden)[0] for k in range(3)]
    assert out.shape == (len(x),)
    assert (torch.cat(parts)[: len(x)] - out).abs().max() < TOL
    # items of a batch stay apart; a padded item's tail is silent
    two = torch.zeros(2, 1, len(x))
    two[0, 0] = torch.from_numpy(x)
    two[1, 0, :5000] = torch.from_numpy(x[:5000])
    with torch.inference_mode():
        both = system.separate(_batch(two, ["rain falls", "rain falls"], lengths=[len(x), 5000]))
        alone = system.separate(_batch(two[1:, :, :5000], ["rain falls"]))
    assert (both[0, 0] - out).abs().max() < TOL
    assert (both[1, 0, :5000] - alone[0, 0]).abs().max() < TOL and both[1, 0, 5000:].abs().max() == 0


# -- query ------------------------------------------------------------------------------------
def test_query_text_and_conditioning(system):
    assert system.query_text("A man speaks while a dog barks", "caption") == "A man speaks while a dog barks"
    assert system.query_text("acoustic_guitar", "label") == "The sound of acoustic guitar"
    assert BiModalSep(label_template="{label} playing").query_text("violin", "label") == "violin playing"
    for bad in ("no placeholder", "{label} {x}"):
        with pytest.raises(ConfigError, match="label_template"):
            BiModalSep(label_template=bad)
    tok = system.tokenize(["a dog barks", "rain falls on a metal roof and thunder rumbles"])
    assert tok["input_ids"].shape == (2, 77) and tok["input_ids"][:, 0].tolist() == [0, 0]  # <s>
    n = int(tok["attention_mask"][0].sum())
    assert tok["input_ids"][0, n - 1] == 2 and (tok["input_ids"][0, n:] == 1).all()  # </s>, then <pad> to 77
    with torch.inference_mode():
        embed, hidden = system.encode_text(["a dog barks", "rain falls on a metal roof and thunder rumbles"])
        # by hand: RoBERTa's pooler (tanh dense on <s>), the projection MLP, L2 normalisation
        clap = system.net.net_clap.model.model
        pool = clap.text_branch.pooler.dense
        p = torch.tanh(hidden[:, 0] @ pool.weight.T + pool.bias)
        l1, l2 = clap.text_projection[0], clap.text_projection[2]
        e = torch.relu(p @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    assert hidden.shape == (2, 77, 32) and embed.shape == (2, 16)
    assert torch.allclose(embed, e / e.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(embed.norm(dim=-1), torch.ones(2), atol=1e-6)
    # padded positions keep hidden states: the U-Net's cross-attention reads all 77 (no mask)
    assert hidden[0, n:].abs().sum() > 0


def test_params_are_checked():
    assert BiModalSep().params == {"label_template": "The sound of {label}", "chunks_per_pass": 2, "arch": {}}
    with pytest.raises(ConfigError, match="unknown key"):
        BiModalSep(arch={"width": 3})
    with pytest.raises(ConfigError, match="chunks_per_pass"):
        BiModalSep(chunks_per_pass=0)
    assert set(ARCH) >= set(tiny.TINY_ARCH)


# -- weights ----------------------------------------------------------------------------------
def test_download_weights_names_and_the_onedrive_message(capsys):
    from hsm_bench.cli import main
    from hsm_bench.download import names_for

    assert names_for(system="bimodalsep") == ["bimodalsep", "laion-clap-music-audioset", "roberta-base"]
    assert weights.spec("laion-clap-music-audioset").source == "hf://lukewys/laion_clap/music_audioset_epoch_15_esc_90.14.pt"
    assert main(["download-weights", "bimodalsep"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[0]
    assert "bimodalsep: " in line and "only published on OneDrive (https://buetedu-my.sharepoint.com/" in line
    assert f"put it at {weights.default_path('bimodalsep')}" in line and "--weights bimodalsep=" in line


def test_load_random_is_ready_to_separate():
    s = BiModalSep(arch={k: v for k, v in tiny.TINY_ARCH.items() if k != "clap"})
    s.load_random(seed=1)
    assert s.checkpoint_sha256() == "random-1" and s.info()["text_encoder"]["checkpoint_sha256"] == "random-1"
    text = s.net.net_clap.model.model.text_branch.config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (768, 12, 50265)  # roberta-base size
    x = torch.from_numpy(np.random.default_rng(3).uniform(-0.5, 0.5, (1, 1, 3000)).astype(np.float32))
    with torch.inference_mode():
        y = s.separate(_batch(x, ["the sound of a violin"], ["caption"]))
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.slow
def test_load_random_full_size():
    s = BiModalSep()
    s.load_random(seed=0)
    x = torch.from_numpy(np.random.default_rng(5).uniform(-0.5, 0.5, (1, 1, 16000)).astype(np.float32))
    with torch.inference_mode():
        y = s.separate(_batch(x, ["a dog barks"]))
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() > 0
