"""HSM-TSS's token codecs: TF-Codec (systems/hsm_tss/tfcodec.py) and the EnCodec/DAC wrappers (codecs.py).

References are independent: numpy STFT/ISTFT and pseudo-inverse, loops over the official VQ layout, framing
counts derived by hand from ``rpad_signal_for_codec`` and the centred STFT, and the official generator's
state-dict layout fingerprint (``benchmarks/compare_tfcodec_official.py`` prints it; that script also checks
the numbers against the official code)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from hsm_bench.weights import CheckpointError
from systems.hsm_tss.codecs import DacTokens, EncodecTokens, TFCodecTokens, TokenCodec, build_codec
from systems.hsm_tss.tfcodec import TFCodec, read_tfcodec_checkpoint
from systems.hsm_tss.tfcodec_modules import CodebookQuantizer, compressed_stft, inverse_basis

TINY = {"channels": (4, 4, 8, 8), "tcm_channels": 16, "latent_dim": 16, "n_codebooks": 4, "codebook_size": 32}
# sha256 of the sorted "key [shape]" lines of microsoft/TF-Codec's 6k generator (TFCodec(config).state_dict(),
# 1a4d327), printed by benchmarks/compare_tfcodec_official.py; 266 keys, 7,628,428 parameters
OFFICIAL_6K_LAYOUT_SHA256 = "f2e3e29bb550e35c3629234241ddc30e602311f9e4575f173c95d23649cbf5b0"


def layout_sha256(state) -> str:
    lines = sorted(f"{k} {list(v.shape)}" for k, v in state.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def randomised(model: TFCodec, seed: int = 0) -> TFCodec:
    """Every float tensor redrawn (BatchNorm statistics and PReLU slopes included, so that they matter); the
    codebooks seeded from the model's own latent groups so that codes vary."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("inverse_basis"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif "nonlinearity" in name:
                t.copy_(0.1 + 0.5 * torch.rand(t.shape, generator=g))
            elif name.endswith("weight") and ".bn_" in name:
                t.copy_(0.8 + 0.4 * torch.rand(t.shape, generator=g))
            else:  # conv/GRU weights at their initial scale; biases, h0
                scale = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 0.1
                t.copy_(scale * torch.randn(t.shape, generator=g))
        model.eval()
        groups = model._groups(model.latent(model._pad(torch.randn(2, 8000, generator=g))))  # [B, F, K, D]
        flat = groups.permute(2, 0, 1, 3).reshape(groups.shape[2], -1, groups.shape[3])
        for k, vq in enumerate(model.vq_layer_list):
            rows = flat[k, torch.randint(0, flat.shape[1], (vq.embedding.shape[1],), generator=g)]
            vq.embedding.copy_(rows[None] + 0.3 * rows.std() * torch.randn(vq.embedding.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def tiny() -> TFCodec:
    torch.manual_seed(0)
    return randomised(TFCodec(**TINY))


# -- framing and shapes ----------------------------------------------------------------------------------
def test_full_size_layout_and_10s_shapes():
    torch.manual_seed(0)
    model = TFCodec().eval()
    state = model.state_dict()
    assert len(state) == 266 and sum(p.numel() for p in model.parameters()) == 7_628_428
    assert tuple(state["vq_layer_list.15.embedding"].shape) == (1, 1024, 120)
    assert tuple(state["freq2time.istft.inverse_basis"].shape) == (322, 1, 320)
    assert layout_sha256(state) == OFFICIAL_6K_LAYOUT_SHA256
    x = 0.1 * torch.randn(1, 160000, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        codes = model.encode(x)
        assert codes.shape == (1, 500, 16) and codes.dtype == torch.long
        assert model.decode(codes).shape == (1, 160000)
    assert (model.sample_rate, model.frame_rate, model.n_codebooks, model.codebook_size) == (16000, 50.0, 16, 1024)


@pytest.mark.parametrize("n", [1, 79, 80, 81, 239, 240, 241, 319, 320, 321, 400, 8000, 8001])
def test_token_counts_follow_the_official_padding(n, tiny):
    model = tiny
    # rpad_signal_for_codec: whole hops (80), then centred-STFT frames 1 + T/80 up to a multiple of 4
    frames = math.ceil(n / 80) + 1
    frames += -frames % 4
    assert model.official_padding(n) == (frames - 1) * 80 - n
    assert model.official_token_count(n) == frames // 4
    assert model.token_count(n) == math.ceil(n / 320)
    assert model.official_token_count(n) in (model.token_count(n), model.token_count(n) + 1)
    x = torch.zeros(1, n)
    with torch.inference_mode():
        official = model.encode_official(x)
        assert official.shape == (1, frames // 4, 4)
        assert model.decode_official(official).shape == (1, 80 * (frames - 1))  # 80 (T - 1) after centre trim
        assert model.reconstruct(x).shape == (1, n)
        codes = model.encode(x)
        assert codes.shape == (1, math.ceil(n / 320), 4)
        assert model.decode(codes).shape == (1, 320 * math.ceil(n / 320))


# -- causality -------------------------------------------------------------------------------------------
def test_encoder_is_causal_with_a_5ms_lookahead(tiny):
    g = torch.Generator().manual_seed(2)
    x = 0.1 * torch.randn(1, 6400, generator=g)
    n0 = 3200  # change samples n0.. : STFT frame t covers [80 t - 160, 80 t + 160)
    y = x.clone()
    y[:, n0:] = 0.1 * torch.randn(1, 6400 - n0, generator=g)
    with torch.inference_mode():
        lx, ly = tiny.latent(tiny._pad(x)), tiny.latent(tiny._pad(y))
        cx, cy = tiny.encode(x), tiny.encode(y)
    last_clean = n0 // 80 - 2  # 80 t + 160 <= n0
    torch.testing.assert_close(lx[:, : last_clean + 1], ly[:, : last_clean + 1], rtol=0, atol=1e-6)
    assert (lx[:, last_clean + 1] - ly[:, last_clean + 1]).abs().max() > 1e-4  # the bound is tight
    steps = (n0 - 400) // 320 + 1  # token s sees samples < 320 s + 400
    assert torch.equal(cx[:, :steps], cy[:, :steps])
    assert not torch.equal(cx[:, steps:], cy[:, steps:])  # the change does reach later tokens


def test_decoder_is_causal(tiny):
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 32, (1, 20, 4), generator=g)
    s0 = 12
    other = codes.clone()
    other[:, s0:] = torch.randint(0, 32, (1, 20 - s0, 4), generator=g)
    with torch.inference_mode():
        a, b = tiny.decode(codes), tiny.decode(other)
    clean = 320 * s0 - 160  # token s writes samples [320 s - 160, 320 s + 400)
    scale = float(a.abs().max())
    torch.testing.assert_close(a[:, :clean], b[:, :clean], rtol=0, atol=1e-6 * scale)
    assert (a[:, clean : clean + 560] - b[:, clean : clean + 560]).abs().max() > 1e-3 * scale


# -- the group VQ ----------------------------------------------------------------------------------------
def test_quantizer_picks_the_nearest_code():
    g = torch.Generator().manual_seed(4)
    vq = CodebookQuantizer(dim=6, size=8)
    with torch.no_grad():
        vq.embedding.copy_(torch.randn(1, 8, 6, generator=g))
    x = torch.randn(3, 50, 6, generator=g)
    e = vq.embedding[0].detach().double().numpy()
    d = ((x.double().numpy()[..., None, :] - e) ** 2).sum(-1)  # [3, 50, 8]
    assert np.sort(d, -1)[..., 1].min() - d.min(-1).min() > 0  # no exact ties
    expected = d.argmin(-1)
    idx = vq.indices(x)
    assert idx.shape == (3, 50) and np.array_equal(idx.numpy(), expected)
    np.testing.assert_array_equal(vq.vectors(idx).detach().numpy(), e[expected].astype(np.float32))


def test_group_vq_layout_matches_the_official_split(tiny):
    """Token s, codebook k: frames 4s..4s+3 of channels [4k, 4k + 4) (TINY: 16 channels, 4 codebooks),
    flattened frame-major (MultiFrmVQBottleNeck.quantize); dequantize puts the rows back there."""
    g = torch.Generator().manual_seed(5)
    latent = torch.randn(2, 12, 16, generator=g)
    codes = tiny.quantize(latent)
    assert codes.shape == (2, 3, 4)
    books = [vq.embedding[0].detach().double().numpy() for vq in tiny.vq_layer_list]
    lat = latent.double().numpy()
    back = np.zeros_like(lat)
    for b in range(2):
        for s in range(3):
            for k in range(4):
                v = lat[b, 4 * s : 4 * s + 4, 4 * k : 4 * k + 4].reshape(-1)
                best = int(((books[k] - v) ** 2).sum(1).argmin())
                assert int(codes[b, s, k]) == best
                back[b, 4 * s : 4 * s + 4, 4 * k : 4 * k + 4] = books[k][best].reshape(4, 4)
    np.testing.assert_allclose(tiny.dequantize(codes).detach().double().numpy(), back, rtol=0, atol=1e-7)


# -- STFT / ISTFT framing ---------------------------------------------------------------------------------
def test_compressed_stft_matches_numpy():
    x = np.random.default_rng(6).standard_normal((1, 1000)).astype(np.float32)
    window = torch.hann_window(320)
    out = compressed_stft(torch.from_numpy(x), window, 80, 0.3).double().numpy()  # [1, 2, T, 161]
    padded = np.pad(x[0].astype(np.float64), 160)  # centred, zeros
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)
    frames = np.stack([padded[80 * t : 80 * t + 320] * w for t in range(1 + 1000 // 80)])
    spec = np.fft.rfft(frames, axis=-1)
    comp = np.abs(spec) ** 0.3 * np.exp(1j * np.angle(spec))
    assert out.shape == (1, 2, 13, 161)
    np.testing.assert_allclose(out[0, 0], comp.real, rtol=0, atol=2e-4)
    np.testing.assert_allclose(out[0, 1], comp.imag, rtol=0, atol=2e-4)


def test_inverse_basis_is_the_windowed_pseudo_inverse():
    fourier = np.fft.fft(np.eye(320))
    basis = np.vstack([fourier[:161].real, fourier[:161].imag])  # [322, 320]: what the STFT produces
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(320) / 320)
    norm = w / 1.5  # sum of the four overlapping squared periodic Hann windows at hop 80 is 3/2
    expected = norm * np.linalg.pinv(basis).T
    np.testing.assert_allclose(inverse_basis(320, 80)[:, 0].double().numpy(), expected, rtol=0, atol=1e-7)


def test_istft_inverts_the_stft_with_the_official_trim():
    """The official overlap-add divides by the full 4-window overlap, so after the centre trim the first and last
    80 samples (covered by 3 frames only) come out attenuated; everything between is reconstructed."""
    model = TFCodec(**TINY)
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 4000)).astype(np.float32))
    spec = compressed_stft(x, torch.hann_window(320), 80, 1.0)  # no compression: a plain STFT
    out = model.freq2time.istft(spec)
    assert out.shape == (2, 80 * (spec.shape[2] - 1) + 320)
    trimmed = out[:, 160:-160]
    torch.testing.assert_close(trimmed[:, 80:-80], x[:, 80:-80], rtol=0, atol=1e-4)
    assert (trimmed[:, :80] - x[:, :80]).abs().max() > 1e-2
    # with compression: decompression undoes |X|^0.3 (up to the 1e-7 guards)
    with torch.no_grad():
        y = model.freq2time(compressed_stft(x, torch.hann_window(320), 80, 0.3))[:, 160:-160]
    torch.testing.assert_close(y[:, 80:-80], x[:, 80:-80], rtol=0, atol=2e-3)


# -- checkpoints ----------------------------------------------------------------------------------------
def _official_file(path, state, prefix="module."):
    torch.save({"gen": {prefix + k: v for k, v in state.items()}, "disc_freq": {"conv.weight": torch.ones(2)},
                "epoch": 514000}, path)  # fmt: skip


@pytest.mark.parametrize("prefix", ["module.", "generator.", "module.generator.", ""])
def test_official_checkpoint_loads_strictly(tmp_path, tiny, prefix):
    path = tmp_path / "tfcodec_tiny.ckpt"
    _official_file(path, tiny.state_dict(), prefix)
    fresh = TFCodec(**TINY)
    fresh.load_state_dict(read_tfcodec_checkpoint(path, fresh), strict=True)
    for k, v in tiny.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_wrong_checkpoints_are_rejected_naming_keys(tmp_path, tiny):
    state = dict(tiny.state_dict())
    del state["vq_layer_list.3.embedding"]
    state["entropy_model.weight"] = torch.ones(3)
    _official_file(tmp_path / "partial.ckpt", state)
    with pytest.raises(CheckpointError, match=r"missing \(vq_layer_list\.3\.embedding\).*entropy_model\.weight"):
        read_tfcodec_checkpoint(tmp_path / "partial.ckpt", TFCodec(**TINY))
    _official_file(tmp_path / "tiny.ckpt", tiny.state_dict())
    tiny_into_6k = r"wrong shape \(h0_enc \[1, 1, 40\] \(model \[1, 1, 320\]\)"
    with pytest.raises(CheckpointError, match=tiny_into_6k):
        read_tfcodec_checkpoint(tmp_path / "tiny.ckpt", TFCodec())
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="not a TF-Codec checkpoint"):
        read_tfcodec_checkpoint(tmp_path / "list.ckpt", TFCodec(**TINY))


