"""LASS-Net system: official checkpoint layout, loading and rejections, the conv STFT against
librosa, the network pieces and the query path by hand, per-item lengths, the pipeline end
to end, and the weights it names.

Everything is built here (``tests/lass_net_tiny.py``): a WordPiece vocabulary trained on a few
sentences, a tiny BERT, a U-Net with the published key names and small widths, random
weights saved in the official ``{"model": {"module." + key}}`` container. The comparison with
the official code itself (identical outputs at full size) is
``benchmarks/compare_lass_net_official.py``; the layout fingerprint below is what it printed.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from hsm_bench import weights
from hsm_bench.api.system import SeparationBatch
from hsm_bench.audio.resample import resample
from hsm_bench.weights import CheckpointError
from systems.lass_net import BERT_MINI, LassNet, query_text, randomise_statistics
from tests import lass_net_tiny
from tests.lass_net_tiny import TINY_ARCH

# sha256 of the sorted "key [shape]" lines of DataParallel(LASSNet('cpu')).state_dict() built by
# the official code (liuxubo717/LASS 8979776, transformers 4.30.2: 696 keys with BERT's
# position_ids), printed by benchmarks/compare_lass_net_official.py
OFFICIAL_LAYOUT_SHA256 = "a8a6f4a876d0ae3555b3c7bebf6e3552cd7fa33135524d73aaeab74a9d13bc15"
POSITION_IDS = "module.text_embedder.bert_layer.embeddings.position_ids"
# the same float32 computation in another batch shape or row order may round differently
# (other GEMM/conv kernels); repeated computations are compared exactly
TOL = 1e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lass")
    bert = lass_net_tiny.bert_mini_folder(d / "bert-mini")
    return {"bert": bert, "ckpt": lass_net_tiny.lass_checkpoint(d / "LASSNet.pt", bert, seed=1)}


def _load(files, ckpt=None, **params) -> LassNet:
    system = LassNet(**{"arch": TINY_ARCH, **params})
    with weights.overrides({"lass-net": ckpt or files["ckpt"], "bert-mini": files["bert"]}):
        system.load("cpu")
    return system


@pytest.fixture(scope="module")
def system(files):
    # 0.25 s: every clip here pads to the U-Net's minimum of 64 frames (fast)
    return _load(files, pad_to_s=0.25)


def _batch(clips: list[np.ndarray], captions: list[str]) -> SeparationBatch:
    n = max(len(c) for c in clips)
    x = torch.zeros(len(clips), 1, n)
    for k, c in enumerate(clips):
        x[k, 0, : len(c)] = torch.from_numpy(c)
    return SeparationBatch(item_ids=[str(k) for k in range(len(clips))], mixture=x,
                           lengths=torch.tensor([len(c) for c in clips]), instructions=[""] * len(clips),
                           task=["extract"] * len(clips), caption=captions, query_style=["caption"] * len(clips))  # fmt: skip


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# -- layout and loading -----------------------------------------------------------------------
def test_full_size_layout_is_the_official_one():
    from transformers import BertConfig

    with torch.device("meta"):
        full = LassNet()._build(BertConfig(**BERT_MINI))
    layout = {f"module.{k}": list(v.shape) for k, v in full.state_dict().items()}
    layout[POSITION_IDS] = [1, 512]  # saved by the transformers of 2022 (a buffer now rebuilt)
    lines = sorted(f"{k} {s}" for k, s in layout.items())
    assert len(lines) == 696
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == OFFICIAL_LAYOUT_SHA256
    # readable anchors of the same fact
    u = "module.UNet."
    assert layout[u + "encoder_block1.conv_block1.shortcut.weight"] == [32, 1, 1, 1]
    assert u + "encoder_block6.conv_block1.shortcut.weight" not in layout  # 384 -> 384: identity
    assert layout[u + "conv_block7.film1.linear.0.weight"] == [768, 256]
    assert layout[u + "decoder_block1.conv1.weight"] == [384, 384, 3, 3] and layout[u + "decoder_block3.bn1.weight"] == [384]
    assert layout[u + "decoder_block6.conv_block2.shortcut.weight"] == [32, 64, 1, 1]
    assert layout[u + "after_conv2.weight"] == [1, 32, 1, 1] and layout[u + "after_conv2.bias"] == [1]
    assert layout["module.text_embedder.linear_layer.0.weight"] == [256, 256]
    assert layout["module.text_embedder.bert_layer.embeddings.word_embeddings.weight"] == [30522, 256]
    assert not any("pooler" in k for k in layout)


def test_tiny_model_keys_match_the_full_size_names(files):
    from transformers import BertConfig

    with torch.device("meta"):
        full = LassNet()._build(BertConfig(**BERT_MINI)).state_dict()
    tiny = torch.load(files["ckpt"], map_location="cpu", weights_only=True)["model"]

    def names(keys):
        return {k.removeprefix("module.") for k in keys if ".encoder.layer." not in k or ".layer.0." in k}

    assert names(tiny) == names(full) | {POSITION_IDS.removeprefix("module.")}


def test_checkpoint_loads_strictly_and_rejects_with_the_keys_named(files, tmp_path):
    good = torch.load(files["ckpt"], map_location="cpu", weights_only=True)["model"]
    system = _load(files)  # with the legacy position_ids buffer
    assert torch.equal(system.model.UNet.after_conv2.bias, good["module.UNet.after_conv2.bias"])

    def attempt(state, name="bad.pt"):
        torch.save(state, tmp_path / name)
        return _load(files, ckpt=tmp_path / name)

    no_pos = {k: v for k, v in good.items() if k != POSITION_IDS}
    attempt({"model": no_pos}, "nopos.pt")  # newer transformers do not save it: accepted

    bad = dict(good)
    del bad["module.UNet.after_conv2.bias"]
    bad["module.UNet.extra_block.weight"] = torch.zeros(3)
    bad["module.text_embedder.linear_layer.0.weight"] = torch.zeros(5, 5)
    with pytest.raises(CheckpointError) as e:
        attempt({"model": bad})
    msg = str(e.value)
    assert "\n" not in msg and "LASS-Net" in msg
    for key in ("UNet.after_conv2.bias", "UNet.extra_block.weight", "text_embedder.linear_layer.0.weight [5, 5]"):
        assert key in msg

    with pytest.raises(CheckpointError, match=r"1 unexpected buffer values \(text_embedder.bert_layer.embeddings"):
        attempt({"model": {**good, POSITION_IDS: torch.zeros(1, 64, dtype=torch.long)}})
    with pytest.raises(CheckpointError, match=r"2 key\(s\) lack the DataParallel 'module.' prefix .*UNet.after_conv2.weight"):
        attempt({"model": {**good, "UNet.after_conv2.weight": good["module.UNet.after_conv2.weight"],
                           "UNet.after_conv2.bias": good["module.UNet.after_conv2.bias"]}})  # fmt: skip
    with pytest.raises(CheckpointError, match=r"holds \{'model': state_dict\}, this file holds keys module.text_embedder"):
        attempt(good)  # a bare state dict: the official loader needs checkpoint['model']


# -- signal path ------------------------------------------------------------------------------
def _numpy_stft(x: np.ndarray) -> np.ndarray:
    """Centred STFT by hand: reflect padding, periodic Hann frames, numpy's real FFT."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    xp = np.pad(x.astype(np.float64), 512, mode="reflect")
    frames = np.stack([xp[i : i + 1024] * w for i in range(0, len(xp) - 1023, 512)])
    return np.fft.rfft(frames, axis=1).T  # [513, frames]


