"""The AudioMAE ViT-B/16 encoder (Huang et al., "Masked Autoencoders that Listen", NeurIPS 2022), with the
official checkpoint key layout, as HSM-TSS's audio feature extractor (models.md section 9).

Definition (facebookresearch/AudioMAE at bd60e29):

* ``util/patch_embed.py`` ``PatchEmbed_org`` (L6-27): a 16x16 stride-16 ``Conv2d(1, D)`` on the
  ``[B, 1, 1024, 128]`` fbank (``fbank.audiomae_input``), flattened time-major: 64 x 8 = 512 patches,
  patch ``t * 8 + f`` covers frames ``16 t .. 16 t + 15`` and mel bins ``16 f .. 16 f + 15``.
* ``models_mae.py`` ``MaskedAutoencoderViT`` encoder (L44-62, L306-356): patches + ``pos_embed[1:]``, then a
  CLS token ``cls_token + pos_embed[0]`` in front, ``depth`` pre-norm timm 0.3.2 ``Block``s (LayerNorm eps 1e-6,
  multi-head attention with qkv bias and scale head_dim^-0.5, MLP ``fc1 -> GELU (erf) -> fc2``), ``norm``.
* ``pos_embed`` is fixed (``requires_grad=False`` but saved in the state dict): ``util/pos_embed.py``
  ``get_2d_sincos_pos_embed_flexible`` (L38-85) called with ``patch_hw = (128 // 16, 1024 // 16) = (8, 64)``
  (``PatchEmbed_org`` L14, note the order), a zero row for CLS, then for row m = 1 + token index n the
  concatenation ``[s(n mod 64), s(n div 64)]``, each ``s(p)`` being ``[sin(p w_k), cos(p w_k)]`` with
  ``w_k = 10000^(-k / (D/4))``, k < D/4. The tokens are time-major on a 64 x 8 grid while that code labels them
  as an 8 x 64 grid in row-major order, so the two halves are not the token's (t, f): that is what the
  released checkpoints hold, and a checkpoint's ``pos_embed`` replaces this one when loaded anyway.

Features (``feature=``):

* ``"last"``: ``norm`` of the last block, patch tokens (``forward_encoder`` with ``mask_ratio=0``: its
  random shuffle then leaves every patch in, permuted by ``ids_shuffle``; here they stay in patch order).
* ``"contextual"``: ``forward_encoder_no_mask`` (L332-356), the mean over blocks ``n > contextual_depth``
  (0-based; 9, 10 and 11 for ViT-B with the default 8) of ``norm(block output)``, patch tokens.

Checkpoints (:func:`read_audiomae_checkpoint`): the official pre-training file (``{"model": state_dict, ...}``
of ``MaskedAutoencoderViT``), the official fine-tuned file (``models_vit.VisionTransformer``), and the timm
port ``gaunernst/vit_base_patch16_1024_128.audiomae_as2m`` (the same encoder keys, no head).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hsm_bench import weights
from hsm_bench.weights import CheckpointError

FEATURES = ("last", "contextual")
# keys of the official files that are not the encoder's
PRETRAIN_ONLY = ("decoder_", "mask_token")  # MaskedAutoencoderViT's decoder (models_mae.py L66-117)
FINETUNE_ONLY = ("head.", "fc_norm.")  # models_vit.VisionTransformer's classifier and pooled-feature norm
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # a timm Hub folder holds one of these


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``[len(positions), dim]``: sines then cosines of ``positions * 10000^(-k / (dim/2))``, in float64."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def audiomae_pos_embed(embed_dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """``[1, 1 + T * F, embed_dim]`` float32: AudioMAE's fixed position table for a (T, F) patch grid, CLS row 0.

    The official code labels the T*F time-major tokens as an F x T grid read row by row (see the module
    docstring), so token n gets ``[s(n mod T), s(n div T)]``.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim {embed_dim}: the 2-D sin-cos table needs a multiple of 4")
    n_time, n_freq = grid
    token = np.arange(n_time * n_freq)
    table = np.concatenate([sincos_1d(embed_dim // 2, token % n_time), sincos_1d(embed_dim // 2, token // n_time)], 1)
    table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return torch.from_numpy(table).float()[None]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        # the default scale is head_dim ** -0.5, timm 0.3.2's qk_scale=None
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, D, T', F'] -> [B, T' * F', D], time-major


class AudioMAEEncoder(nn.Module):
    """AudioMAE's ViT encoder: ``[B, 1024, 128]`` normalised fbank -> ``[B, 512, embed_dim]`` patch features."""

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        img_size: tuple[int, int] = (1024, 128),
        patch_size: int = 16,
        feature: str = "last",
        contextual_depth: int = 8,
    ):
        super().__init__()
        if feature not in FEATURES:
            raise ValueError(f"feature {feature!r}: use one of {', '.join(FEATURES)}")
        if feature == "contextual" and not 0 <= contextual_depth < depth - 1:
            raise ValueError(f"feature='contextual' averages blocks after contextual_depth={contextual_depth}: "
                             f"needs contextual_depth < depth - 1 = {depth - 1}")  # fmt: skip
        img_size = (int(img_size[0]), int(img_size[1]))
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self._config = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": mlp_ratio,
                        "img_size": img_size, "patch_size": patch_size, "feature": feature,
                        "contextual_depth": contextual_depth}  # fmt: skip
        self.img_size, self.feature, self.contextual_depth = img_size, feature, contextual_depth
        self._grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # fixed, but saved with the weights as in the official state dict
        self.register_buffer("pos_embed", audiomae_pos_embed(embed_dim, self._grid))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    @property
    def grid(self) -> tuple[int, int]:
        """(time, frequency) patches: (64, 8) for a 1024 x 128 input."""
        return self._grid

    def config(self) -> dict:
        return dict(self._config)

    def forward(
        self, fbank: torch.Tensor, return_cls: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``[B, 1024, 128]`` (or ``[B, 1, 1024, 128]``) -> ``[B, 512, D]`` patch features, time-major;
        with ``return_cls`` also the ``[B, D]`` CLS feature of the same kind."""
        x = fbank[:, None] if fbank.ndim == 3 else fbank
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"AudioMAE takes [B, {self.img_size[0]}, {self.img_size[1]}] fbank input "
                             f"(fbank.audiomae_input), got shape {list(fbank.shape)}")  # fmt: skip
        x = self.patch_embed(x) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        if self.feature == "last":
            for blk in self.blocks:
                x = blk(x)
            out = self.norm(x)
        else:
            total, count = None, 0
            for n, blk in enumerate(self.blocks):
                x = blk(x)
                if n > self.contextual_depth:
                    normed = self.norm(x)
                    total = normed if total is None else total + normed
                    count += 1
            out = total / count
        return (out[:, 1:], out[:, 0]) if return_cls else out[:, 1:]


# -- checkpoints --------------------------------------------------------------------------------
def _read_tensors(path: Path) -> tuple[Mapping, Path]:
    if path.is_dir():
        found = next((path / f for f in HUB_FILES if (path / f).is_file()), None)
        if found is None:
            raise CheckpointError(f"{path} holds no AudioMAE weights: expected {' or '.join(HUB_FILES)} "
                                  "(the timm port's files) or give the checkpoint file itself")  # fmt: skip
        path = found
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), path
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return weights.load_torch_file(path), path


def read_audiomae_checkpoint(path: str | Path, model: AudioMAEEncoder) -> dict[str, torch.Tensor]:
    """The encoder tensors of an AudioMAE checkpoint for ``model``, or a one-line CheckpointError.

    Accepted: (a) the official pre-training file ``{"model": MaskedAutoencoderViT state_dict, ...}`` (its
    ``decoder_*`` and ``mask_token`` are dropped); (b) the official fine-tuned file ``{"model": VisionTransformer
    state_dict}`` (``head.*`` dropped). The fine-tuning default ``global_pool=True`` (``main_finetune_as.py``
    L119-120) deletes ``norm`` and adds ``fc_norm``, a LayerNorm the classifier applies to the patch-token mean
    (``models_vit.py`` L28-33, L52-54): such a file's ``fc_norm`` becomes this encoder's ``norm`` (the only
    final LayerNorm that model was trained with; per token it is an approximation of its pooled use), and a
    file with ``norm`` keeps it and drops ``fc_norm``; (c) the timm port's ``model.safetensors`` /
    ``pytorch_model.bin`` (a bare state dict with the encoder keys), or a folder holding one. Anything
    else, missing or mis-shaped is an error naming the keys.
    """
    path = Path(path)
    obj, path = _read_tensors(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} is not an AudioMAE checkpoint: it holds a {type(obj).__name__}, "
                              "not a state dict")  # fmt: skip
    state = obj["model"] if isinstance(obj.get("model"), Mapping) else obj
    state = {str(k): v for k, v in state.items()}
    if any(k.startswith(PRETRAIN_ONLY) for k in state):
        state = {k: v for k, v in state.items() if not k.startswith(PRETRAIN_ONLY)}
    elif any(k.startswith(FINETUNE_ONLY) for k in state):
        if not any(k.startswith("norm.") for k in state):
            state = {("norm." + k[len("fc_norm."):] if k.startswith("fc_norm.") else k): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(FINETUNE_ONLY)}
    hints = [("module.", "its keys carry DataParallel's 'module.' prefix: save model.module.state_dict() instead"),
             ("encoder.", "it looks like a wrapper's state dict: give the official .pth or the timm port's file")]
    return weights.check_state_dict(model, state, "AudioMAE encoder", str(path), hints=hints)
