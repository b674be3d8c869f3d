"""HSM-TSS's codec stage (paper III-E2, IV-A3): fine-tune the TF-Codec inside an :class:`HsmTssModel` on
general audio with the official TF-Codec losses and a multi-scale mel discriminator, as a Lightning module.

Paper: "We retrain a non-predictive version of TF-Codec ... a VQ-VAE framework, including an encoder, a group
vector quantizer, and a decoder optimized end to end ... adversarial training with a multi-scale mel
discriminator [19] to replace the original single-scale frequency-domain discriminator in [51]. Other training
losses are the same as that in [51] ... we finetune from the pre-trained TF-Codec speech codec model";
"audios are cropped to 3-second segments". [51] is TF-Codec; its training code is microsoft/TF-Codec at
1a4d327 (``train.py``, ``loss_caller.py``, ``losses/``, ``models/modules.py``, ``configs/
tfcodec_config_train_stage2.yaml``, the adversarial stage). [19] is UniAudio: :mod:`training.discriminators`.

Generator loss (weights: :data:`DEFAULT_LOSS`; "official" = TF-Codec's stage-2 config and code):

=====================  ==========  =========================================================================
term                   weight      definition and source
=====================  ==========  =========================================================================
``spec``               1.0         official ``PowerCompressedMSE`` (power_compressed_mse.py L19-47): STFT 320/160
                                   (Hann, centred, zero padding), ``m = sqrt(re^2 + im^2 + 1e-7)``, ``c = (m +
                                   1e-7)^0.3``; 0.5 MSE(c) + 0.5 (0.5 MSE(c re/(m+eps)) + 0.5 MSE(c im/(m+eps)))
``mel``                0.25        official ``MultiscaleMelLoss`` "multi_window" (multiscale_mel_loss.py L65-83):
                                   windows 128 ... 2048, hop 1/4, 64 HTK mel bands 20-8000 Hz on the magnitude,
                                   L1, averaged over the 5 windows
``entropy``            0.04        official rate term (modules.py L420-424, L463-491): per codebook the entropy
                                   (bits) of the batch mean of ``softmax(-5 d^2)``, loss ``0.01 |H - target / K|``
                                   summed over codebooks; target 120 bits per 20 ms for 6 kbps
``adv``                0.001       official ``adv_loss_weight``; LSGAN (official ``adversarial_loss: 'MSE'``, also
                                   UniAudio's ``MSEGLoss``): ``mean((1 - D(x_hat))^2)``, averaged over the scales
                                   (UniAudio's normalisation; the official discriminator has one scale)
``feat``               0.1         official ``disc_feat_loss_weight``: L1 between the discriminator's feature maps
                                   of ``x_hat`` and of the target, averaged over layers and scales
``commit``             0.0         assumption, off: the official code computes ``MSE(latent, quantised)`` for
                                   the log only (the Gumbel quantiser has no commitment or codebook loss)
=====================  ==========  =========================================================================

Discriminator loss: LSGAN, ``mean((1 - D(x))^2) + mean(D(x_hat.detach())^2)`` averaged over the scales
(``gan="hinge"`` gives the official hinge alternative). LSGAN because both sources use it (TF-Codec's
6 kbps configs and UniAudio's codec), so the official weights above keep their meaning.

Order in one step, official (train.py L186-247): the generator runs once; the discriminator is updated on
the detached output; then the generator loss takes the *updated* discriminator's outputs and the generator
is updated. ``adv_start_step`` is the official ``D_warmup_time`` (0): the generator's adversarial terms start
there, the discriminator is trained from step 0. Gradient clipping is the official ``Optimizer.step``'s:
each parameter tensor's gradient separately to norm 1.0 (``max_grad_norm``).

Quantiser: :meth:`TFCodec.forward_train` with the official Gumbel-softmax (hard, straight-through) at the
temperature ``max(2.0 * 0.9999995^(step - 1), 0.5)`` (official ``temp_updates(cur_iter)`` after each
iteration: 2.0 at step 0). The codec is in train mode (BatchNorm on batch statistics, running statistics
updated, as officially); everything else of the HSM-TSS model is frozen and in eval mode.

Optimisers (:data:`DEFAULT_OPTIM`): official stage 2 uses Adam, generator lr 3e-5, discriminator lr 3e-4
with weight decay 1e-6, constant rates. Here AdamW (decoupled decay: an assumption for the discriminator's
1e-6; the generator has none, so it is Adam), optional linear warm-up and cosine as the other stages.

Data: each step takes one crop of ``seconds`` (3 s, paper) of every item's ``target`` (the clean source the
loader gives; a clip shorter than that is zero-padded as the batch holds it) at a uniformly drawn start inside
its valid samples. Crops and Gumbel noise come from generators seeded by ``(seed, global step, rank)``,
so a resumed run repeats the uninterrupted one exactly. The official code draws one start per batch
(``random_crop_duration``); one per item is an assumption.

Lightning: manual optimisation. ``trainer.global_step`` counts generator steps only (the discriminator's
optimiser is stepped directly), so ``max_steps`` means batches as in the other stages. The discriminator is
a submodule (``disc.*`` in the Lightning checkpoint, with both optimisers' and schedulers' states), never
part of HSM-TSS's checkpoint: :meth:`CodecStage.export` leaves the trained codec in ``model.codec``.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F

from hsm_bench.errors import ConfigError
from training.discriminators import MultiScaleMelDiscriminator, mel_filterbank
from training.stages import TrainsOnly, lr_factor, step_seed

EPS = 1e-7  # the official losses' eps
ENTROPY_SCALE = 0.01  # get_extra_losses_type2
TARGET_BITS_6K = 120.0  # model_config.yaml 6k_20ms_redundant target_entropy: 16 codebooks x 7.5 bits of 10

DEFAULT_LOSS = {"spec": 1.0, "amplitude_share": 0.5, "power": 0.3, "spec_window": 320, "mel": 0.25,
                "mel_windows": [128, 256, 512, 1024, 2048], "mel_bands": 64, "mel_fmin": 20.0, "mel_fmax": 8000.0,
                "entropy": 0.04, "target_entropy": None, "commit": 0.0, "adv": 0.001, "feat": 0.1, "disc": 1.0,
                "gan": "lsgan", "adv_start_step": 0, "temperature": [2.0, 0.5, 0.9999995]}  # fmt: skip
DEFAULT_OPTIM = {"lr": 3e-5, "lr_disc": 3e-4, "betas": (0.9, 0.999), "betas_disc": (0.9, 0.999), "eps": 1e-8,
                 "weight_decay": 0.0, "weight_decay_disc": 1e-6, "grad_clip": 1.0, "warmup_steps": 0,
                 "schedule": "constant", "total_steps": None, "min_lr_ratio": 0.1}  # fmt: skip


def _shared_keys() -> tuple[set, set]:
    """Keys of the other stages' settings (``hsm_bench/conf/train/base.yaml``): accepted and unused here."""
    from training.stages import DEFAULT_LOSS as STAGE_LOSS
    from training.stages import DEFAULT_OPTIM as STAGE_OPTIM

    return set(STAGE_OPTIM), set(STAGE_LOSS)