# -- the TokenCodec wrappers ---------------------------------------------------------------------------------
def _encodec_folder(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    cfg = EncodecConfig(num_filters=4, hidden_size=16, codebook_dim=16, num_lstm_layers=1)  # 24 kHz, hop 320
    EncodecModel(cfg).save_pretrained(str(tmp_path / "encodec"))
    return tmp_path / "encodec"


def _dac_folder(tmp_path):
    from transformers import DacConfig, DacModel

    torch.manual_seed(0)
    cfg = DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=32,
                    upsampling_ratios=[8, 5, 4, 2], hidden_size=16, n_codebooks=12, codebook_dim=4,
                    hop_length=320, sampling_rate=16000)  # fmt: skip
    DacModel(cfg).save_pretrained(str(tmp_path / "dac"))
    return tmp_path / "dac"


def _round_trip(codec, seconds, n_codebooks, frame_rate, codebook_size=1024):
    assert isinstance(codec, TokenCodec)
    assert (codec.n_codebooks, codec.frame_rate, codec.codebook_size) == (n_codebooks, frame_rate, codebook_size)
    n = round(seconds * codec.sample_rate)
    x = 0.1 * torch.randn(2, n, generator=torch.Generator().manual_seed(8))
    codes = codec.encode(x)
    frames = math.ceil(n * frame_rate / codec.sample_rate)
    assert codes.shape == (2, frames, n_codebooks) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < codebook_size
    wave = codec.decode(codes)
    assert wave.shape == (2, frames * round(codec.sample_rate / frame_rate)) and wave.is_floating_point()
    assert torch.isfinite(wave).all()
    return codes


