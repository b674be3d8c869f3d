"""Compare hsm-bench's ``clipsep`` system with the official CLIPSep code (not a test).

Two halves, one file. The *official* half runs in the side venv ``benchmarks/.side/clipsep``
(librosa 0.9.2, numpy 1.23.5 as in the official ``environment.yml``, OpenAI's ``clip`` package
from PyPI ``openai-clip`` 1.0.1, torch 2.13.0 CPU) on the official sources in
``benchmarks/.side/src/CLIPSep/clipsep`` (sony/CLIPSep at 22b6f91; both made by
``bash benchmarks/setup_side_envs.sh clipsep``). It builds the official ``CLIPPITSepV4``
(CLIPSep-NIT, 7 levels, 32 channels) inside ``torch.nn.DataParallel`` with random weights
(BatchNorm statistics included) and saves the experiment folder as ``train.py`` does
(``train-args.json``, ``checkpoints/best_model.pt`` = the DataParallel state dict); builds
OpenAI CLIP ViT-B/32 at full size with random weights (``clip.model.CLIP``; ``clip.load`` would
download); reloads the separator from the file as ``infer.py`` does; and for every input and
query runs ``infer.load_data`` (reading the file, tiling, STFT), the query text of
``evaluate.py`` (``get_text_prompts`` ensemble for labels, ``get_text_prompt`` for sentences)
through ``clip.tokenize`` and ``encode_text`` (``infer.new_clip_forward``), the model's own
``infer``, the sigmoid, and ``infer.recover_wav`` with the binary mask (infer.py) and the soft
mask (evaluate.py without ``--binary``), cut to the input length as infer.py saves it. The
device is the CPU (the official scripts hard-code CUDA, where ``clip.load`` keeps CLIP in
float16; on the CPU it is float32, as here). Stood in for: ``torchvision`` (imported by
``clip`` and ``infer.py`` for image transforms and ResNets, unused on this path), ``mir_eval``
and ``museval`` (``evaluate.py``'s metrics).

The *hsm-bench* half (the project's python) converts the random CLIP to a transformers
``CLIPTextModelWithProjection`` folder (its own key mapping) with a ``CLIPTokenizer`` made from
the ``clip`` package's BPE file (the real 49,408-token vocabulary), loads the experiment folder
and that folder through ``--weights``-style overrides into ``systems.clipsep.CLIPSep``, and
separates the same files with the same queries. Printed: the key layout, token ids, query
embeddings, STFT magnitudes, mask logits, binary-mask bins that differ, and the maximum
absolute output difference per input (10 s, 20 s, and 131000 samples: tiled to 131070, whose
512 frames give infer.py only 130816 output samples; compared over those), end to end and with
the official query embedding fed to the hsm-bench separator. Everything is at full size.

    bash benchmarks/setup_side_envs.sh clipsep
    python benchmarks/compare_clipsep_official.py [--src DIR] [--side-python PY] [--workdir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
SIDE = HERE / ".side"
SR = 16000
# (file stem, samples) of the inputs, and (query, style) of the queries; the caption holds an HTML entity
INPUTS = [("mix10s", 10 * SR), ("mix20s", 20 * SR), ("mix131000", 131000)]
QUERIES = [("playing bagpipes", "label"), ("A dog barks while a car passes by &amp; people talk.", "caption")]
# train.py's defaults for the published experiment (README: --image_model clipsepnit)
TRAIN_ARGS = {"audio_len": 65535, "audio_rate": 16000, "n_fft": 1024, "hop_len": 256, "win_len": 1024, "img_size": 224,
              "fps": 1, "train_mode": "image", "image_model": "clipsepnit", "n_mix": 2, "fusion": "late", "channels": 32,
              "layers": 7, "frames": 3, "stride_frames": 1, "binary_mask": True, "loss": "bce", "weighted_loss": True,
              "log_freq": True, "reg_coef": 0, "reg_epsilon": 0.1, "reg2_coef": 0.1, "reg2_epsilon": 0.25}  # fmt: skip
VIT_B32 = {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 32,
           "context_length": 77, "vocab_size": 49408, "transformer_width": 512, "transformer_heads": 8,
           "transformer_layers": 12}  # fmt: skip


# == official half (side venv) ==============================================================
def _stand_ins() -> None:
    """Modules the official files import for images and metrics, never used on this path."""

    def module(name: str, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    def unused(*_a, **_k):
        raise RuntimeError("stand-in: not part of the text-queried inference")

    transforms = module("torchvision.transforms", Compose=unused, Resize=unused, CenterCrop=unused, ToTensor=unused,
                        Normalize=unused, InterpolationMode=types.SimpleNamespace(BICUBIC=3))  # fmt: skip
    module("torchvision", transforms=transforms, models=types.SimpleNamespace(resnet18=unused))
    module("mir_eval", separation=module("mir_eval.separation"))
    module("museval", metrics=module("museval.metrics"))


def _randomise(module, seed: int, bn_stats: bool = True) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim == 1:
                t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)


def official(src: Path, work: Path, threads: int, seed: int) -> None:
    sys.path.insert(0, str(src))
    _stand_ins()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import clip
    import clip.model
    import clip.simple_tokenizer
    import clipsep
    import evaluate
    import infer

    args = types.SimpleNamespace(**TRAIN_ARGS)
    def build():  # infer.py's constructor call
        return clipsep.CLIPPITSepV4(
            args.n_mix, args.layers, args.channels, use_log_freq=args.log_freq, use_weighted_loss=args.weighted_loss,
            use_binary_mask=args.binary_mask, reg_coef=args.reg_coef, reg2_coef=args.reg2_coef,
            reg2_epsilon=args.reg2_epsilon,
        )

    trained = torch.nn.DataParallel(build(), device_ids=range(0))
    _randomise(trained, seed)
    exp = work / "exp"
    (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(trained.state_dict(), exp / "checkpoints" / "best_model.pt")
    (exp / "train-args.json").write_text(json.dumps(TRAIN_ARGS))
    layout = {k: list(v.shape) for k, v in trained.state_dict().items()}

    model = torch.nn.DataParallel(build(), device_ids=range(0))
    model.load_state_dict(torch.load(exp / "checkpoints" / "best_model.pt", map_location="cpu"))
    model.eval()

    torch.manual_seed(seed + 1)
    clip_net = clip.model.CLIP(**VIT_B32)
    _randomise(clip_net.transformer, seed + 2)  # LayerNorms and biases too (CLIP's init leaves them 1 / 0)
    with torch.no_grad():
        clip_net.ln_final.weight.add_(0.1 * torch.randn(512))
        clip_net.ln_final.bias.add_(0.1 * torch.randn(512))
    clip_net.float().eval()  # clip.load on the CPU: float32
    torch.save({k: v for k, v in clip_net.state_dict().items() if not k.startswith("visual.")}, work / "clip_text.pt")
    clip_net.old_forward = clip_net.forward
    clip_net.forward = types.MethodType(infer.new_clip_forward, clip_net)

    ns = types.SimpleNamespace(audio_rate=SR, audio_len=None, n_fft=args.n_fft, hop_len=args.hop_len,
                               win_len=args.win_len)  # fmt: skip
    cases = []
    import contextlib
    import io

    for stem, _ in INPUTS:
        with contextlib.redirect_stdout(io.StringIO()):  # load_data prints the file name
            mag_mix, phase_mix, n = infer.load_data(work / f"{stem}.wav", ns)
        for k, (query, style) in enumerate(QUERIES):
            prompts = evaluate.get_text_prompts(query) if style == "label" else [evaluate.get_text_prompt(query)]
            tokens = torch.cat([clip.tokenize(p) for p in prompts])
            t0 = time.perf_counter()
            with torch.no_grad():
                emb = clip_net(text=tokens).type(mag_mix.dtype).mean(dim=0, keepdim=True)
                pred_masks, _ = model.module.infer(mag_mix, [emb])
                prob = torch.sigmoid(pred_masks[0])
                wav = {m: infer.recover_wav(mag_mix, phase_mix, prob, n_fft=args.n_fft, hop_len=args.hop_len,
                                            win_len=args.win_len, use_log_freq=args.log_freq,
                                            use_binary_mask=m == "binary")[:n]
                       for m in ("binary", "soft")}
            seconds = time.perf_counter() - t0
            name = f"{stem}-{k}"
            np.savez(work / f"official-{name}.npz", tokens=tokens.numpy(), emb=emb[0].numpy(),
                     mag=mag_mix[0, 0].numpy(), logits=pred_masks[0][0, 0].numpy(), binary=wav["binary"],
                     soft=wav["soft"])  # fmt: skip
            cases.append({"name": name, "stem": stem, "query": query, "style": style, "prompts": prompts, "n": n,
                          "seconds": seconds})  # fmt: skip
    (work / "official.json").write_text(json.dumps({"layout": layout, "cases": cases,
                                                    "bpe": clip.simple_tokenizer.default_bpe()}))  # fmt: skip


# == hsm-bench half (project venv) ===========================================================
def byte_chars() -> list[str]:
    """CLIP's byte alphabet in vocabulary order: printable Latin-1 bytes as themselves, then
    the other bytes mapped above U+00FF in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]


