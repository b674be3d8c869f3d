"""HSM-TSS's ``mae`` stage: AudioMAE's masked-autoencoder pre-training of ``model.audiomae`` (paper III-B1, IV-A2).

The paper pre-trains its AudioMAE encoder (ViT-B/16) as a masked autoencoder on AudioSet-2M and, "following
MW-MAE [48]", uses "a small 4-layer transformer-based decoder with a width of 384 and 8 attention heads". The
definitions here are the official AudioMAE pre-training code (facebookresearch/AudioMAE at bd60e29,
``models_mae.py``), with that decoder size:

* :func:`patchify` / :func:`unpatchify` (``patchify`` L179-210 with ``audio_exp``, ``unpatchify`` L212-223): the
  ``[B, 1024, 128]`` fbank cut into 16 x 16 patches, time-major (patch ``t * 8 + f`` covers frames
  ``16 t ..`` and mel bins ``16 f ..``: the order of ``AudioMAEEncoder.patch_embed``), each patch's 256 values
  frame-major (``nchpwq -> nhwpqc``). ``unpatchify`` returns ``[B, 1024, 128]`` (the official adds the channel).
* :func:`random_masking` (L225-250): per sample, uniform noise per patch, ``argsort``; the
  ``int(L * (1 - mask_ratio))`` patches of smallest noise are kept (102 of 512 at the official
  ``mask_ratio=0.8``, ``main_pretrain.py`` L54), ``mask`` is 1 on removed patches, ``ids_restore`` undoes the
  shuffle. The noise comes from a ``torch.Generator`` (on the CPU) instead of the global RNG, and the sort is
  stable (ties, which float32 noise can produce, then break the same on every device).
* :func:`encode_masked` (``forward_encoder`` L306-330): patch embedding + ``pos_embed[1:]``, masking, CLS
  (``cls_token + pos_embed[0]``) in front, every block, the final ``norm``. It runs the encoder's own
  submodules, so ``AudioMAEEncoder.forward`` stays untouched; with ``mask_ratio=0`` it is that ``forward``
  with ``feature="last"`` (tokens in shuffled order; :func:`unshuffle` puts them back). The MAE pass always
  ends in ``norm`` of the last block, as the official one does, whatever ``feature`` the model separates with.
* :class:`MaeDecoder` (``decoder_mode=0`` of ``__init__`` L66-120 and ``forward_decoder`` L358-399):
  ``decoder_embed`` (D -> 384), the ``mask_token`` in every removed position, un-shuffled, the CLS token in
  front, plus fixed 2-D sin-cos positions built exactly like the encoder's (``decoder_pos_embed``), 4 pre-norm
  blocks with 8 heads and MLP ratio 4, ``decoder_norm``, ``decoder_pred`` (384 -> 256), CLS dropped. Attribute
  names are the official ``decoder_*`` ones. Initialisation as ``initialize_weights`` / ``_init_weights``
  (L143-177): xavier-uniform linears with zero bias, unit LayerNorms, ``mask_token`` N(0, 0.02^2).
* :func:`masked_loss` (``forward_loss`` L401-417): per-patch mean squared error, averaged over removed
  patches only; with ``norm_pix_loss`` each target patch is first normalised by its own mean and
  ``sqrt(var + 1e-6)`` (unbiased ``var``, torch's default). The AS-2M run uses it
  (``submit_pretrain_audioset2M.sh``; ``main_pretrain.py`` L146 sets it as the default).

Assumptions (docs/hsm_tss.md, "Stage mae"):

* decoder attention is plain global multi-head attention. MW-MAE's decoder uses multi-window attention (per-head
  windows [2, 5, 10, 25, 50, 125, global, global] on its 250-patch grid); the paper names MW-MAE only for the
  decoder's size, and its windows are tied to MW-MAE's 4 x 16 patches on 2-s 80-mel inputs, which do not carry
  over to AudioMAE's 16 x 16 patches of 1024 x 128 inputs.
* the clips are the batch's ``mixture`` and ``target`` both (``clips="both"``, a batch of 2B clips): an
  AudioSet clip is itself a sound scene, so a mixture is as much the paper's kind of pre-training data as a
  single source, and the separator later reads AudioMAE features of both. ``clips="target"`` uses the clean
  clips only.
* optimisation follows ``main_pretrain.py`` and the AS-2M script: AdamW betas (0.9, 0.95), weight decay 1e-4
  on tensors of >= 2 dimensions (timm's ``add_weight_decay``: biases and norms exempt; the CLS and mask tokens
  decayed), lr 4e-4 (``blr`` 2e-4 x effective batch 512 / 256), warm-up 3 of 33 epochs (11,700 of ~129,000
  steps at batch 512 on 2M clips) then cosine to 0; the official run does not clip gradients. The official
  waveform augmentation ``roll_mag_aug`` (random circular shift, gain ~ Beta(10, 10) + 0.5) is not applied.

Randomness: the masks of a step come from a generator seeded by ``(seed, global step, rank)`` with the formula
of ``HsmTssStage.step_seed``, and the decoder's initial weights from ``seed``; so a run resumed from its
Lightning checkpoint (which holds the decoder, the optimizer and the step) continues exactly. The decoder is
not part of HSM-TSS: :meth:`MaeStage.export` leaves the trained encoder in ``model.audiomae`` (frozen again),
and the hsm-bench checkpoint written from the model has no decoder; only ``last.ckpt`` keeps it.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from hsm_bench.errors import ConfigError
from systems.hsm_tss.audiomae import AudioMAEEncoder, Block, audiomae_pos_embed
from training.stages import DEFAULT_OPTIM, MAX_SECONDS, TrainsOnly, adamw_schedule, step_seed

DECODER_DEFAULT = {"dim": 384, "depth": 4, "num_heads": 8, "mlp_ratio": 4.0}  # paper IV-A2
MAE_OPTIM = {**DEFAULT_OPTIM, "lr": 4e-4, "weight_decay": 1e-4, "betas": (0.9, 0.95), "warmup_steps": 11_700,
             "schedule": "cosine", "min_lr_ratio": 0.0}  # fmt: skip
CLIPS = ("both", "target", "mixture")
NORM_PIX_EPS = 1e-6


# -- patches --------------------------------------------------------------------------------------
def patchify(fbank: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """``[B, H, W]`` (or ``[B, 1, H, W]``) -> ``[B, (H/p) (W/p), p * p]``, patches time-major, values frame-major."""
    x = fbank[:, 0] if fbank.ndim == 4 else fbank
    b, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"a {h} x {w} input is not a whole number of {patch} x {patch} patches")
    x = x.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int] = (64, 8), patch: int = 16) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, T' F', p * p]`` -> ``[B, T' p, F' p]``."""
    b = patches.shape[0]
    n_t, n_f = grid
    x = patches.reshape(b, n_t, n_f, patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(b, n_t * patch, n_f * patch)


# -- masking --------------------------------------------------------------------------------------
def n_kept(n_patches: int, mask_ratio: float) -> int:
    return int(n_patches * (1 - mask_ratio))  # the official truncation: 102 of 512 at 0.8


def random_masking(x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
    """``(kept [B, K, D], mask [B, L] (1 = removed), ids_restore [B, L])`` as the official ``random_masking``."""
    b, n, d = x.shape
    keep = n_kept(n, mask_ratio)
    noise = torch.rand(b, n, generator=generator)  # CPU: the same draws whatever the device
    ids_shuffle = torch.argsort(noise, dim=1, stable=True).to(x.device)
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)
    kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, ids_restore), ids_restore


