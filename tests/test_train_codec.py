"""HSM-TSS codec stage (training/stage_codec.py, training/discriminators.py): the multi-scale mel
discriminator's shapes, input and gradients; the Gumbel training path of the TF-Codec quantiser against the
nearest code and the Gumbel-max law; the reconstruction loss falls on a fixed batch; discriminator and
generator both step; nothing but the codec and the discriminator changes; exact resume; the trained codec
encodes and decodes in eval mode. Tiny random models (tests/hsm_tss_tiny.py); nothing is downloaded."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

L = pytest.importorskip("lightning")

from tests.hsm_tss_tiny import TINY_CODEC, tiny_arch, tiny_model, tiny_t5

SR = 16000
N = 8000  # 0.5-s batches: the stage crops `seconds` of them
DISC = {"hops": [16, 32], "channels": [32, 64]}
SECONDS = 0.4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    return tiny_arch("hierarchical", tiny_t5(tmp_path_factory.mktemp("codec-t5") / "t5"))


def _batch():
    t = torch.arange(N) / SR
    target = torch.stack([0.3 * torch.sin(2 * math.pi * 440 * t), 0.2 * torch.sign(torch.sin(2 * math.pi * 300 * t))])
    return {"mixture": target.clone(), "target": target, "lengths": torch.tensor([N, N - 1500])}


class _Repeat(torch.utils.data.IterableDataset):
    def __iter__(self):
        while True:
            yield _batch()


class _Record:
    """Lightning callback keeping every step's logged metrics."""

    def __new__(cls, rows: list):
        from lightning.pytorch.callbacks import Callback

        class Record(Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                rows.append({k: float(v) for k, v in trainer.callback_metrics.items()})

        return Record()


def _stage(model, seed=0, **loss):
    from training.stage_codec import CodecStage

    torch.manual_seed(100 + seed)  # the discriminator's initialisation
    return CodecStage(model, {"lr": 1e-3, "lr_disc": 1e-3}, loss or None, seconds=SECONDS, seed=seed,
                      discriminator=DISC)  # fmt: skip


def _fit(stage, steps, rows=None, ckpt_path=None):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[_Record(rows if rows is not None else [])])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(stage, torch.utils.data.DataLoader(_Repeat(), batch_size=None), ckpt_path=ckpt_path)
    return trainer


# -- discriminator ----------------------------------------------------------------------------------------
def _conv_out(n, strides=(1, 2, 1, 2, 1, 2, 1)):
    for s in strides:  # 3x3 kernel after a reflection pad of 1
        n = (n - 1) // s + 1
    return n


