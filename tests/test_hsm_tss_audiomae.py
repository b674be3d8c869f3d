"""HSM-TSS's AudioMAE front-end and encoder (``systems/hsm_tss/fbank.py``, ``systems/hsm_tss/audiomae.py``).

References are computed here independently: the Kaldi fbank step by step in numpy float64, the 2-D sin-cos
table element by element from the official recipe, the patch embedding by reshaping, and the whole encoder
as float64 tensor algebra on the state dict. The official code itself is compared by
``benchmarks/compare_audiomae_official.py`` (side environment).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from hsm_bench.weights import CheckpointError
from systems.hsm_tss.audiomae import (
    AudioMAEEncoder,
    audiomae_pos_embed,
    read_audiomae_checkpoint,
)
from systems.hsm_tss.fbank import (
    NORM_MEAN,
    NORM_STD,
    TARGET_FRAMES,
    audiomae_input,
    kaldi_fbank,
)

SR = 16000
# float32 FFT rounding moves log-mel values of bands whose energy is tiny next to the frame's by up to a few
# 1e-4 on these signals (4e-4 measured; float32 torchaudio itself differs from float64 by as much)
LOGMEL_MAX_TOL, LOGMEL_MEAN_TOL = 2e-3, 1e-4


# -- an independent Kaldi fbank (numpy float64) ---------------------------------------------------
def kaldi_fbank_reference(x: np.ndarray) -> np.ndarray:
    """compute-fbank-feats with AudioMAE's options, written out step by step."""
    x = np.asarray(x, dtype=np.float64)
    size, shift, n_fft, n_mels = 400, 160, 512, 128  # 25 ms, 10 ms at 16 kHz; FFT rounded up to 2^9
    n_frames = 1 + (len(x) - size) // shift  # snip_edges: whole frames only
    frames = np.stack([x[i * shift : i * shift + size] for i in range(n_frames)])
    frames = frames - frames.mean(axis=1, keepdims=True)  # remove_dc_offset
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - 0.97 * prev  # pre-emphasis, first sample against itself
    n = np.arange(size)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1)))  # symmetric Hann ("hanning")
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2  # zero-padded to 512
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    lo, hi = mel(20.0), mel(SR / 2)
    delta = (hi - lo) / (n_mels + 1)
    banks = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        for i in range(n_fft // 2):  # the Nyquist bin carries no weight in Kaldi
            f = mel(i * SR / n_fft)
            if left < f < right:
                banks[m, i] = (f - left) / (centre - left) if f <= centre else (right - f) / (right - centre)
    return np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))


