"""HSM-TSS's ``mae`` stage (training/stage_mae.py): patches in AudioMAE's order, the official masking and
loss checked against loops and hand values, the masked encoder pass against ``AudioMAEEncoder.forward``,
and the Lightning stage (overfits a batch, trains only AudioMAE + its decoder, resumes exactly).
Tiny random models (tests/hsm_tss_tiny.py); nothing is downloaded."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("lightning")
# the frozen parts of HsmTssModel are in eval mode on purpose
pytestmark = [pytest.mark.filterwarnings("ignore:.*module\\(s\\) in eval mode.*"), pytest.mark.usefixtures("one_thread")]

from tests.hsm_tss_tiny import tiny_arch, tiny_model, tiny_t5

SMALL_DECODER = {"dim": 32, "depth": 1, "num_heads": 4, "mlp_ratio": 2.0}




@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    return tiny_arch("hierarchical", tiny_t5(tmp_path_factory.mktemp("mae-t5") / "t5"))


def _stage(model, **kw):
    from training.stage_mae import MaeStage

    optim = {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant", **kw.pop("optim", {})}
    return MaeStage(model, optim=optim, decoder=kw.pop("decoder", SMALL_DECODER), **kw)


def _batch(n=2, seconds=0.5):
    from training.data import SyntheticMixtures, collate

    ds = SyntheticMixtures(n_items=n, seconds=seconds, seed=3)
    return collate([ds[i] for i in range(n)])


def _data(n_items=2, batch=2):
    from training.data import data_module

    return data_module("synthetic", {"n_items": n_items, "seconds": 0.5}, 0, batch)[0]


def _trainer(steps, **kw):
    import lightning as L

    return L.Trainer(max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, use_distributed_sampler=False, **kw)  # fmt: skip


# -- patches ------------------------------------------------------------------------------------
def test_patchify_order_round_trip_and_the_encoders_patch_order():
    from systems.hsm_tss.audiomae import PatchEmbed
    from training.stage_mae import patchify, unpatchify

    x = torch.randn(2, 1024, 128)
    p = patchify(x)
    assert p.shape == (2, 512, 256)
    for b in range(2):  # patch t * 8 + f = frames 16t.., bins 16f.., its 256 values frame by frame
        for t in range(64):
            for f in range(8):
                assert torch.equal(p[b, t * 8 + f], x[b, 16 * t : 16 * t + 16, 16 * f : 16 * f + 16].reshape(-1))
    assert torch.equal(unpatchify(p), x)
    assert torch.equal(patchify(x[:, None]), p)  # [B, 1, H, W] like the official input
    # the encoder's Conv2d patch embedding with a one-hot kernel per output channel reads patches the same way
    embed = PatchEmbed(16, 256)
    with torch.no_grad():
        embed.proj.weight.copy_(torch.eye(256).reshape(256, 1, 16, 16))
        embed.proj.bias.zero_()
        out = embed(x[:, None])
    assert float((out - p).abs().max()) <= 1e-5


# -- masking ------------------------------------------------------------------------------------
def test_masking_keeps_the_official_count_per_sample_and_per_seed():
    from training.stage_mae import random_masking

    x = torch.arange(3 * 512, dtype=torch.float32).reshape(3, 512, 1).expand(-1, -1, 4).contiguous()
    kept, mask, ids_restore = random_masking(x, 0.8, torch.Generator().manual_seed(7))
    keep = round(512 * (1 - 0.8))
    assert keep == 102 and kept.shape == (3, keep, 4)
    assert torch.equal(mask.sum(1), torch.full((3,), 512.0 - keep))
    noise = torch.rand(3, 512, generator=torch.Generator().manual_seed(7))  # the same draw, sorted by hand
    for b in range(3):
        smallest = sorted(range(512), key=lambda i: float(noise[b, i]))[:keep]
        assert kept[b, :, 0].long().tolist() == [b * 512 + i for i in smallest]  # kept in order of rising noise
        assert [i for i in range(512) if mask[b, i] == 0] == sorted(smallest)
        assert torch.equal(torch.sort(ids_restore[b]).values, torch.arange(512))
    assert not torch.equal(mask[0], mask[1]) and not torch.equal(mask[1], mask[2])
    _, again, _ = random_masking(x, 0.8, torch.Generator().manual_seed(7))
    _, other, _ = random_masking(x, 0.8, torch.Generator().manual_seed(8))
    assert torch.equal(mask, again) and not torch.equal(mask, other)


def test_loss_by_hand():
    from training.stage_mae import masked_loss

    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]]])
    pred = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    # raw: patch 1 errors 1, 0, 4, 1 -> 1.5; patch 2: 25 each -> 25; patch 0 is kept, not counted
    assert float(masked_loss(pred, target, mask, False)) == pytest.approx((1.5 + 25.0) / 2, rel=1e-6)
    # normalised: patch 1 mean 1, unbiased var 4/3 -> values -+1/sqrt(4/3 + 1e-6); patch 2 all zero
    s = 1.0 / math.sqrt(4.0 / 3.0 + 1e-6)
    p1 = ((1 + s) ** 2 + s**2 + (0 - s) ** 2 + (1 - s) ** 2) / 4
    assert float(masked_loss(pred, target, mask, True)) == pytest.approx((p1 + 0.0) / 2, rel=1e-6)


# -- the masked encoder pass is the encoder ----------------------------------------------------
def test_unmasked_pass_equals_the_encoder_forward(arch):
    from training.stage_mae import encode_masked, unshuffle

    enc = tiny_model(arch).audiomae.eval()
    with torch.no_grad():
        fbank = torch.randn(2, 1024, 128) * 0.5
        latent, mask, ids_restore = encode_masked(enc, fbank, 0.0, torch.Generator().manual_seed(1))
        patches, cls = enc(fbank, return_cls=True)
    assert latent.shape == (2, 513, 32) and float(mask.sum()) == 0.0
    assert not torch.equal(ids_restore[0], torch.arange(512))  # the tokens really were shuffled
    assert float((unshuffle(latent[:, 1:], ids_restore) - patches).abs().max()) <= 1e-5
    assert float((latent[:, 0] - cls).abs().max()) <= 1e-5


def test_decoder_puts_mask_tokens_in_the_removed_positions(arch):
    """A decoder without blocks predicts, per position, a function of
    (embedded latent or mask token) + position only; removed positions all see the mask token."""
    from training.stage_mae import MaeDecoder, encode_masked

    torch.manual_seed(0)
    enc = tiny_model(arch).audiomae.eval()
    dec = MaeDecoder(32, (64, 8), 16, dim=32, depth=0, num_heads=4).eval()
    with torch.no_grad():
        latent, mask, ids_restore = encode_masked(enc, torch.randn(1, 1024, 128), 0.8, torch.Generator().manual_seed(2))
        pred = dec(latent, ids_restore)
        pos = dec.decoder_pos_embed[0, 1:]
        removed = mask[0].bool()
        by_hand = dec.decoder_pred(dec.decoder_norm(dec.mask_token[0] + pos[removed]))
        assert float((pred[0, removed] - by_hand).abs().max()) <= 1e-5
        kept_pos = torch.nonzero(~removed)[:, 0]
        # kept tokens come back in their own positions: latent row 1 + k is the k-th smallest noise, which is
        # the patch ids_restore maps to rank k
        rank = ids_restore[0, kept_pos]
        by_hand = dec.decoder_pred(dec.decoder_norm(dec.decoder_embed(latent[0, 1 + rank]) + pos[kept_pos]))
        assert float((pred[0, kept_pos] - by_hand).abs().max()) <= 1e-5


# -- the Lightning stage -------------------------------------------------------------------------
def test_overfits_a_fixed_batch_and_trains_only_audiomae_and_decoder(arch):
    model = tiny_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = _stage(model)
    batch = _batch()

    def probe():  # the same masks before and after: the loss on one fixed draw
        return float(stage.losses(batch, torch.Generator().manual_seed(123))["loss"])

    with torch.no_grad():
        first = probe()
    dec_before = {k: v.clone() for k, v in stage.decoder.state_dict().items()}
    _trainer(60).fit(stage, datamodule=_data(n_items=2))  # the same two clips every step, new masks each step
    with torch.no_grad():
        last = probe()
    assert math.isfinite(last) and last <= 0.5 * first, (first, last)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    audiomae_params = {f"audiomae.{k}" for k, _ in model.audiomae.named_parameters()}
    assert changed == audiomae_params  # every encoder parameter moved; nothing else (pos_embed is fixed)
    assert all(not torch.equal(dec_before[k], v) for k, v in stage.decoder.named_parameters())
    # export: the trained encoder stays in model.audiomae, frozen as HSM-TSS uses it; a copy into another model
    stage.export()
    assert not any(p.requires_grad for p in model.parameters()) and not model.audiomae.training
    other = stage.export(tiny_model(arch, seed=5))
    assert all(torch.equal(a, b) for a, b in zip(other.audiomae.state_dict().values(),
                                                 model.audiomae.state_dict().values()))  # fmt: skip


def test_resume_equals_uninterrupted(arch, tmp_path):
    k = 3
    optim = {"schedule": "cosine", "warmup_steps": 2, "total_steps": 10}
    losses = {}

    def run(name, steps, ckpt_in=None, ckpt_out=None):
        import lightning as L

        class Record(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                losses.setdefault(name, {})[trainer.global_step - 1] = float(outputs["loss"])
                losses.setdefault(f"{name} {steps}", []).append(trainer.global_step - 1)

        stage = _stage(tiny_model(arch), optim=optim)
        trainer = _trainer(steps, callbacks=[Record()])
        trainer.fit(stage, datamodule=_data(n_items=8), ckpt_path=ckpt_in)  # a new batch every step
        if ckpt_out:
            trainer.save_checkpoint(str(ckpt_out))
        return stage

    whole = run("whole", k + 1)
    run("parts", k, ckpt_out=tmp_path / "k.ckpt")
    resumed = run("parts", k + 1, ckpt_in=str(tmp_path / "k.ckpt"))
    assert losses[f"parts {k + 1}"] == [k]  # the resumed run trained one step, from the checkpoint
    a, b = losses["whole"], losses["parts"]
    assert sorted(a) == sorted(b) == list(range(k + 1))
    for step in range(k + 1):  # float32 on one thread: the same kernels in the same order
        assert abs(a[step] - b[step]) <= 1e-6 * max(1.0, abs(a[step])), (step, a[step], b[step])
    sa, sb = whole.state_dict(), resumed.state_dict()
    assert any(key.startswith("decoder.") for key in sa)
    worst = max(float((sa[key] - sb[key]).abs().max()) for key in sa if sa[key].is_floating_point())
    assert worst <= 1e-6, worst

    from hsm_bench.weights import CheckpointError

    with pytest.raises(CheckpointError, match="seed"):  # another seed draws other masks: refused
        _trainer(k + 1).fit(_stage(tiny_model(arch), optim=optim, seed=4), datamodule=_data(n_items=8),
                            ckpt_path=str(tmp_path / "k.ckpt"))  # fmt: skip


def test_settings_errors_are_one_line(arch):
    from hsm_bench.errors import ConfigError

    model = tiny_model(arch)
    for kw, words in (({"mask_ratio": 0.0}, "mask_ratio"), ({"clips": "all"}, "clips"),
                      ({"optim": {"lr_max": 1.0}}, "lr_max"), ({"decoder": {"width": 8}}, "width")):  # fmt: skip
        with pytest.raises(ConfigError, match=words) as info:
            _stage(model, **kw)
        assert "\n" not in str(info.value)