def unshuffle(tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Patch tokens of an unmasked pass (``mask_ratio=0``, shuffled order) back in patch order."""
    return torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, tokens.shape[-1]))


def encode_masked(encoder: AudioMAEEncoder, fbank: torch.Tensor, mask_ratio: float,
                  generator: torch.Generator | None = None):  # fmt: skip
    """The official ``forward_encoder`` with ``encoder``'s submodules: ``(latent [B, 1 + K, D] with CLS first,
    mask [B, L], ids_restore [B, L])``."""
    x = fbank[:, None] if fbank.ndim == 3 else fbank
    x = encoder.patch_embed(x) + encoder.pos_embed[:, 1:]
    x, mask, ids_restore = random_masking(x, mask_ratio, generator)
    cls = (encoder.cls_token + encoder.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat((cls, x), dim=1)
    for blk in encoder.blocks:
        x = blk(x)
    return encoder.norm(x), mask, ids_restore


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """Mean over removed patches of the per-patch mean squared error (``pred``/``target`` ``[B, L, p * p]``)."""
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + NORM_PIX_EPS).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


# -- decoder --------------------------------------------------------------------------------------
class MaeDecoder(nn.Module):
    """The MAE decoder: encoder latents (CLS + kept patches) and ``ids_restore`` -> ``[B, L, p * p]`` predictions."""

    def __init__(self, encoder_dim: int, grid: tuple[int, int] = (64, 8), patch: int = 16, dim: int = 384,
                 depth: int = 4, num_heads: int = 8, mlp_ratio: float = 4.0):  # fmt: skip
        super().__init__()
        self._config = {"encoder_dim": int(encoder_dim), "grid": [int(grid[0]), int(grid[1])], "patch": int(patch),
                        "dim": int(dim), "depth": int(depth), "num_heads": int(num_heads),
                        "mlp_ratio": float(mlp_ratio)}  # fmt: skip
        self.decoder_embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("decoder_pos_embed", audiomae_pos_embed(dim, (int(grid[0]), int(grid[1]))))
        self.decoder_blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_pred = nn.Linear(dim, patch * patch)
        self.reset_parameters()

    def config(self) -> dict:
        return dict(self._config)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        patches = torch.cat((x[:, 1:], self.mask_token.expand(b, n + 1 - x.shape[1], -1)), dim=1)
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat((x[:, :1], patches), dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


# -- the stage ------------------------------------------------------------------------------------
class MaeStage(TrainsOnly, L.LightningModule):
    """Masked-autoencoder training of ``model.audiomae`` (an :class:`HsmTssModel`'s encoder) with its own
    :class:`MaeDecoder`; every other part of ``model`` stays frozen and in eval mode."""

    def __init__(self, model, optim: dict | None = None, mask_ratio: float = 0.8, norm_pix_loss: bool = True,
                 seed: int = 0, decoder: dict | None = None, clips: str = "both"):  # fmt: skip
        super().__init__()
        unknown = set(optim or {}) - set(MAE_OPTIM)
        if unknown:
            raise ConfigError(f"unknown optim settings: {', '.join(sorted(unknown))}")
        unknown = set(decoder or {}) - set(DECODER_DEFAULT)
        if unknown:
            raise ConfigError(f"unknown mae decoder settings: {', '.join(sorted(unknown))} "
                              f"(keys: {', '.join(DECODER_DEFAULT)})")  # fmt: skip
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ConfigError(f"mask_ratio={mask_ratio}: between 0 and 1 exclusive (the paper's AudioMAE: 0.8)")
        if clips not in CLIPS:
            raise ConfigError(f"clips={clips!r}: one of {', '.join(CLIPS)}")
        enc = model.audiomae
        if n_kept(enc.grid[0] * enc.grid[1], float(mask_ratio)) < 1:
            raise ConfigError(f"mask_ratio={mask_ratio} keeps no patch of {enc.grid[0] * enc.grid[1]}")
        self.model, self.seed, self.mask_ratio = model, int(seed), float(mask_ratio)
        self.norm_pix_loss, self.clips = bool(norm_pix_loss), clips
        self.optim = {**MAE_OPTIM, **(optim or {})}
        cfg = enc.config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # the decoder's start depends on the seed only
            self.decoder = MaeDecoder(int(cfg["embed_dim"]), enc.grid, int(cfg["patch_size"]),
                                      **{**DECODER_DEFAULT, **(decoder or {})})  # fmt: skip
        self.trains_only({"audiomae": enc})  # pos_embed is a buffer: it stays fixed, as the official pos_trainable=False

    def describe(self) -> dict:
        """The stage's settings, for the trained checkpoint's ``info``."""
        return {"mask_ratio": self.mask_ratio, "norm_pix_loss": self.norm_pix_loss, "clips": self.clips,
                "decoder": self.decoder.config()}  # fmt: skip

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        named = [(f"audiomae.{k}", p) for k, p in self.model.audiomae.named_parameters()]
        named += [(f"decoder.{k}", p) for k, p in self.decoder.named_parameters()]
        return [(n, p) for n, p in named if p.requires_grad]

    def step_seed(self) -> int:
        """The masks of a step depend on (seed, step, rank) only."""
        return step_seed(self.seed, self.global_step, self.global_rank)

    # -- the loss -------------------------------------------------------------------------------
    def batch_clips(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(waves [N, T], lengths [N])`` the stage trains on, each cut to AudioMAE's 10.24-s window."""
        n = int(MAX_SECONDS * self.model.sample_rate)
        lengths = batch["lengths"].clamp(max=n)
        parts = {"both": ("mixture", "target"), "target": ("target",), "mixture": ("mixture",)}[self.clips]
        waves = torch.cat([batch[k][:, :n] for k in parts])
        return waves, torch.cat([lengths] * len(parts))

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"loss", "n_clips"}`` of one batch; masks from ``generator`` (default: the step's)."""
        from systems.hsm_tss.fbank import audiomae_input

        waves, lengths = self.batch_clips(batch)
        with torch.autocast(waves.device.type, enabled=False):  # the input and target in float32 under bf16
            fbank = audiomae_input(waves.float(), lengths).to(waves.device)
        g = generator if generator is not None else torch.Generator().manual_seed(self.step_seed())
        latent, mask, ids_restore = encode_masked(self.model.audiomae, fbank, self.mask_ratio, g)
        pred = self.decoder(latent, ids_restore)
        patch = int(self.decoder.config()["patch"])
        loss = masked_loss(pred.float(), patchify(fbank, patch), mask, self.norm_pix_loss)
        return {"loss": loss, "n_clips": torch.tensor(float(waves.shape[0]))}

    # -- Lightning ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        parts = self.losses(batch)
        n = int(parts["n_clips"])
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=n, sync_dist=False)
        self.log("train/mae", parts["loss"].detach(), batch_size=n)
        return parts["loss"]

    def configure_optimizers(self):
        # timm's add_weight_decay as main_pretrain.py uses it: no decay on 1-D tensors (biases, norms)
        return adamw_schedule(self, self.trainable_parameters(), self.optim, lambda n, p: p.ndim >= 2)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the decoder's weights are in checkpoint["state_dict"] ("decoder.*"): it is a submodule
        checkpoint["hsm_tss"] = {"stage": "mae", "seed": self.seed, "architecture": self.model.arch,
                                 "optim": dict(self.optim), **self.describe()}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from hsm_bench.weights import CheckpointError

        saved = checkpoint.get("hsm_tss") or {}
        now = {"stage": "mae", "seed": self.seed, "architecture": self.model.arch, **self.describe()}
        for key, value in now.items():
            if saved.get(key) != value:
                raise CheckpointError(f"the Lightning checkpoint was written by a run with another {key} "
                                      f"({saved.get(key)!r}, now {value!r}); resume with the same settings "
                                      "or choose a new out=")  # fmt: skip
        state = checkpoint.get("state_dict") or {}
        missing = [f"decoder.{k}" for k in self.decoder.state_dict() if f"decoder.{k}" not in state]
        if missing:
            raise CheckpointError(f"the Lightning checkpoint has no MAE decoder ({missing[0]} missing, "
                                  f"{len(missing)} in all): it is not a stage=mae run; choose a new out=")  # fmt: skip

    # -- after training -------------------------------------------------------------------------
    @torch.no_grad()
    def export(self, model=None):
        """The trained encoder in ``model.audiomae`` (default: the model trained; another
        :class:`HsmTssModel` of the same architecture gets a copy), frozen again as HSM-TSS uses it.
        The decoder is not exported: HSM-TSS's checkpoint has no place for it."""
        target = self.model if model is None else model
        if target is not self.model:
            target.audiomae.load_state_dict(self.model.audiomae.state_dict())
        target.freeze_frozen()
        target.audiomae.eval()
        return target

