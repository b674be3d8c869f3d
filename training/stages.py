"""HSM-TSS's training stages as Lightning modules over one :class:`HsmTssModel` (paper III, IV-C).

Every stage trains its own parameters only; everything else is frozen (``requires_grad``
off, eval mode, features computed without a graph):

============  ====================================  ===============================================================
stage         trains                                loss (paper)
============  ====================================  ===============================================================
``qaudio``    ``qaudio``                            ITC + ITM + LM, each weighted 1.0 (III-B2, IV-C), on (audio, caption)
                                                    pairs: the queried source and its caption; AudioMAE, FLAN-T5 frozen
``global``    ``global_sep`` (+ ``task_in``)        lambda1 (1 - cos) + lambda2 L1 with lambda1 = lambda2 = 1 (eq. 5-7)
                                                    between G_hat and G_tgt = Q-Audio(AudioMAE(target)); Q-Audio frozen
``local``     ``local_sep`` (+ ``task_in``,         L1 between S_hat and S_tgt = AudioMAE(target) (eq. 8), conditioned
              single variant only)                  on the ground-truth G_tgt (teacher forcing of the global input)
``joint``     ``global_sep``, ``local_sep``,        0.1 L_global + 1.0 L_local; the local stage sees G_tgt with
              ``task_in``                           probability P_gt = 0.1 per item, else the predicted G_hat (IV-C)
``decoder``   ``acoustic``                          teacher-forced cross-entropy of the codec tokens of the target
                                                    (eq. 10), conditioned on the clip's own S_tgt = AudioMAE(target):
                                                    the paper trains it on clean audio "without text labels"
============  ====================================  ===============================================================

The input of the separators is the mixture's S_mix = AudioMAE(mixture) (and G_mix =
Q-Audio(S_mix)); tasks and captions are encoded as :meth:`HsmTssModel.separate_features`
does. ``task_in`` is the identity in the paper's sizes (T5 and Q-Audio are both 768 wide);
where it is a linear map it is trained with the global stage (an assumption). The stages
``codec`` (TF-Codec fine-tuning, :mod:`training.stage_codec`) and ``mae`` (AudioMAE's masked
pre-training, :mod:`training.stage_mae`) have modules of their own: :func:`stage_module` picks.

Randomness inside a step (the P_gt switch, the ITM hard negatives that ``QAudio.losses``
draws) comes from a generator seeded by ``(seed, global step, rank)``, so a resumed run
draws exactly what the uninterrupted one would have; the checkpoint records the seed and
refuses to resume under another one.

Assumptions (docs/hsm_tss.md, "Training"): AdamW (betas 0.9/0.999, weight decay on matrices
only), linear warm-up then cosine decay to ``min_lr_ratio`` of the peak, gradient clipping
at 1.0; learning rates per stage in ``hsm_bench/conf/train``.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from hsm_bench.errors import ConfigError

SEPARATION_STAGES = ("qaudio", "global", "local", "joint", "decoder")
STAGES = ("codec", "mae", *SEPARATION_STAGES)  # the paper's order: codec and MAE first, then the separation stages
MAX_SECONDS = 10.24  # AudioMAE's window: longer training clips are cut to it

DEFAULT_LOSS = {"itc": 1.0, "itm": 1.0, "lm": 1.0, "lambda_sim": 1.0, "lambda_l1": 1.0, "p_gt": 0.1,
                "joint_global": 0.1, "joint_local": 1.0}  # fmt: skip
DEFAULT_OPTIM = {"lr": 1e-4, "weight_decay": 0.05, "betas": (0.9, 0.999), "eps": 1e-8, "warmup_steps": 1000,
                 "schedule": "cosine", "total_steps": None, "min_lr_ratio": 0.1}  # fmt: skip


def check_stage(stage: str, variant: str = "hierarchical") -> None:
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r}: one of {', '.join(STAGES)}")
    if variant == "single" and stage in ("qaudio", "global", "joint"):
        raise ConfigError(f"stage={stage} does not exist for the single-stage variant (no Q-Audio, no global stage): "
                          "train stage=local, then stage=decoder")  # fmt: skip


def trainable_modules(model, stage: str) -> dict[str, nn.Module]:
    """The submodules ``stage`` trains, by attribute name of :class:`HsmTssModel`."""
    check_stage(stage, model.variant)
    task_in = {} if isinstance(model.task_in, nn.Identity) else {"task_in": model.task_in}
    if stage == "qaudio":
        return {"qaudio": model.qaudio}
    if stage == "global":
        return {"global_sep": model.global_sep, **task_in}
    if stage == "local":
        return {"local_sep": model.local_sep, **(task_in if model.variant == "single" else {})}
    if stage == "joint":
        return {"global_sep": model.global_sep, "local_sep": model.local_sep, **task_in}
    if stage == "codec":
        return {"codec": model.codec}
    if stage == "mae":
        return {"audiomae": model.audiomae}
    return {"acoustic": model.acoustic}


def stage_module(model, text, stage: str, cfg: dict, seed: int = 0) -> L.LightningModule:
    """The Lightning module training ``stage`` of ``model`` with the composed settings ``cfg``
    (``optim``, ``loss``, and ``seconds`` for codec, ``mae`` for mae)."""
    check_stage(stage, model.variant)
    if stage == "codec":
        from training.stage_codec import CodecStage

        try:
            return CodecStage(model, optim=cfg["optim"], loss=cfg["loss"], seconds=float(cfg.get("seconds", 3.0)),
                              seed=seed, discriminator=cfg.get("discriminator"))  # fmt: skip
        except (TypeError, ValueError) as exc:  # settings of the discriminator or the crops
            raise ConfigError(f"stage=codec: {exc}") from None
    if stage == "mae":
        from training.stage_mae import MaeStage

        return MaeStage(model, optim=cfg["optim"], seed=seed, **(cfg.get("mae") or {}))
    return HsmTssStage(model, text, stage, optim=cfg["optim"], loss=cfg["loss"], seed=seed)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of the random draws of one training step: (seed, step, rank) only, so a resumed run
    draws what the uninterrupted one would have (every stage module uses it)."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank)) % (2**63 - 1)


def adamw_schedule(module, named: list, optim: dict, decayed) -> dict:
    """AdamW over ``named`` parameters (weight decay only where ``decayed(name, param)``), with
    :func:`lr_lambda` per step; ``optim.total_steps`` None means the trainer's ``max_steps``.
    What a stage's ``configure_optimizers`` returns."""
    decay = [p for n, p in named if decayed(n, p)]
    rest = [p for n, p in named if not decayed(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(optim["weight_decay"])},
                             {"params": rest, "weight_decay": 0.0}], lr=float(optim["lr"]),
                            betas=tuple(float(b) for b in optim["betas"]), eps=float(optim["eps"]))  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(module, optim))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def lr_factor(module, optim: dict):
    """The learning-rate factor per step (:func:`lr_lambda`) of ``optim``'s warm-up and schedule;
    ``optim.total_steps`` None means ``module``'s trainer's ``max_steps``."""
    total = optim["total_steps"]
    if total is None and module._trainer is not None and module.trainer.max_steps and module.trainer.max_steps > 0:
        total = module.trainer.max_steps
    warm, sched, ratio = int(optim["warmup_steps"]), str(optim["schedule"]), float(optim["min_lr_ratio"])
    if sched not in ("cosine", "constant"):
        raise ConfigError(f"optim.schedule={sched!r}: cosine or constant")
    return lambda s: lr_lambda(s, warm, total, sched, ratio)