def test_tfcodec_tokens_round_trip_and_rebuild(tmp_path):
    codec = TFCodecTokens(arch=TINY, seed=3)
    assert codec.sample_rate == 16000
    _round_trip(codec, 1.01, 4, 50.0, codebook_size=32)
    again = build_codec(codec.config())
    for k, v in codec.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k
    path = tmp_path / "tiny.ckpt"
    _official_file(path, codec.model.state_dict())
    loaded = build_codec({"kind": "tfcodec", "arch": TINY, "weights": str(path)})
    assert loaded.config() == {"kind": "tfcodec", "arch": TINY, "weights": str(path)}
    for k, v in codec.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="integers in"):
        codec.decode(torch.full((1, 2, 4), 32))


def test_encodec_tokens_round_trip(tmp_path):
    folder = _encodec_folder(tmp_path)
    codec = EncodecTokens(folder, bandwidth=6.0)
    assert codec.sample_rate == 24000  # 6 kbps at 75 frames/s of 10-bit codes: 8 codebooks
    codes = _round_trip(codec, 0.5, 8, 75.0)
    rebuilt = build_codec(codec.config())
    assert rebuilt.config() == {"kind": "encodec", "weights": str(folder), "bandwidth": 6.0}
    assert torch.equal(rebuilt.encode(0.1 * torch.randn(2, 12000, generator=torch.Generator().manual_seed(8))), codes)
    with pytest.raises(ValueError, match="bandwidth 5"):
        EncodecTokens(folder, bandwidth=5.0)


def test_dac_tokens_round_trip(tmp_path):
    folder = _dac_folder(tmp_path)
    codec = DacTokens(folder, n_quantizers=12)
    assert codec.sample_rate == 16000
    _round_trip(codec, 0.51, 12, 50.0)  # 8160 samples: padded to 26 whole hops
    assert build_codec(codec.config()).config() == {"kind": "dac", "weights": str(folder), "n_quantizers": 12}
    assert DacTokens(folder, n_quantizers=4).encode(torch.zeros(1, 640)).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="n_quantizers 13"):
        DacTokens(folder, n_quantizers=13)


def test_unknown_codec_kind():
    with pytest.raises(ValueError, match="unknown codec kind"):
        build_codec({"kind": "mp3"})