def _numpy_istft(spec: np.ndarray) -> np.ndarray:
    """Windowed inverse FFT, overlap-add, divided by the overlap-added squared window, centre trimmed."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    n = 1024 + 512 * (spec.shape[1] - 1)
    y, wss = np.zeros(n), np.zeros(n)
    for i, frame in enumerate(np.fft.irfft(spec.T, n=1024, axis=1)):
        y[i * 512 : i * 512 + 1024] += w * frame
        wss[i * 512 : i * 512 + 1024] += w**2
    return (y / np.where(wss > 1e-10, wss, 1))[512:-512]


def test_conv_stft_against_a_hand_computation():
    from systems.lass_net_stft import ConvSTFT, dft_bases, hann, window_sumsquare

    x = _noise(8000 + 777, seed=3)
    stft = ConvSTFT()
    mag, phase = stft.transform(torch.from_numpy(x)[None])
    ref = _numpy_stft(x)
    assert mag.shape[1:] == ref.shape == (513, 1 + len(x) // 512)
    # float32 dot products of 1024 terms against float64 FFTs
    assert np.abs(mag[0].numpy() - np.abs(ref)).max() < 1e-5 * np.abs(ref).max()
    masked = np.abs(ref) * np.linspace(0.1, 1, 513)[:, None] * np.exp(1j * np.angle(ref))
    y = stft.inverse(mag * torch.linspace(0.1, 1, 513)[:, None].float(), phase)[0].numpy()
    assert len(y) == 512 * (len(x) // 512)
    assert np.abs(y - _numpy_istft(masked)).max() < 1e-5
    assert np.abs(stft.inverse(mag, phase)[0].numpy() - x[: len(y)]).max() < 1e-5  # perfect reconstruction

    # the synthesis basis is the pseudo-inverse of the analysis basis: a left inverse that
    # ignores the imaginary rows of DC and Nyquist (identically zero), checked in float64
    fwd, inv = dft_bases()
    w = hann(1024)
    keep = w > 1e-3  # where dividing the window out is well conditioned
    a = fwd[:, 0].double().numpy()[:, keep] / w[keep]
    b = inv[:, 0].double().numpy()[:, keep] / w[keep]
    assert np.abs(b.T @ a - np.eye(int(keep.sum()))).max() < 1e-5
    assert float(fwd[513].abs().max()) == 0 and float(inv[1025].abs().max()) < 1e-9
    wss = np.zeros(1024 + 512 * 6)
    for i in range(7):
        wss[i * 512 : i * 512 + 1024] += w**2
    assert np.abs(window_sumsquare(7) - wss).max() < 1e-6


def test_mask_and_resynthesis_path(system, monkeypatch):
    x = torch.from_numpy(_noise(16000, seed=4))[None]
    cond = torch.zeros(1, TINY_ARCH["cond_dim"])
    spec = system.stft.transform(x)[0].transpose(1, 2)[:, None]
    mask = system.model.mask(spec[:, :, :20], cond)  # 20 frames: padded to 64 inside, cropped back
    assert mask.shape == (1, 1, 20, 513) and bool((mask[..., :511] > 0).all() and (mask[..., :511] < 1).all())
    assert bool((mask[..., 511:] == 0.5).all())  # the two bins padded back as logits 0
    # the mask multiplies the mixture magnitude and the mixture phase is kept
    for value in (1.0, 0.5):
        monkeypatch.setattr(system.model, "mask", lambda s, c, v=value: torch.full_like(s, v))
        y = system.separate_clips(x, cond)
        assert y.shape == (1, 15872) and np.abs(y[0].numpy() - value * x[0, :15872].numpy()).max() < 1e-5


def test_residual_film_block_by_hand():
    from systems.lass_net_model import ResBlock

    torch.manual_seed(0)
    block = ResBlock(2, 3, cond_dim=4).eval()
    randomise_statistics(block, seed=1)
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(0, 0.1)
    x, c = torch.randn(2, 2, 6, 5), torch.randn(2, 4)

    def bn(m, v):
        return F.batch_norm(v, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def film(f, v):  # additive only, with a ReLU after the second layer
        lin1, lin2 = f.linear[0], f.linear[2]
        return v + torch.relu(torch.relu(c @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)[:, :, None, None]

    h = film(block.film1, F.conv2d(F.leaky_relu(bn(block.bn1, x), 0.01), block.conv1.weight, padding=1))
    h = film(block.film2, F.conv2d(F.leaky_relu(bn(block.bn2, h), 0.01), block.conv2.weight, padding=1))
    skip = film(block.film_res, F.conv2d(x, block.shortcut.weight, block.shortcut.bias))
    assert torch.allclose(block(x, c), h + skip, atol=1e-6)


# -- query ------------------------------------------------------------------------------------
def test_query_text_tokens_and_pooling(system, files):
    assert query_text("Acoustic guitar") == "[CLS] Acoustic guitar"  # labels: the same template
    vocab = {t: i for i, t in enumerate((files["bert"] / "vocab.txt").read_text().split("\n")[:-1])}
    words = ["[CLS]", "a", "dog", "barks", ",", "while", "cars", "pass", "by", "!"]
    assert all(w in vocab for w in words)
    tok = system.tokenizer([query_text("A Dog BARKS, while cars pass by!"), query_text("a dog")], add_special_tokens=False,
                           padding=True)  # fmt: skip
    # one leading [CLS] (from the text), no [SEP], lower-cased, punctuation split, [PAD] = 0 after
    assert tok["input_ids"][0] == [vocab[w] for w in words]
    assert tok["input_ids"][1] == [vocab["[CLS]"], vocab["a"], vocab["dog"]] + [0] * 7
    assert tok["attention_mask"][1] == [1, 1, 1] + [0] * 7

    with torch.inference_mode():
        cond = system.encode_queries(["A Dog BARKS, while cars pass by!", "a dog"])
        enc = system.model.text_embedder
        ids = torch.tensor(tok["input_ids"][:1])
        first = enc.bert_layer(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 0]
        lin = enc.linear_layer[0]
        assert torch.allclose(cond[:1], torch.relu(first @ lin.weight.T + lin.bias), atol=1e-6)
        # padding in a batch changes nothing but rounding
        assert torch.allclose(cond[1], system.encode_queries(["a dog"])[0], atol=TOL)


# -- lengths and batches ----------------------------------------------------------------------
def test_items_are_separated_at_their_own_official_length(system):
    short, long = _noise(5000, seed=5), _noise(9300, seed=6)  # pad_to = 8000 samples here
    texts = ["a dog barks", "rain falls on a metal roof"]
    with torch.inference_mode():
        both = system.separate(_batch([short, long], texts))
        alone = [system.separate(_batch([c], [t]))[0, 0] for c, t in zip((short, long), texts)]
        padded = system.separate_clips(F.pad(torch.from_numpy(short)[None], (0, 3000)), system.encode_queries(texts[:1]))[0]
        whole = system.separate_clips(torch.from_numpy(long)[None], system.encode_queries(texts[1:]))[0]
    assert both.shape == (2, 1, 9300)
    assert torch.equal(alone[0], padded[:5000])  # zero-padded to pad_to_s, then trimmed by the harness
    assert len(whole) == 9216 and torch.equal(alone[1][:9216], whole)  # whole, not cut at pad_to_s
    assert alone[1][8000:9216].abs().max() > 0 and bool((alone[1][9216:] == 0).all())  # < 512-sample tail: zeros
    assert torch.allclose(both[0, 0, :5000], alone[0], atol=TOL) and torch.allclose(both[1, 0], alone[1], atol=TOL)


# -- end to end -------------------------------------------------------------------------------
def test_tiny_checkpoint_end_to_end_through_the_pipeline(compose_config, files, tmp_path):
    from hsm_bench.pipeline.run import run_pipeline
    from tests.conftest import build_tiny_testset

    ts = build_tiny_testset(tmp_path / "ts" / "tiny" / "v1", n_items=2, seconds=0.5)
    out = run_pipeline(compose_config(
        "system=lass_net", "system.params.pad_to_s=0.5", "system.params.arch={widths:[4,6,8,10,12,12],cond_dim:16}",
        f"+weights.lass-net={files['ckpt']}", f"+weights.bert-mini={files['bert']}", f"testset.root={ts}",
        f"paths.runs_dir={tmp_path / 'runs'}", "runtime.progress=false", "metrics.names=[sdr]",
    ))  # fmt: skip
    assert out["status"] == 0, out["problem"]
    info = json.loads((tmp_path / "runs").glob("**/run.json").__next__().read_text())["system"]
    assert info["checkpoint_sha256"] == hashlib.sha256(files["ckpt"].read_bytes()).hexdigest()
    assert info["query_template"] == "[CLS] {text}" and "bert-mini" in info["text_encoder"]["model"]
    assert info["text_encoder"]["vocab_sha256"] == hashlib.sha256((files["bert"] / "vocab.txt").read_bytes()).hexdigest()
    assert info["remove"] == "mixture minus extraction (harness)"

    system = _load(files, pad_to_s=0.5)
    rows = [json.loads(line) for line in (ts / "manifest.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["extract", "remove"]
    for row in rows:
        mix16, sr = sf.read(ts / row["mixture"], dtype="float32")
        got, sr_out = sf.read(f"{out['run_dir']}/outputs/{row['id']}.wav", dtype="float32")
        assert sr_out == sr == 16000 and len(got) == len(mix16)
        mix32 = resample(mix16, 16000, 32000).astype(np.float32)
        with torch.inference_mode():
            y32 = system.separate(_batch([mix32], [row["caption"]]))[0, 0].numpy()
        # "remove" is the mixture minus the extraction of the sound it describes, at 32 kHz
        expected = y32 if row["task"] == "extract" else mix32 - y32
        assert np.abs(got - resample(expected, 32000, 16000)[: len(mix16)]).max() < TOL


# -- weights and random loading ---------------------------------------------------------------
def test_download_names_and_weight_entries():
    from hsm_bench.download import DownloadError, download_one, names_for

    assert names_for(system="lass_net") == ["lass-net", "bert-mini"]
    ckpt, bert = weights.spec("lass-net"), weights.spec("bert-mini")
    assert ckpt.source == "hf://Dongchao/pre_trained_model/LASSNet.pt" and ckpt.filename == "LASSNet.pt"
    assert "third-party" in ckpt.description and "1f8eCCYYaBdhsFqoi7PJMrT9Oo7GaWLdR" in ckpt.description
    assert "no LICENSE file" in ckpt.licence and ckpt.manual is None
    assert bert.repo_id == "prajjwal1/bert-mini" and {"config.json", "vocab.txt"} <= set(bert.extra["allow_patterns"])
    assert weights.missing(LassNet.weights) == ["lass-net", "bert-mini"]  # a fresh home has neither
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE") as e:  # conftest sets it: nothing is contacted
        download_one("lass-net")
    assert "\n" not in str(e.value)


def test_load_random_leaves_the_system_ready():
    with pytest.raises(ValueError, match="arch takes widths and cond_dim"):
        LassNet(arch={"depth": 3})
    system = LassNet(pad_to_s=0.5, arch=TINY_ARCH)
    system.load_random("cpu", seed=3)
    assert system.model.text_embedder.bert_layer.config.hidden_size == 256  # BERT-mini at full size
    with torch.inference_mode():
        y = system.separate(_batch([_noise(12000, seed=7)], ["a dog barks while a man speaks"]))
    assert y.shape == (1, 1, 12000) and bool(torch.isfinite(y).all()) and y.abs().max() > 0
    assert system.checkpoint_sha256() is None and "random" in system.info()["text_encoder"]["vocab_sha256"]


@pytest.mark.slow
def test_load_random_full_size_separates_ten_seconds():
    system = LassNet()
    system.load_random("cpu")
    with torch.inference_mode():
        y = system.separate(_batch([_noise(32000 * 10, seed=8)], ["a dog barks"]))
    assert y.shape == (1, 1, 320000) and bool(torch.isfinite(y).all())