def test_discriminator_shapes_features_and_gradients():
    from training.discriminators import MultiScaleMelDiscriminator

    torch.manual_seed(0)
    disc = MultiScaleMelDiscriminator(**DISC)
    wave = (0.1 * torch.randn(2, 4000)).requires_grad_(True)
    logits, feats = disc(wave)
    assert len(logits) == len(feats) == 2
    for hop, c, lg, fs in zip(DISC["hops"], DISC["channels"], logits, feats):
        mels, frames = 2 * hop + 1, 1 + 4000 // hop  # 4 hop / 2 + 1 bands; centred STFT frames
        assert list(lg.shape) == [2, 1, _conv_out(mels), _conv_out(frames)]
        assert [f.shape[1] for f in fs] == [c // 32, c // 16, c // 8, c // 4, c // 2, c]
    loss = sum(lg.mean() for lg in logits) + sum(f.abs().mean() for fs in feats for f in fs)
    loss.backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and wave.grad.abs().max() > 0
    grads = [p.grad for p in disc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_discriminator_input_matches_numpy():
    """The "double" mel input of one scale against a numpy STFT (reflect-padded frames, normalised rfft)."""
    from training.discriminators import MelInput, mel_filterbank

    hop = 16
    n_fft = 4 * hop
    rng = np.random.default_rng(0)
    x = 0.2 * rng.standard_normal(1000)
    got = MelInput(hop, SR)(torch.from_numpy(x).float()[None])[0].double().numpy()
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i : i + n_fft] * window for i in range(0, len(padded) - n_fft + 1, hop)])
    spec = np.fft.rfft(frames, axis=1) / math.sqrt(n_fft)
    mag = np.sqrt(np.maximum(np.abs(spec) ** 2, 1e-7))
    # UniAudio's filterbank: HTK triangles over linspace(0, 8000, bins), clamped to [1e-6, 1]
    bins = n_fft // 2 + 1
    freqs = np.linspace(0, SR // 2, bins)
    edges = 700 * (10 ** (np.linspace(0, 2595 * math.log10(1 + 8000 / 700), bins + 2) / 2595) - 1)
    fb = np.empty((bins, bins))
    for m in range(bins):
        lo, mid, hi = edges[m : m + 3]
        fb[:, m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 1e-6, 1)
    mel = (mag @ fb).T
    level = np.clip((20 * np.log10(mel) - 20 + 100) / 100, 0, 1)
    assert np.abs(got[0] - mel).max() < 1e-4 * max(1.0, np.abs(mel).max())
    assert np.abs(got[1] - level).max() < 1e-4
    assert np.abs(mel_filterbank(bins, SR, bins, floor=1e-6).double().numpy() - fb).max() < 1e-6


def test_loss_mel_filterbank_matches_librosa_htk():
    librosa = pytest.importorskip("librosa")
    from training.discriminators import mel_filterbank

    for w in (128, 2048):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa flags the empty low bands of the 128-point window, as intended
            want = librosa.filters.mel(sr=SR, n_fft=w, n_mels=64, fmin=20.0, fmax=8000.0, htk=True, norm=None).T
        assert np.abs(mel_filterbank(w // 2 + 1, SR, 64, 20.0, 8000.0).numpy() - want).max() < 1e-5


# -- the Gumbel quantiser ------------------------------------------------------------------------------------
def test_temperature_schedule_is_the_official_one():
    from training.stage_codec import temperature

    assert temperature(0) == 2.0 and temperature(1) == 2.0  # temp_updates(i) runs after iteration i
    assert abs(temperature(2) - 2.0 * 0.9999995) < 1e-12
    assert abs(temperature(1_000_001) - 2.0 * math.exp(1_000_000 * math.log(0.9999995))) < 1e-9
    assert temperature(10**8) == 0.5


def test_gumbel_path_selects_the_nearest_code_and_reaches_the_encoder():
    from systems.hsm_tss.tfcodec import TFCodec

    torch.manual_seed(0)
    codec = TFCodec(**TINY_CODEC["arch"]).eval()
    for m in codec.modules():  # a random decoder is near silence: louder, so the gradients are not tiny
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.fill_(0.9)
    wave = 0.3 * torch.randn(2, 3000)
    with torch.no_grad():
        out = codec.forward_train(wave, 1e-4, noise=False)
        groups = codec._groups(codec.latent(codec._pad(wave)))
        nearest = torch.stack([torch.cdist(groups[:, :, k], vq.embedding[0][None].expand(2, -1, -1)).argmin(-1)
                               for k, vq in enumerate(codec.vq_layer_list)], dim=-1)  # fmt: skip
        ref = codec.reconstruct(wave)
    assert torch.equal(out["codes"], nearest)
    assert torch.equal(out["codes"], codec.encode_official(wave))
    scale = float(ref.abs().max())
    assert float((out["x_hat"] - ref).abs().max()) <= 1e-5 * max(scale, 1e-3)

    codec.train()
    out = codec.forward_train(wave, 2.0, torch.Generator().manual_seed(0))
    (out["x_hat"] ** 2).mean().backward()
    for p in (codec.enc_list[0].conv.weight, codec.gru_enc.weight_hh_l0, codec.vq_layer_list[0].embedding):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0


def test_gumbel_samples_follow_the_softmax_of_the_logits():
    """Gumbel-max: the hard choice is code ``m`` with probability softmax(-5 d^2)_m, whatever the temperature."""
    from systems.hsm_tss.tfcodec_modules import CodebookQuantizer

    vq = CodebookQuantizer(2, 4)
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[[0.0, 0.0], [0.3, 0.0], [0.0, 0.5], [0.6, 0.6]]]))
    x = torch.tensor([0.1, 0.1]).expand(40000, 2)
    d2 = np.array([0.02, 0.05, 0.17, 0.5])  # squared distances to the 4 codes, by hand
    p = np.exp(-5 * d2) / np.exp(-5 * d2).sum()
    for tau in (0.5, 2.0):
        q, idx, logits = vq.relaxed(x, tau, torch.Generator().manual_seed(1))
        freq = np.bincount(idx.numpy(), minlength=4) / len(idx)
        assert np.abs(freq - p).max() < 0.012
        assert torch.allclose(q, vq.embedding[0][idx], atol=1e-6)
        assert np.abs(logits[0].detach().numpy() + 5 * d2).max() < 1e-5