def _signals():
    rng = np.random.default_rng(0)
    t = np.arange(11111) / SR
    tone = np.concatenate([np.zeros(SR // 2), 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)])
    floor = 1e-3 * rng.standard_normal(len(tone)) * (np.arange(len(tone)) >= SR // 2)  # the silence stays exact
    return {
        "noise 1 s": 0.1 * rng.standard_normal(SR),
        "sines + noise, 11111 samples": 0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)
        + 0.01 * rng.standard_normal(len(t)),
        "silence + tone + noise floor": tone + floor,
    }


@pytest.mark.parametrize("name", list(_signals()))
def test_kaldi_fbank_matches_float64_reference(name):
    x = _signals()[name]
    ours = kaldi_fbank(torch.tensor(x, dtype=torch.float32)).double().numpy()
    ref = kaldi_fbank_reference(x.astype(np.float32))
    assert ours.shape == ref.shape == (1 + (len(x) - 400) // 160, 128)
    d = np.abs(ours - ref)
    assert d.max() < LOGMEL_MAX_TOL and d.mean() < LOGMEL_MEAN_TOL, (d.max(), d.mean())


def test_silent_frames_sit_on_the_float_epsilon_floor():
    out = kaldi_fbank(torch.zeros(SR))
    assert torch.allclose(out, torch.full_like(out, math.log(1.1920928955078125e-07)), atol=1e-6)


def test_frame_counts():
    assert kaldi_fbank(torch.randn(10 * SR)).shape == (998, 128)  # AudioMAE's 10-s clip
    assert kaldi_fbank(torch.randn(400)).shape == (1, 128)
    assert kaldi_fbank(torch.randn(559)).shape == (1, 128) and kaldi_fbank(torch.randn(560)).shape == (2, 128)
    with pytest.raises(ValueError, match="shorter than one"):
        kaldi_fbank(torch.randn(399))


def test_audiomae_input_pads_then_normalises_and_ignores_batch_padding():
    rng = np.random.default_rng(1)
    long = (0.1 * rng.standard_normal(10 * SR) + 0.05).astype(np.float32)  # a DC offset: the mean is removed
    short = (0.2 * rng.standard_normal(3 * SR + 77)).astype(np.float32)
    over = (0.1 * rng.standard_normal(11 * SR)).astype(np.float32)
    batch = torch.full((3, 11 * SR), 7.0)  # padding of large values: it must not reach any item
    for i, clip in enumerate((long, short, over)):
        batch[i, : len(clip)] = torch.from_numpy(clip)
    out = audiomae_input(batch, torch.tensor([len(long), len(short), len(over)]))
    assert out.shape == (3, TARGET_FRAMES, 128)
    pad_value = (0.0 + 4.2677393) / (2 * 4.5689974)  # zero log-mel frames, normalised
    tol = LOGMEL_MAX_TOL / (2 * NORM_STD)
    for i, clip in enumerate((long, short, over)):
        ref = kaldi_fbank_reference(clip.astype(np.float64) - clip.astype(np.float64).mean())
        ref = (ref[:TARGET_FRAMES] - (-4.2677393)) / (2 * 4.5689974)
        m = ref.shape[0]
        assert np.abs(out[i, :m].double().numpy() - ref).max() < tol
        assert torch.allclose(out[i, m:], torch.tensor(pad_value), atol=1e-6)
    assert (ref.shape[0], (1 + (len(long) - 400) // 160)) == (TARGET_FRAMES, 998)
    alone = audiomae_input(torch.from_numpy(short)[None])
    assert torch.allclose(out[1], alone[0], atol=1e-5)
    assert (NORM_MEAN, NORM_STD) == (-4.2677393, 4.5689974)


# -- the encoder -----------------------------------------------------------------------------------
def test_pos_embed_small_grid_by_hand():
    # grid T=4 x F=2 tokens, time-major; D=8: each half is 4 values [sin(p), sin(p/100), cos(p), cos(p/100)]
    # (omega_k = 10000^(-k/2), k=0,1). The official code labels the tokens as an F x T = 2 x 4 grid read row by
    # row, so token n = t*2 + f gets "column" n mod 4 in the first half and "row" n div 4 in the second.
    table = audiomae_pos_embed(8, (4, 2))[0].double()
    assert table.shape == (9, 8)
    assert torch.equal(table[0], torch.zeros(8))  # CLS
    for n in range(8):
        col, row = n % 4, n // 4
        expect = [math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100),
                  math.sin(row), math.sin(row / 100), math.cos(row), math.cos(row / 100)]  # fmt: skip
        assert torch.allclose(table[1 + n], torch.tensor(expect, dtype=torch.float64), atol=1e-7), n


def test_pos_embed_full_size_values():
    table = AudioMAEEncoder(depth=0).pos_embed[0].double()
    assert table.shape == (513, 768)
    omega = torch.tensor([10000.0 ** (-k / 192) for k in range(192)], dtype=torch.float64)
    n = 9 * 8 + 5  # token (t=9, f=5): 77 mod 64 = 13, 77 div 64 = 1
    expect = torch.cat([torch.sin(13 * omega), torch.cos(13 * omega), torch.sin(1 * omega), torch.cos(1 * omega)])
    assert torch.allclose(table[1 + n], expect, atol=1e-6)


def _tiny(feature="last", **kw):
    args = {"embed_dim": 64, "depth": 2, "num_heads": 4, "img_size": (64, 32), "feature": feature, **kw}
    return AudioMAEEncoder(**args).eval()


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if name.endswith("bias") or name == "cls_token" else 1.0 / math.sqrt(max(p[0].numel(), 1))
            p.copy_((1.0 if p.ndim == 1 and "norm" in name and name.endswith("weight") else 0.0)
                    + scale * torch.randn(p.shape, generator=g))  # fmt: skip
    return model


def test_patch_order_is_time_major():
    model = _randomise(_tiny(img_size=(1024, 128)))
    with torch.no_grad():  # blocks reduced to identities: each output token sees only its own patch
        for blk in model.blocks:
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
        x = torch.zeros(1, 1024, 128)
        base = model(x)
        for t, f in ((5, 3), (63, 0), (0, 7)):
            y = x.clone()
            y[0, 16 * t : 16 * t + 16, 16 * f : 16 * f + 16] = torch.randn(16, 16)
            changed = ((model(y) - base).abs().amax(-1) > 1e-6).nonzero()[:, 1].tolist()
            assert changed == [t * 8 + f], (t, f, changed)
    assert model.grid == (64, 8)


def test_patch_embedding_against_reshape():
    model = _randomise(_tiny(img_size=(1024, 128)))
    x = torch.randn(2, 1024, 128)
    w = model.patch_embed.proj.weight.double()[:, 0]  # [D, 16, 16]
    patches = x.double().reshape(2, 64, 16, 8, 16).permute(0, 1, 3, 2, 4).reshape(2, 512, 16, 16)  # (t, f) order
    expect = torch.einsum("bnpq,dpq->bnd", patches, w) + model.patch_embed.proj.bias.double()
    got = model.patch_embed(x[:, None]).double()
    assert torch.allclose(got, expect, atol=1e-4)


def _reference_forward(state: dict, x: torch.Tensor, heads: int, depth: int, contextual_depth: int | None):
    """The official encoder as float64 algebra on the state dict: time-major patches, timm 0.3.2 blocks
    (matmul attention with scale head_dim^-0.5, erf GELU), LayerNorm eps 1e-6."""
    s = {k: v.double() for k, v in state.items()}

    def ln(h, p):
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        return (h - mu) / torch.sqrt(var + 1e-6) * s[p + ".weight"] + s[p + ".bias"]

    b, n_t, n_f = x.shape[0], x.shape[1] // 16, x.shape[2] // 16
    patches = x.double().reshape(b, n_t, 16, n_f, 16).permute(0, 1, 3, 2, 4).reshape(b, n_t * n_f, 256)
    w = s["patch_embed.proj.weight"].reshape(-1, 256)
    h = patches @ w.T + s["patch_embed.proj.bias"] + s["pos_embed"][:, 1:]
    h = torch.cat([(s["cls_token"] + s["pos_embed"][:, :1]).expand(b, -1, -1), h], 1)
    outs = []
    for i in range(depth):
        p = f"blocks.{i}."
        a = ln(h, p + "norm1")
        qkv = a @ s[p + "attn.qkv.weight"].T + s[p + "attn.qkv.bias"]
        d = h.shape[-1]
        q, k, v = (qkv[..., j * d : (j + 1) * d].reshape(b, -1, heads, d // heads).transpose(1, 2) for j in range(3))
        att = torch.softmax(q @ k.transpose(-1, -2) * (d // heads) ** -0.5, -1)
        h = h + (att @ v).transpose(1, 2).reshape(b, -1, d) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        m = ln(h, p + "norm2") @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"]
        m = 0.5 * m * (1 + torch.erf(m / math.sqrt(2)))
        h = h + m @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"]
        outs.append(ln(h, "norm"))
    if contextual_depth is None:
        return outs[-1]
    return torch.stack(outs[contextual_depth + 1 :]).mean(0)


@pytest.mark.parametrize("feature", ["last", "contextual"])
def test_encoder_against_float64_reference(feature):
    model = _randomise(_tiny(feature, depth=4, contextual_depth=1))
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        patches, cls = model(x, return_cls=True)
    ref = _reference_forward(model.state_dict(), x, 4, 4, None if feature == "last" else 1)
    assert patches.shape == (2, 8, 64) and cls.shape == (2, 64)
    assert torch.allclose(patches.double(), ref[:, 1:], atol=1e-4)
    assert torch.allclose(cls.double(), ref[:, 0], atol=1e-4)


@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    return AudioMAEEncoder().eval()


def test_full_size_forward_on_a_10_s_clip(vit_b):
    x = audiomae_input(0.1 * torch.randn(1, 10 * SR))
    with torch.no_grad():
        out = vit_b(x)
    assert out.shape == (1, 512, 768) and torch.isfinite(out).all()
    assert vit_b.grid == (64, 8)
    assert vit_b.config() == {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0,
                              "img_size": (1024, 128), "patch_size": 16, "feature": "last", "contextual_depth": 8}
    with pytest.raises(ValueError, match="1024, 128"):
        vit_b(torch.zeros(1, 998, 128))


def test_full_size_key_layout(vit_b):
    shapes = {k: tuple(v.shape) for k, v in vit_b.state_dict().items()}
    expect = {"patch_embed.proj.weight": (768, 1, 16, 16), "patch_embed.proj.bias": (768,), "cls_token": (1, 1, 768),
              "pos_embed": (1, 513, 768), "norm.weight": (768,), "norm.bias": (768,)}  # fmt: skip
    for i in range(12):
        p = f"blocks.{i}."
        expect.update({p + "norm1.weight": (768,), p + "norm1.bias": (768,), p + "attn.qkv.weight": (2304, 768),
                       p + "attn.qkv.bias": (2304,), p + "attn.proj.weight": (768, 768),
                       p + "attn.proj.bias": (768,), p + "norm2.weight": (768,), p + "norm2.bias": (768,),
                       p + "mlp.fc1.weight": (3072, 768), p + "mlp.fc1.bias": (3072,),
                       p + "mlp.fc2.weight": (768, 3072), p + "mlp.fc2.bias": (768,)})  # fmt: skip
    assert shapes == expect
    assert "pos_embed" not in dict(vit_b.named_parameters())  # fixed


# -- checkpoints -----------------------------------------------------------------------------------
def _official_files(tmp_path, src: AudioMAEEncoder):
    """The three official layouts, written as the official code writes them."""
    enc = {k: v.clone() for k, v in src.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    r = lambda *shape: torch.randn(*shape, generator=g)
    pretrain = dict(enc, mask_token=r(1, 1, 32), decoder_pos_embed=r(1, 9, 32))
    pretrain.update({"decoder_embed.weight": r(32, 64), "decoder_embed.bias": r(32),
                     "decoder_blocks.0.norm1.weight": r(32), "decoder_blocks.0.attn.qkv.weight": r(96, 32),
                     "decoder_norm.weight": r(32), "decoder_norm.bias": r(32), "decoder_pred.weight": r(256, 32),
                     "decoder_pred.bias": r(256)})  # fmt: skip
    args = argparse.Namespace(model="mae_vit_base_patch16")  # util/misc.py save_model stores the run's args
    torch.save({"model": pretrain, "optimizer": {}, "epoch": 32, "args": args}, tmp_path / "pretrained.pth")
    finetune = {k: v for k, v in enc.items() if not k.startswith("norm.")}  # models_vit deletes norm
    fc_norm = {"fc_norm.weight": 1 + 0.1 * r(64), "fc_norm.bias": 0.1 * r(64)}
    finetune.update(fc_norm, **{"head.weight": r(527, 64), "head.bias": r(527)})
    torch.save({"model": finetune, "epoch": 60}, tmp_path / "finetuned.pth")
    from safetensors.torch import save_file

    (tmp_path / "hub").mkdir()
    save_file(enc, str(tmp_path / "hub" / "model.safetensors"))
    (tmp_path / "hub-bin").mkdir()
    torch.save(enc, tmp_path / "hub-bin" / "pytorch_model.bin")
    return enc, fc_norm


def test_checkpoint_round_trips(tmp_path):
    src = _randomise(_tiny())
    enc, fc_norm = _official_files(tmp_path, src)
    x = torch.randn(1, 64, 32)
    with torch.no_grad():
        expect = src(x)
    for name in ("pretrained.pth", "hub", "hub/model.safetensors", "hub-bin"):
        model = _tiny()
        model.load_state_dict(read_audiomae_checkpoint(tmp_path / name, model), strict=True)
        with torch.no_grad():
            assert torch.allclose(model(x), expect, atol=1e-6), name
        assert all(torch.equal(model.state_dict()[k], v) for k, v in enc.items()), name
    model = _tiny()
    model.load_state_dict(read_audiomae_checkpoint(tmp_path / "finetuned.pth", model), strict=True)
    assert torch.equal(model.norm.weight, fc_norm["fc_norm.weight"])  # fc_norm stands in for the deleted norm
    assert torch.equal(model.norm.bias, fc_norm["fc_norm.bias"])
    assert torch.equal(model.blocks[1].mlp.fc2.weight, enc["blocks.1.mlp.fc2.weight"])


def test_wrong_checkpoints_are_rejected(tmp_path):
    src = _randomise(_tiny())
    enc, _ = _official_files(tmp_path, src)
    partial = {k: v for k, v in enc.items() if k != "blocks.1.mlp.fc2.weight"}
    torch.save({"model": partial}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing \(blocks\.1\.mlp\.fc2\.weight\)"):
        read_audiomae_checkpoint(tmp_path / "partial.pth", _tiny())
    torch.save({"model": dict(enc, **{"decoder_pred.weight": torch.zeros(1), "lateral.weight": torch.zeros(1)})},
               tmp_path / "extra.pth")  # fmt: skip
    with pytest.raises(CheckpointError, match="unexpected.*lateral.weight"):
        read_audiomae_checkpoint(tmp_path / "extra.pth", _tiny())
    with pytest.raises(CheckpointError, match="wrong shape.*patch_embed.proj.weight"):
        read_audiomae_checkpoint(tmp_path / "pretrained.pth", _tiny(embed_dim=32, num_heads=4))
    with pytest.raises(CheckpointError, match=r"missing \(blocks\.2\.norm1\.weight"):  # a deeper model
        read_audiomae_checkpoint(tmp_path / "hub", _tiny(depth=3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        read_audiomae_checkpoint(tmp_path / "empty", _tiny())