def temperature(step: int, schedule=(2.0, 0.5, 0.9999995)) -> float:
    """Official Gumbel temperature at ``step``: ``temp_updates(step - 1)`` ran after the previous iteration."""
    start, stop, decay = (float(v) for v in schedule)
    return start if step <= 0 else max(start * decay ** (step - 1), stop)


def power_compressed_mse(pred: torch.Tensor, target: torch.Tensor, window: int = 320, power: float = 0.3,
                         amplitude_share: float = 0.5) -> torch.Tensor:
    """Official ``PowerCompressedMSE.compute_loss`` (hop = window / 2)."""
    win = torch.hann_window(window, device=pred.device)

    def parts(x):
        s = torch.stft(x, window, window // 2, window, win, center=True, pad_mode="constant", return_complex=True)
        mag = (s.real**2 + s.imag**2 + EPS).sqrt()
        c = (mag + EPS) ** power
        return c, c * s.real / (mag + EPS), c * s.imag / (mag + EPS)

    cp, rp, ip = parts(pred)
    ct, rt, it = parts(target)
    spec = 0.5 * F.mse_loss(rp, rt) + 0.5 * F.mse_loss(ip, it)
    return amplitude_share * F.mse_loss(cp, ct) + (1 - amplitude_share) * spec


def multi_window_mel_l1(pred: torch.Tensor, target: torch.Tensor, windows=(128, 256, 512, 1024, 2048),
                        bands: int = 64, f_min: float = 20.0, f_max: float = 8000.0, sample_rate: int = 16000):
    """Official ``MultiscaleMelLoss.compute_loss_multi_win`` (without the optional log-L2 term, off there)."""
    total = pred.new_zeros(())
    for w in windows:
        win = torch.hann_window(w, device=pred.device)
        fb = mel_filterbank(w // 2 + 1, sample_rate, bands, f_min, f_max).to(pred.device)
        mels = []
        for x in (pred, target):
            s = torch.stft(x, w, w // 4, w, win, center=True, pad_mode="constant", return_complex=True)
            mels.append(torch.einsum("bft,fm->bmt", (s.real**2 + s.imag**2 + EPS).sqrt(), fb))
        total = total + F.l1_loss(mels[0], mels[1])
    return total / len(windows)


def code_entropy_bits(logits: torch.Tensor) -> torch.Tensor:
    """Official ``prob_perplexity``: entropy in bits of the batch mean of ``softmax(logits)``."""
    p = torch.softmax(logits.float(), dim=-1).mean(0)
    return -(p * torch.log2(p + 1e-10)).sum()


def gan_losses(kind: str, real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discriminator ``(total, real part, fake part)`` averaged over the scales."""
    r = f = 0.0
    for dr, df in zip(real, fake):
        if kind == "lsgan":
            r, f = r + ((1 - dr.float()) ** 2).mean(), f + (df.float() ** 2).mean()
        else:
            r, f = r + F.relu(1 - dr.float()).mean(), f + F.relu(1 + df.float()).mean()
    r, f = r / len(real), f / len(real)
    return r + f, r, f


def generator_adv(kind: str, fake: list) -> torch.Tensor:
    per = [((1 - d.float()) ** 2).mean() if kind == "lsgan" else F.relu(1 - d.float()).mean() for d in fake]
    return sum(per) / len(per)


def feature_matching(real: list[list], fake: list[list]) -> torch.Tensor:
    per = [sum(F.l1_loss(a.float(), b.float()) for a, b in zip(fs, rs)) / len(fs) for fs, rs in zip(fake, real)]
    return sum(per) / len(per)


def clip_each(params, max_norm: float) -> None:
    """Official ``Optimizer.step``: every parameter tensor's gradient clipped to ``max_norm`` on its own."""
    for p in params:
        if p.grad is not None:
            norm = p.grad.detach().float().norm()
            p.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0).to(p.grad.dtype))


class CodecStage(TrainsOnly, L.LightningModule):
    """Fine-tunes ``model.codec`` (a :class:`systems.hsm_tss.tfcodec.TFCodec`) against a
    :class:`MultiScaleMelDiscriminator` (``discriminator``: its constructor arguments, default UniAudio's)."""

    def __init__(self, model, optim: dict | None = None, loss: dict | None = None, seconds: float = 3.0, seed: int = 0,
                 discriminator: dict | None = None):
        super().__init__()
        if getattr(model, "codec", None) is None:
            raise ConfigError("stage=codec trains the TF-Codec inside the checkpoint; this checkpoint's codec "
                              f"({model.arch['codec'].get('kind')!r}) comes from its own folder: train it with its own code")  # fmt: skip
        shared_optim, shared_loss = _shared_keys()
        unknown = (set(optim or {}) - set(DEFAULT_OPTIM) - shared_optim) | (set(loss or {}) - set(DEFAULT_LOSS) - shared_loss)
        if unknown:
            raise ConfigError(f"unknown optim/loss settings for stage=codec: {', '.join(sorted(unknown))}")
        self.model, self.seed, self.seconds = model, int(seed), float(seconds)
        self.optim = {**DEFAULT_OPTIM, **{k: v for k, v in (optim or {}).items() if k in DEFAULT_OPTIM}}
        self.loss_cfg = {**DEFAULT_LOSS, **{k: v for k, v in (loss or {}).items() if k in DEFAULT_LOSS}}
        if self.loss_cfg["gan"] not in ("lsgan", "hinge"):
            raise ConfigError(f"loss.gan={self.loss_cfg['gan']!r}: lsgan or hinge")
        if self.seconds <= 0:
            raise ConfigError(f"seconds={seconds}: a positive crop length")
        codec = model.codec
        self.sample_rate = int(codec.sample_rate)
        target = self.loss_cfg["target_entropy"]
        if target is None:  # 120 bits for 16 x 1024 codes; the same share of the maximum for other codebooks
            target = TARGET_BITS_6K / (16 * 10) * codec.n_codebooks * math.log2(codec.codebook_size)
        self.target_bits = float(target) / codec.n_codebooks
        self.disc = MultiScaleMelDiscriminator(**{"sample_rate": self.sample_rate, **(discriminator or {})})
        self.automatic_optimization = False
        self.trains_only({"codec": codec})

    def step_seed(self, step: int | None = None) -> int:
        return step_seed(self.seed, self.global_step if step is None else step, self.global_rank)

    # -- one batch --------------------------------------------------------------------------------
    def crops(self, wave: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, n]``: one random window of ``seconds`` inside each item's valid samples."""
        n = min(round(self.seconds * self.sample_rate), wave.shape[-1])
        room = (lengths.cpu() - n).clamp(min=0)
        starts = (torch.rand(wave.shape[0], generator=generator, dtype=torch.float64) * (room + 1)).floor().long()
        starts = torch.minimum(starts, room)
        idx = (starts[:, None] + torch.arange(n)[None, :]).to(wave.device)
        return wave.float().gather(1, idx)

    def generator_losses(self, x_hat: torch.Tensor, target: torch.Tensor, out: dict) -> dict[str, torch.Tensor]:
        """The codec's non-adversarial terms (unweighted) of one output."""
        w = self.loss_cfg
        with torch.autocast(x_hat.device.type, enabled=False):
            x_hat, target = x_hat.float(), target.float()
            parts = {"spec": power_compressed_mse(x_hat, target, int(w["spec_window"]), float(w["power"]),
                                                  float(w["amplitude_share"])),
                     "mel": multi_window_mel_l1(x_hat, target, tuple(int(v) for v in w["mel_windows"]),
                                                int(w["mel_bands"]), float(w["mel_fmin"]), float(w["mel_fmax"]),
                                                self.sample_rate)}  # fmt: skip
            bits = torch.stack([code_entropy_bits(lg) for lg in out["logits"]])
            parts["entropy"] = ENTROPY_SCALE * (bits - self.target_bits).abs().sum()
            parts["entropy_bits"] = bits.sum().detach()
            parts["commit"] = F.mse_loss(out["latent"].float(), out["quantised"].detach().float())
        return parts

    def training_step(self, batch, batch_idx):
        w, o = self.loss_cfg, self.optim
        opt_g, opt_d = self.optimizers()
        step = self.global_step
        cpu_gen = torch.Generator().manual_seed(self.step_seed(step))
        noise_gen = torch.Generator(device=self.device).manual_seed(self.step_seed(step) + 1)
        target = self.crops(batch["target"], batch["lengths"], cpu_gen)
        tau = temperature(step, w["temperature"])
        out = self.model.codec.forward_train(target, tau, noise_gen)
        x_hat = out["x_hat"]
        parts = self.generator_losses(x_hat, target, out)
        loss_g = (float(w["spec"]) * parts["spec"] + float(w["mel"]) * parts["mel"]
                  + float(w["entropy"]) * parts["entropy"] + float(w["commit"]) * parts["commit"])  # fmt: skip

        # discriminator on the detached output (official: before the generator's update)
        opt_d.zero_grad(set_to_none=True)
        real_logits, _ = self.disc(target)
        fake_logits, _ = self.disc(x_hat.detach())
        loss_d, d_real, d_fake = gan_losses(w["gan"], real_logits, fake_logits)
        self.manual_backward(float(w["disc"]) * loss_d)
        clip_each(self.disc.parameters(), float(o["grad_clip"]))
        opt_d.optimizer.step()  # the raw optimiser: global_step counts generator steps only

        if step >= int(w["adv_start_step"]) and (float(w["adv"]) or float(w["feat"])):
            fake_logits, fake_feats = self.disc(x_hat)
            with torch.no_grad():
                _, real_feats = self.disc(target)
            parts["adv"] = generator_adv(w["gan"], fake_logits)
            parts["feat"] = feature_matching(real_feats, fake_feats)
            loss_g = loss_g + float(w["adv"]) * parts["adv"] + float(w["feat"]) * parts["feat"]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        clip_each(self.model.codec.parameters(), float(o["grad_clip"]))
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)  # what the generator's loss left on the discriminator is not used
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            sched.step()

        n = target.shape[0]
        self.log("train/loss", loss_g.detach(), prog_bar=True, batch_size=n)
        logged = {**{k: v.detach() for k, v in parts.items()}, "disc": loss_d.detach(), "disc_real": d_real.detach(),
                  "disc_fake": d_fake.detach(), "tau": torch.tensor(tau)}  # fmt: skip
        for k, v in logged.items():
            self.log(f"train/{k}", v, batch_size=n)
        return loss_g.detach()

    # -- optimisers, checkpoints, export ------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim
        opt_g = torch.optim.AdamW(self.model.codec.parameters(), lr=float(o["lr"]), eps=float(o["eps"]),
                                  betas=tuple(float(b) for b in o["betas"]), weight_decay=float(o["weight_decay"]))  # fmt: skip
        opt_d = torch.optim.AdamW(self.disc.parameters(), lr=float(o["lr_disc"]), eps=float(o["eps"]),
                                  betas=tuple(float(b) for b in o["betas_disc"]),
                                  weight_decay=float(o["weight_decay_disc"]))  # fmt: skip
        factor = lr_factor(self, o)
        scheds = [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], [{"scheduler": s, "interval": "step"} for s in scheds]

    def _meta(self) -> dict:
        return {"stage": "codec", "seed": self.seed, "architecture": self.model.arch,
                "discriminator": dict(self.disc.config), "seconds": self.seconds}  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hsm_tss"] = {**self._meta(), "optim": dict(self.optim), "loss": dict(self.loss_cfg)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from hsm_bench.weights import CheckpointError

        saved, now = checkpoint.get("hsm_tss") or {}, self._meta()
        for key in ("stage", "seed", "architecture", "discriminator"):
            if saved.get(key) != now[key]:
                raise CheckpointError(f"the Lightning checkpoint was written by a run with another {key} "
                                      f"({saved.get(key)!r}); resume with the same settings or choose a new out=")  # fmt: skip
        if not any(k.startswith("disc.") for k in checkpoint.get("state_dict", {})):
            raise CheckpointError("the Lightning checkpoint holds no discriminator (disc.*): it was not written by "
                                  "stage=codec; choose a new out=")  # fmt: skip
        if len(checkpoint.get("optimizer_states") or []) != 2:
            raise CheckpointError("the Lightning checkpoint does not hold the codec stage's two optimisers "
                                  "(generator, discriminator); choose a new out=")  # fmt: skip

    def export(self, model=None):
        """The HSM-TSS model with the trained codec in ``model.codec`` (eval mode, frozen again); the
        discriminator stays behind. ``model`` another :class:`HsmTssModel` of the same architecture: the codec's
        tensors are copied into it."""
        target = self.model if model is None or model is self.model else model
        if target is not self.model:
            if getattr(target, "codec", None) is None:
                raise ConfigError("export: the model has no TF-Codec to receive the trained weights")
            target.codec.load_state_dict(self.model.codec.state_dict(), strict=True)
        target.codec.eval()
        target.freeze_frozen()
        return target