# -- the stage ----------------------------------------------------------------------------------------------
def test_reconstruction_loss_falls_on_a_fixed_batch(arch):
    rows: list = []
    _fit(_stage(tiny_model(arch)), 30, rows)
    rec = [r["train/spec"] + 0.25 * r["train/mel"] for r in rows]
    assert len(rec) == 30 and all(math.isfinite(v) for v in rec)
    assert np.mean(rec[-3:]) <= 0.7 * rec[0], rec


def test_generator_and_discriminator_alternate_and_only_they_change(arch):
    model = tiny_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = _stage(model)
    disc_before = {k: v.clone() for k, v in stage.disc.state_dict().items()}
    rows: list = []
    trainer = _fit(stage, 3, rows)
    after = model.state_dict()
    for k, v in before.items():
        if not k.startswith("codec."):
            assert torch.equal(v, after[k]), k
    codec_params = [k for k, _ in model.codec.named_parameters()]
    assert sum(not torch.equal(before[f"codec.{k}"], after[f"codec.{k}"]) for k in codec_params) >= len(codec_params) // 2
    disc_after = stage.disc.state_dict()
    assert all(not torch.equal(disc_before[k], disc_after[k]) for k in disc_before if "original1" in k)
    opt_g, opt_d = trainer.optimizers
    steps = [int(s["step"]) for o in (opt_g, opt_d) for s in o.state.values()]
    assert set(steps) == {3}  # both optimisers stepped once per batch
    assert trainer.global_step == 3  # generator steps only
    assert all("train/disc" in r and "train/adv" in r and "train/feat" in r for r in rows)


def test_resume_equals_the_uninterrupted_run(arch, tmp_path):
    k = 3
    full_rows: list = []
    full = _stage(tiny_model(arch))
    _fit(full, k + 1, full_rows)

    first = _stage(tiny_model(arch))
    trainer = _fit(first, k)
    ckpt = tmp_path / "k.ckpt"
    trainer.save_checkpoint(str(ckpt))
    resumed = _stage(tiny_model(arch, seed=5), seed=0)  # other initial weights: the checkpoint must restore them all
    rows: list = []
    _fit(resumed, k + 1, rows, ckpt_path=str(ckpt))
    assert len(rows) == 1
    assert abs(rows[0]["train/loss"] - full_rows[k]["train/loss"]) <= 1e-5 * abs(full_rows[k]["train/loss"])
    for a, b in ((full.model.codec, resumed.model.codec), (full.disc, resumed.disc)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.allclose(sa[key].float(), sb[key].float(), rtol=1e-5, atol=1e-6), key


def test_resume_refuses_another_seed(arch):
    from hsm_bench.weights import CheckpointError

    stage = _stage(tiny_model(arch))
    saved: dict = {"state_dict": {"disc.x": 0}, "optimizer_states": [{}, {}]}
    stage.on_save_checkpoint(saved)
    stage.on_load_checkpoint(saved)  # its own metadata loads
    with pytest.raises(CheckpointError, match="another seed"):
        _stage(tiny_model(arch), seed=1).on_load_checkpoint(saved)


def test_trained_codec_encodes_and_decodes_in_eval_mode(arch):
    from systems.hsm_tss.tfcodec import TFCodec

    model = tiny_model(arch)
    initial = {k: v.clone() for k, v in model.codec.state_dict().items()}
    stage = _stage(model)
    _fit(stage, 2)
    out = stage.export(model)
    assert out is model and not model.codec.training
    assert not any(p.requires_grad for p in model.parameters())
    state = model.codec.state_dict()
    assert any(not torch.equal(initial[k], state[k]) for k in initial)

    wave = _batch()["target"][:, :3200]
    codes = model.token_codec.encode(wave)
    assert list(codes.shape) == [2, 10, TINY_CODEC["arch"]["n_codebooks"]]
    decoded = model.token_codec.decode(codes)
    assert list(decoded.shape) == [2, 3200] and torch.isfinite(decoded).all()
    fresh = TFCodec(**TINY_CODEC["arch"])  # an independent instance with the trained tensors
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.encode(wave), codes)
        assert torch.allclose(fresh.decode(codes), decoded, atol=1e-6)

    other = tiny_model(arch, seed=3)
    stage.export(other)  # copies the trained codec into another model of the same architecture
    assert all(torch.equal(other.codec.state_dict()[k], state[k]) for k in state)