def clip_tokenizer(bpe: Path):
    """transformers ``CLIPTokenizer`` with CLIP's vocabulary: bytes, bytes + ``</w>``, the
    first 48,894 merges of the BPE file, then the start / end tokens (49,408 ids)."""
    import gzip

    from transformers import CLIPTokenizer

    with gzip.open(bpe) as f:
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    chars = byte_chars()
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])


def hf_text_state(sd: dict) -> dict:
    """OpenAI CLIP text weights -> transformers ``CLIPTextModelWithProjection`` names."""
    out = {"text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
           "text_model.final_layer_norm.weight": sd["ln_final.weight"],
           "text_model.final_layer_norm.bias": sd["ln_final.bias"],
           "text_projection.weight": sd["text_projection"].t().contiguous()}  # fmt: skip
    n_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    for i in range(n_layers):
        o, h = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for part, w, b in zip("qkv", sd[o + "attn.in_proj_weight"].chunk(3), sd[o + "attn.in_proj_bias"].chunk(3)):
            out[f"{h}self_attn.{part}_proj.weight"], out[f"{h}self_attn.{part}_proj.bias"] = w, b
        for ours, theirs in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):  # fmt: skip
            out[f"{h}{ours}.weight"], out[f"{h}{ours}.bias"] = sd[f"{o}{theirs}.weight"], sd[f"{o}{theirs}.bias"]
    return out