def lr_lambda(step: int, warmup: int, total: int | None, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine down to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or not total or total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class TrainsOnly:
    """Mixin of the stage modules: ``self.model`` (an :class:`HsmTssModel`) trains only the modules
    given to :meth:`trains_only`; the rest of it is frozen and stays in eval mode whatever Lightning
    asks. The stage's own submodules (a discriminator, an MAE decoder) follow ``train(mode)`` as usual."""

    def trains_only(self, modules: dict) -> None:
        self.trained = modules
        self.model.requires_grad_(False)
        for m in modules.values():
            m.requires_grad_(True)
        self.train(True)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        if mode:
            for m in self.trained.values():
                m.train()
        return self


class HsmTssStage(TrainsOnly, L.LightningModule):
    """One training stage of ``model`` (an :class:`HsmTssModel`) with the frozen ``text`` encoder
    (:class:`systems.hsm_tss.text.TextEncoder`, kept outside the module's state)."""

    def __init__(self, model, text, stage: str, optim: dict | None = None, loss: dict | None = None, seed: int = 0):
        super().__init__()
        check_stage(stage, model.variant)
        unknown = set(optim or {}) - set(DEFAULT_OPTIM), set(loss or {}) - set(DEFAULT_LOSS)
        if unknown[0] or unknown[1]:
            raise ConfigError(f"unknown optim/loss settings: {', '.join(sorted(unknown[0] | unknown[1]))}")
        self.model, self.text, self.stage, self.seed = model, text, stage, int(seed)
        self.optim = {**DEFAULT_OPTIM, **(optim or {})}
        self.loss_cfg = {**DEFAULT_LOSS, **(loss or {})}
        self.trains_only(trainable_modules(model, stage))

    def on_fit_start(self) -> None:
        self.text.to(self.device)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"{n}.{k}", p) for n, m in self.trained.items() for k, p in m.named_parameters() if p.requires_grad]

    # -- randomness reproducible across resumes -------------------------------------------------
    def step_seed(self) -> int:
        return step_seed(self.seed, self.global_step, self.global_rank)

    def _fork_devices(self) -> list:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    # -- features -------------------------------------------------------------------------------
    def _cut(self, batch: dict) -> dict:
        n = int(MAX_SECONDS * self.model.sample_rate)
        if batch["mixture"].shape[-1] <= n:
            return batch
        return {**batch, "mixture": batch["mixture"][:, :n], "target": batch["target"][:, :n],
                "lengths": batch["lengths"].clamp(max=n)}  # fmt: skip

    def _fp32(self):
        """Frozen feature extractors and targets in float32 also under bf16-mixed training."""
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def _audiomae(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with self._fp32():
            return self.model.local_features(wave.float(), lengths)

    def _condition(self, batch: dict):
        with self._fp32():
            caption, caption_valid = self.text.captions(list(batch["caption"]))
            task, task_valid = self.text.tasks(list(batch["task"]))
        task, caption = self.model.condition(caption, caption_valid, task)
        return task, task_valid, caption, caption_valid

    # -- the stages' losses ---------------------------------------------------------------------
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{"loss": total, <part>: value ...}`` of one batch for this stage."""
        batch = self._cut(batch)
        return getattr(self, f"_loss_{self.stage}")(batch)

    def _loss_qaudio(self, batch):
        m, w = self.model, self.loss_cfg
        extract = torch.tensor([t == "extract" for t in batch["task"]], device=batch["target"].device)
        # the caption names the queried source: the target when extracting, the rest when removing
        audio = torch.where(extract[:, None], batch["target"], batch["mixture"] - batch["target"])
        s = self._audiomae(audio, batch["lengths"])
        with self._fp32():
            states, valid = self.text.captions(list(batch["caption"]))
            embeds, ids, _ = self.text.token_embeddings(list(batch["caption"]))
        with torch.random.fork_rng(devices=self._fork_devices()):
            torch.manual_seed(self.step_seed())  # the ITM negatives
            parts = m.qaudio.losses(s, states, valid, embeds, ids)
        parts["loss"] = w["itc"] * parts["itc"] + w["itm"] * parts["itm"] + w["lm"] * parts["lm"]
        return parts

    def _targets(self, batch):
        s_mix = self._audiomae(batch["mixture"], batch["lengths"])
        s_tgt = self._audiomae(batch["target"], batch["lengths"])
        g_mix = g_tgt = None
        if self.model.variant == "hierarchical":
            with torch.no_grad(), self._fp32():  # Q-Audio is frozen in every separation stage
                g_mix, g_tgt = self.model.global_features(s_mix), self.model.global_features(s_tgt)
        return s_mix, s_tgt, g_mix, g_tgt

    def _loss_global(self, batch):
        m, w = self.model, self.loss_cfg
        _, _, g_mix, g_tgt = self._targets(batch)
        task, task_valid, caption, caption_valid = self._condition(batch)
        g_hat = m.global_sep(g_mix, task, task_valid, caption, caption_valid)
        loss = m.global_sep.loss(g_hat, g_tgt, w["lambda_sim"], w["lambda_l1"])
        return {"loss": loss, "global": loss.detach()}

    def _loss_local(self, batch):
        m = self.model
        s_mix, s_tgt, _, g_tgt = self._targets(batch)
        task, task_valid, caption, caption_valid = self._condition(batch)
        s_hat, _ = m.local_sep(s_mix, g_tgt, task, task_valid, caption, caption_valid)
        loss = m.local_sep.loss(s_hat, s_tgt)
        return {"loss": loss, "local": loss.detach()}

    def _loss_joint(self, batch):
        m, w = self.model, self.loss_cfg
        s_mix, s_tgt, g_mix, g_tgt = self._targets(batch)
        task, task_valid, caption, caption_valid = self._condition(batch)
        g_hat = m.global_sep(g_mix, task, task_valid, caption, caption_valid)
        g = torch.Generator().manual_seed(self.step_seed())
        use_gt = (torch.rand(g_hat.shape[0], generator=g) < w["p_gt"]).to(g_hat.device)
        g_cond = torch.where(use_gt[:, None], g_tgt, g_hat)
        s_hat, _ = m.local_sep(s_mix, g_cond, task, task_valid, caption, caption_valid)
        l_global = m.global_sep.loss(g_hat, g_tgt, w["lambda_sim"], w["lambda_l1"])
        l_local = m.local_sep.loss(s_hat, s_tgt)
        loss = w["joint_global"] * l_global + w["joint_local"] * l_local
        return {"loss": loss, "global": l_global.detach(), "local": l_local.detach(),
                "p_gt_used": use_gt.float().mean()}  # fmt: skip

    @torch.no_grad()
    def codes(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The codec's tokens of ``wave`` ``[B, F, K]`` and their valid frames ``[B, F]``."""
        m = self.model
        c = m.token_codec
        if c.sample_rate != m.sample_rate:
            from hsm_bench.audio.resample import resample

            rows = [resample(w[: int(n)].float().cpu().numpy(), m.sample_rate, c.sample_rate)
                    for w, n in zip(wave, lengths)]  # fmt: skip
            n_max = max(len(r) for r in rows)
            wave = torch.zeros(len(rows), n_max)
            for k, r in enumerate(rows):
                wave[k, : len(r)] = torch.from_numpy(r.copy())
        with self._fp32():
            codes = c.encode(wave).clone().to(lengths.device)  # out of inference mode: embeddings save it for backward
        frames = torch.tensor([m.n_frames(int(n)) for n in lengths], device=lengths.device)
        f = min(int(frames.max()), codes.shape[1], m.acoustic.max_frames)
        valid = torch.arange(f, device=lengths.device)[None, :] < frames[:, None]
        return codes[:, :f], valid

    def _loss_decoder(self, batch):
        s_tgt = self._audiomae(batch["target"], batch["lengths"])
        codes, valid = self.codes(batch["target"], batch["lengths"])
        loss = self.model.acoustic.loss(s_tgt, codes, valid)
        return {"loss": loss, "ce": loss.detach()}

    # -- Lightning ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        parts = self.losses(batch)
        n = len(batch["task"])
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=n, sync_dist=False)
        for k, v in parts.items():
            if k != "loss":
                self.log(f"train/{k}", v, batch_size=n)
        return parts["loss"]

    def configure_optimizers(self):
        # no decay on biases, norms, learned positions and the query token
        return adamw_schedule(self, self.trainable_parameters(), self.optim,
                              lambda n, p: p.ndim >= 2 and not n.endswith(("pos", "query_tokens")))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hsm_tss"] = {"stage": self.stage, "seed": self.seed, "architecture": self.model.arch,
                                 "optim": dict(self.optim), "loss": dict(self.loss_cfg)}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from hsm_bench.weights import CheckpointError

        saved = checkpoint.get("hsm_tss") or {}
        for key, now in (("stage", self.stage), ("seed", self.seed), ("architecture", self.model.arch)):
            if saved.get(key) != now:
                raise CheckpointError(f"the Lightning checkpoint was written by a run with another {key} "
                                      f"({saved.get(key)!r}); resume with the same settings or choose a new out=")  # fmt: skip
