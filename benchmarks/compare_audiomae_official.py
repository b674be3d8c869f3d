"""Compare HSM-TSS's AudioMAE front-end and encoder (``systems/hsm_tss/{fbank,audiomae}.py``) with the
official code (not a test).

The official code is facebookresearch/AudioMAE at bd60e29 (CC BY-NC 4.0: never vendored), in
``benchmarks/.side/src/AudioMAE``; it needs timm 0.3.2 patched by its ``timm_patch/`` files, installed with
``pip --target`` in ``benchmarks/.side/audiomae/deps``. ``bash benchmarks/setup_side_envs.sh audiomae`` makes
both (GitHub, else ``AUDIOMAE_SRC=DIR``). Run it with the ``aldm`` side venv's Python (torch 2.13, torchaudio
2.11 for ``torchaudio.compliance.kaldi.fbank``)::

    benchmarks/.side/aldm/bin/python benchmarks/compare_audiomae_official.py [--seed 0] [--threads 2]

Stand-ins, for imports only (none is on a compared path): ``torch._six`` (gone from torch 2; ``util/misc.py``
imports ``inf`` from it), ``torchvision`` (timm 0.3.2's ``timm.data`` imports it at import time; no image
transform runs), and ``numpy.float`` (removed in numpy 1.24; ``util/pos_embed.py`` uses it and meant the
builtin ``float``, which is what it is set to).

What is compared:

1. fbank: ``kaldi_fbank`` vs ``torchaudio.compliance.kaldi.fbank`` with ``dataset.py``'s arguments on noise,
   sines, silence + tone and a noisy chirp of 1 s, 10 s and odd lengths; then ``audiomae_input`` vs
   ``dataset.py``'s steps (mean removal, fbank, pad/cut to 1024, normalise) done with torchaudio. As a yardstick
   of float32 rounding, torchaudio's float32 fbank and ours vs torchaudio's float64 result ("ta f64").
2. encoder: the official ``mae_vit_base_patch16`` with ``main_pretrain.py``'s audio arguments, random weights
   (seeded; LayerNorm scales and all biases randomised too), saved as ``{'model': state_dict, 'epoch', 'args'}``
   like ``util/misc.py save_model``, read by ``read_audiomae_checkpoint`` into ``AudioMAEEncoder``:
   ``feature="last"`` vs ``forward_encoder(x, mask_ratio=0)`` patch tokens put back in patch order with its
   ``ids_restore``, and CLS; ``feature="contextual"`` vs ``forward_encoder_no_mask``; the fixed position table.
3. the official fine-tuning ``models_vit.vit_base_patch16`` built as ``main_finetune_as.py`` builds it (and
   loaded from the pre-training file as it is), head and ``fc_norm`` randomised, saved, read into
   ``AudioMAEEncoder`` (``fc_norm`` becomes ``norm``): ``forward_features`` vs ``norm(mean of our last block's
   patch outputs)``. Only ``global_pool=True``: ``models_vit.py`` L33 deletes ``norm`` in every case, so with
   ``global_pool=False`` the official ``forward_features`` fails.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import math
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).resolve().parent / ".side"
SR = 16000


def stand_ins(src: Path, deps: Path) -> None:
    sys.path[:0] = [str(ROOT), str(deps), str(src)]
    six = types.ModuleType("torch._six")
    six.inf = math.inf
    sys.modules["torch._six"] = six

    class Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *a, **k: None})

    class TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Anything(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, TorchvisionStandIn())
    import numpy as np

    np.float = float


def signals(torch, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = lambda n: torch.arange(n, dtype=torch.float64) / SR
    tc = t(160037)
    chirp = 0.4 * torch.sin(2 * math.pi * (100 * tc + 400 * tc**2)) * (0.5 + 0.5 * torch.sin(2 * math.pi * 0.7 * tc))
    out = {
        "noise 1 s": 0.1 * torch.randn(SR, generator=g),
        "noise 10 s": 0.1 * torch.randn(10 * SR, generator=g),
        "noise 12345 samples": 0.3 * torch.randn(12345, generator=g),
        "sines 3 s (220+1000+5000 Hz)": sum(a * torch.sin(2 * math.pi * f * t(3 * SR))
                                            for a, f in ((0.5, 220.0), (0.2, 1000.0), (0.05, 5000.0))).float(),
        "silence 2 s + tone 1 s": torch.cat((torch.zeros(2 * SR), 0.5 * torch.sin(2 * math.pi * 440 * t(SR)).float())),
        "chirp+noise 160037 samples": chirp.float() + 0.01 * torch.randn(160037, generator=g),
        "noise 11 s (cut to 1024 frames)": 0.05 * torch.randn(11 * SR, generator=g),
    }
    return out


def compare_fbank(torch, seed: int) -> None:
    import torchaudio
    from torchaudio.compliance import kaldi

    from systems.hsm_tss.fbank import (
        NORM_MEAN,
        NORM_STD,
        TARGET_FRAMES,
        audiomae_input,
        kaldi_fbank,
    )

    print(f"== 1. fbank: systems.hsm_tss.fbank vs torchaudio {torchaudio.__version__} kaldi.fbank "
          "(htk_compat, hanning, 128 bins, dither 0, shift 10 ms)")  # fmt: skip
    kw = {"htk_compat": True, "sample_frequency": SR, "use_energy": False, "window_type": "hanning",
          "num_mel_bins": 128, "dither": 0.0, "frame_shift": 10}  # fmt: skip
    print(f"  {'signal':34s} {'frames':>6s} {'log-mel max|d|':>15s} {'99.9% |d|':>10s} {'ta f32 vs f64':>14s} "
          f"{'ours vs ta f64':>14s} {'AudioMAE input max|d|':>22s}")  # fmt: skip
    worst = worst_in = 0.0
    clips = signals(torch, seed)
    for name, w in clips.items():
        ref = kaldi.fbank(w[None], **kw)
        ref64 = kaldi.fbank(w[None].double(), **kw)
        ours = kaldi_fbank(w)
        d = (ours - ref).abs()
        # dataset.py _wav2fbank + __getitem__ normalisation, with torchaudio
        wm = w[None] - w[None].mean()
        fb = kaldi.fbank(wm, **kw)
        p = TARGET_FRAMES - fb.shape[0]
        fb = torch.nn.ZeroPad2d((0, 0, 0, p))(fb) if p > 0 else fb[:TARGET_FRAMES]
        ref_in = (fb - NORM_MEAN) / (NORM_STD * 2)
        ours_in = audiomae_input(w[None])[0]
        d_in = (ours_in - ref_in).abs().max().item()
        worst, worst_in = max(worst, d.max().item()), max(worst_in, d_in)
        print(f"  {name:34s} {ours.shape[0]:6d} {d.max().item():15.3e} {d.flatten().quantile(0.999).item():10.3e} "
              f"{(ref.double() - ref64).abs().max().item():14.3e} {(ours.double() - ref64).abs().max().item():14.3e} "
              f"{d_in:22.3e}")  # fmt: skip
    # a padded batch: each item from its own samples
    names = list(clips)
    n = max(clips[k].shape[0] for k in names)
    batch = torch.zeros(len(names), n)
    for i, k in enumerate(names):
        batch[i, : clips[k].shape[0]] = clips[k]
    lengths = torch.tensor([clips[k].shape[0] for k in names])
    together = audiomae_input(batch, lengths)
    alone = torch.stack([audiomae_input(clips[k][None])[0] for k in names])
    print(f"  max |log-mel d| over all signals {worst:.3e}; AudioMAE input {worst_in:.3e} "
          f"(= log-mel d / {2 * NORM_STD:.4f}); padded batch of {len(names)} vs one by one: "
          f"{(together - alone).abs().max().item():.3e}")  # fmt: skip


def randomise(torch, module, g, skip=("pos_embed", "decoder_pos_embed")) -> None:
    """Every floating parameter to random values (LayerNorm scales near 1, biases small), so no zero bias or
    unit scale hides a key mix-up; the fixed position tables stay."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in skip:
                continue
            if name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # LayerNorm scale
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "cls_token":
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def compare_encoder(torch, seed: int, x) -> None:
    import argparse as ap

    import models_mae
    import models_vit
    from util.patch_embed import PatchEmbed_new

    from systems.hsm_tss.audiomae import AudioMAEEncoder, read_audiomae_checkpoint

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # main_pretrain.py L217-224 with its defaults for AudioSet (target_length 1024)
    official = models_mae.mae_vit_base_patch16(
        norm_pix_loss=False, in_chans=1, audio_exp=True, img_size=(1024, 128), alpha=0.0, mode=0,
        use_custom_patch=False, split_pos=False, pos_trainable=False, use_nce=False, decoder_mode=1,
        mask_2d=False, mask_t_prob=0.7, mask_f_prob=0.3, no_shift=False).eval()  # fmt: skip
    randomise(torch, official, g)
    print(f"\n== 2. encoder: official models_mae.mae_vit_base_patch16 (audio_exp, decoder_mode=1), random weights "
          f"(seed {seed}), input audiomae_input of {x.shape[0]} clips {list(x.shape)}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoint-pretrain.pth"
        torch.save({"model": official.state_dict(), "epoch": 0, "args": ap.Namespace(model="mae_vit_base_patch16")},
                   ckpt)  # fmt: skip
        ours = {}
        for feature in ("last", "contextual"):
            enc = AudioMAEEncoder(feature=feature).eval()
            fresh_pos = enc.pos_embed.clone()
            enc.load_state_dict(read_audiomae_checkpoint(ckpt, enc), strict=True)
            ours[feature] = enc
        print(f"  fixed position table, ours (built) vs official: max|d| "
              f"{(fresh_pos - official.pos_embed.detach()).abs().max().item():.3e}")  # fmt: skip
        with torch.no_grad():
            t0 = time.perf_counter()
            lat, _, ids_restore, _ = official.forward_encoder(x[:, None], mask_ratio=0.0)
            t_off = time.perf_counter() - t0
            shuffled = bool((ids_restore != torch.arange(ids_restore.shape[1])).any())
            patches = torch.gather(lat[:, 1:], 1, ids_restore[..., None].expand(-1, -1, lat.shape[-1]))
            t0 = time.perf_counter()
            mine, mine_cls = ours["last"](x, return_cls=True)
            t_ours = time.perf_counter() - t0
            print(f"  feature='last' [B, 512, 768] {list(mine.shape)} vs forward_encoder(mask_ratio=0) patches "
                  f"(shuffled by random_masking: {shuffled}; restored with ids_restore): max|d| "
                  f"{(mine - patches).abs().max().item():.3e} (scale max|x| {patches.abs().max().item():.2f}); "
                  f"CLS max|d| {(mine_cls - lat[:, 0]).abs().max().item():.3e}")  # fmt: skip
            ctx = official.forward_encoder_no_mask(x[:, None])
            mine_ctx, mine_ctx_cls = ours["contextual"](x, return_cls=True)
            print(f"  feature='contextual' vs forward_encoder_no_mask (mean of norm(block n), n > "
                  f"{official.contextual_depth}) patches: max|d| {(mine_ctx - ctx[:, 1:]).abs().max().item():.3e}; "
                  f"CLS max|d| {(mine_ctx_cls - ctx[:, 0]).abs().max().item():.3e}")  # fmt: skip
            print(f"  time for the batch: official {t_off:.2f} s, ours {t_ours:.2f} s")

        print("\n== 3. official models_vit.vit_base_patch16 as main_finetune_as.py builds it, loaded from the "
              "pre-training file, head/fc_norm randomised")  # fmt: skip
        # models_vit.py L33 deletes `norm` whatever global_pool is, and forward_features needs it when
        # global_pool is off: the official fine-tuning runs with global_pool=True only
        torch.manual_seed(seed + 1)
        vit = models_vit.vit_base_patch16(num_classes=527, drop_path_rate=0.1, global_pool=True, mask_2d=True,
                                          use_custom_patch=False)  # fmt: skip
        vit.patch_embed = PatchEmbed_new(img_size=(1024, 128), patch_size=(16, 16), in_chans=1, embed_dim=768,
                                         stride=16)  # fmt: skip
        vit.pos_embed = torch.nn.Parameter(torch.zeros(1, 513, 768), requires_grad=False)
        missing = vit.load_state_dict(torch.load(ckpt, weights_only=False)["model"], strict=False).missing_keys
        randomise(torch, vit, g, skip=tuple(k for k, _ in vit.named_parameters() if k not in missing))
        vit.eval()
        ft = Path(tmp) / "checkpoint-finetune.pth"
        torch.save({"model": vit.state_dict(), "epoch": 0}, ft)
        enc = AudioMAEEncoder().eval()
        enc.load_state_dict(read_audiomae_checkpoint(ft, enc), strict=True)
        with torch.no_grad():
            ref = vit.forward_features(x[:, None])
            captured = {}
            hook = enc.blocks[-1].register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
            enc(x)
            hook.remove()
            mine = enc.norm(captured["x"][:, 1:].mean(dim=1))
        print(f"  global_pool=True (file has fc_norm, no norm; missing from the pre-training file: "
              f"{', '.join(missing)}): forward_features = fc_norm(mean of last block's patches) vs ours "
              f"norm(mean of last block's patches): max|d| {(mine - ref).abs().max().item():.3e} "
              f"(scale max|x| {ref.abs().max().item():.2f})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=SIDE / "src" / "AudioMAE")
    ap.add_argument("--deps", type=Path, default=SIDE / "audiomae" / "deps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for p, what in ((args.src / "models_mae.py", "--src"), (args.deps / "timm" / "models" / "swin_transformer.py",
                                                                "--deps")):  # fmt: skip
        if not p.is_file():
            sys.exit(f"{p} missing: run `bash benchmarks/setup_side_envs.sh audiomae` (or pass {what})")
    stand_ins(args.src, args.deps)
    import numpy as np
    import timm
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, numpy {np.__version__}, timm {timm.__version__} (patched), "
          f"{torch.get_num_threads()} threads; official source {args.src}")  # fmt: skip
    compare_fbank(torch, args.seed)
    from systems.hsm_tss.fbank import audiomae_input

    clips = signals(torch, args.seed)
    x = torch.cat([audiomae_input(clips[k][None]) for k in ("noise 10 s", "chirp+noise 160037 samples")])
    compare_encoder(torch, args.seed, x)


if __name__ == "__main__":
    main()