def clip_folder(work: Path, bpe: Path) -> Path:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tok = clip_tokenizer(bpe)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    model = CLIPTextModelWithProjection(cfg)
    model.load_state_dict(hf_text_state(torch.load(work / "clip_text.pt")), strict=True)
    folder = work / "clip-vit-base-patch32"
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def compare(work: Path, threads: int) -> None:
    import numpy as np
    import soundfile as sf
    import torch

    from hsm_bench import weights
    from hsm_bench.api.system import SeparationBatch
    from systems.clipsep import CLIPSep
    from systems.clipsep_net import DataParallelKeys
    from systems.clipsep_signal import stft, tile, unwarp, warp
    from systems.clipsep_text import CONTEXT, clean

    torch.set_num_threads(threads)
    off = json.loads((work / "official.json").read_text())
    folder = clip_folder(work, Path(off["bpe"]))
    system = CLIPSep()
    with weights.overrides({"clipsep-nit": work / "exp", "clip-vit-base-patch32": folder}):
        system.load("cpu")
        train_args = system.info()["train_args"]
    ours = {k: list(v.shape) for k, v in DataParallelKeys(system.net).state_dict().items()}
    same = ours == off["layout"]
    print(f"key layout: official {len(off['layout'])} tensors, hsm-bench {len(ours)}: "
          f"{'identical names and shapes' if same else 'DIFFERENT'}; train-args checked: {train_args is not None}")  # fmt: skip
    worst = {"emb": 0.0, "binary": 0.0, "soft": 0.0, "binary_same_emb": 0.0}
    for case in off["cases"]:
        ref = np.load(work / f"official-{case['name']}.npz")
        mix, _ = sf.read(work / f"{case['stem']}.wav", dtype="float32")
        x = torch.from_numpy(mix)
        prompts = system.query_prompts(case["query"], case["style"])
        ids = system.tokenizer(prompts, padding="max_length", max_length=CONTEXT, truncation=True)["input_ids"]
        eot = [list(r).index(49407) + 1 for r in ref["tokens"]]
        # the official prompt strings are raw; clip's tokenizer cleans them (HTML entities, spaces) as hsm-bench does first
        tokens_equal = prompts == [clean(p) for p in case["prompts"]] and all(
            list(a[:e]) == list(b[:e]) for a, b, e in zip(ids, ref["tokens"], eot))
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = system.separate(SeparationBatch(item_ids=[case["name"]], mixture=x[None, None], lengths=torch.tensor([len(mix)]),
                                                  instructions=[""], task=["extract"], caption=[case["query"]],
                                                  query_style=[case["style"]]))[0, 0].numpy()  # fmt: skip
            seconds = time.perf_counter() - t0
            emb = system.query_embedding(case["query"], case["style"])
            mag = stft(tile(x)).abs()
            logits = system.net.mask_logits(torch.log(warp((mag + 1e-10)[None, None])), emb[None])[0, 0]
            same_emb = system.extract(x, torch.from_numpy(ref["emb"]))
            system.mask = "soft"
            soft = system.extract(x, emb).numpy()
            system.mask = "binary"
        n_off = len(ref["binary"])  # infer.py's output ends at hop * (frames - 1) samples
        d = {"emb": np.abs(emb.numpy() - ref["emb"]).max(), "mag": np.abs(mag.numpy() - ref["mag"]).max(),
             "logits": np.abs(logits.numpy() - ref["logits"]).max(),
             "binary": np.abs(out[:n_off] - ref["binary"]).max(), "soft": np.abs(soft[:n_off] - ref["soft"]).max(),
             "binary_same_emb": np.abs(same_emb.numpy()[:n_off] - ref["binary"]).max()}  # fmt: skip
        lin = [unwarp(torch.sigmoid(torch.as_tensor(v))[None, None])[0, 0] > 0.5 for v in (logits, ref["logits"])]
        flips = int((lin[0] != lin[1]).sum())
        worst = {k: max(v, float(d[k])) for k, v in worst.items()}
        tail = f", official output {n_off} of {case['n']} samples" if n_off < case["n"] else ""
        print(f"{case['name']} ({case['n'] / SR:.2f} s{tail}) {case['style']} {case['query']!r}: "
              f"prompts+tokens {'equal' if tokens_equal else 'DIFFER'}; max |diff| query emb {d['emb']:.2e}, "
              f"|STFT| {d['mag']:.2e} (peak {np.abs(ref['mag']).max():.0f}), logits {d['logits']:.2e} ({flips} of {lin[0].numel()} binary-mask bins differ; "
              f"{float(lin[1].float().mean()):.0%} pass), output binary {d['binary']:.2e} (official emb: {d['binary_same_emb']:.2e}), "
              f"soft {d['soft']:.2e}; peak |out| {np.abs(out).max():.3f}; seconds official {case['seconds']:.1f}, "
              f"hsm-bench {seconds:.1f}")  # fmt: skip
    print("worst max |diff| over inputs and queries: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))


def write_inputs(work: Path, seed: int) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for stem, n in INPUTS:
        t = np.arange(n) / SR
        tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) / (k + 1) for k, f in enumerate((220, 440, 660)))
        noise = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
        sf.write(work / f"{stem}.wav", (0.25 * tone + 0.1 * noise).astype(np.float32), SR, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=SIDE / "src/CLIPSep/clipsep", help="official clipsep/ folder")
    ap.add_argument("--side-python", type=Path, default=SIDE / "clipsep/bin/python")
    ap.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in both halves (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="keep the official half's files already in --workdir")
    ap.add_argument("--official", action="store_true", help=argparse.SUPPRESS)  # the side half
    a = ap.parse_args()
    if a.official:
        official(a.src, a.workdir, a.threads, a.seed)
        return
    for p, what in ((a.src / "clipsep.py", "official sources"), (a.side_python, "side python")):
        if not p.exists():
            sys.exit(f"{what} not found at {p}: run `bash benchmarks/setup_side_envs.sh clipsep` (or pass --src / --side-python)")
    sys.path.insert(0, str(HERE.parent))
    work = a.workdir or Path(tempfile.mkdtemp(prefix="clipsep-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (a.reuse and (work / "official.json").exists()):
        write_inputs(work, a.seed)
        t0 = time.perf_counter()
        subprocess.run([str(a.side_python), __file__, "--official", "--src", str(a.src), "--workdir", str(work),
                        "--threads", str(a.threads), "--seed", str(a.seed)], check=True)  # fmt: skip
        print(f"official half: {time.perf_counter() - t0:.0f} s (files in {work})")
    compare(work, a.threads)


if __name__ == "__main__":
    main()
