"""Compare hsm-bench's ``bimodalsep`` system with the official BiModalSep code (not a test).

Two halves, one file. The *official* half runs in the side venv ``benchmarks/.side/bimodalsep``
(transformers 4.30.2, librosa 0.9.2 and torchlibrosa 0.1.0 as in the official
requirements.txt, torch 2.13.0 CPU) on the official sources in
``benchmarks/.side/src/BiModalAudioSeparation`` (microsoft/BiModalAudioSeparation at
7b835cf; both made by ``bash benchmarks/setup_side_envs.sh bimodalsep``). It builds, from
``demo.py``'s own argument parser fed ``scripts/demo.sh``'s flags, the official
``ModelBuilder`` U-Net and synthesizer, a ``CustomCLAP`` around the vendored LAION-CLAP
``CLAP`` (HTSAT-base, full-size RoBERTa-base; random weights, BatchNorm statistics and
LayerNorm parameters randomised too), and ``demo.py``'s ``NetWrapper``; saves the wrapper's
``state_dict`` in the released container (``{"state_dict": {"module." + key}, "epoch"}``, CLAP
copy inside) and the CLAP in LAION's ``.pt`` layout; then separates each input with
``demo.py``'s own ``separate_audio`` (its source is taken from ``demo.py`` at run time; the
model in evaluation mode, as ``main.py``'s ``evaluate`` runs it). What is not model code is
stood in for: the Gradio / video / plotting imports of ``demo.py`` and ``utils.py``, the
spectrogram pictures (``magnitude2heatmap``), ``CLAP_Module`` (its constructor downloads the
CLAP checkpoint; the vendored ``CLAP`` is built directly) and ``RobertaTokenizer``'s Hub
download (the official slow tokenizer class reads a local vocabulary instead).

The *hsm-bench* half (the project's python) loads those two files through
``--weights``-style overrides into ``systems.bimodalsep.BiModalSep`` and separates the same
audio with the same query text. Printed: key sets, token ids, CLAP embedding, RoBERTa hidden
states, query vector, mask of the first chunk, and the maximum absolute output difference per
input (10 s, 20 s, and 16.38 s = exactly two chunks, where the demo adds an all-zero chunk),
then the same with a separator file holding neither the CLAP copy nor the STFT kernels.

The tokenizer is a byte-level BPE trained here with roberta-base's special tokens (the
roberta-base vocabulary is not reachable offline); every model is at full size.

    bash benchmarks/setup_side_envs.sh bimodalsep
    python benchmarks/compare_bimodalsep_official.py [--src DIR] [--side-python PY] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
SIDE = HERE / ".side"

# scripts/demo.sh (the flags that reach the model; the rest start processes and the web app)
DEMO_FLAGS = ["--cond_layer", "sca", "--num_cond_blocks", "1", "--num_res_layers", "1", "--num_head", "8",
              "--cond_dim", "768", "--num_downs", "7", "--num_channels", "32", "--audLen", "131070",
              "--audRate", "16000"]  # fmt: skip
ROBERTA_BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2)  # fmt: skip
CORPUS = ["a man is talking while a dog barks in the distance", "the sound of an acoustic guitar and a violin",
          "rain falls on a metal roof and thunder rumbles", "a woman speaks, birds chirp, cars pass by",
          "an engine idles then accelerates away", "water flows in a stream, wind blows through trees"]  # fmt: skip
SR = 16000
CHUNK = 131070


# ---------------------------------------------------------------------------------------------
# official half (side venv)
# ---------------------------------------------------------------------------------------------
def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # importable as a package too
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _official(src: Path):
    """Import demo.py's NetWrapper and the official model builders with the non-model imports stood in for."""
    import numpy as np

    def nothing(*args, **kwargs):
        return None

    for name in ("gradio", "moviepy", "moviepy.video", "moviepy.video.io", "imageio", "torch_mir_eval", "torchaudio",
                 "matplotlib", "matplotlib.pyplot", "cv2", "torchvision", "torchvision.ops", "h5py"):  # fmt: skip
        _stub(name)
    sys.modules["moviepy.video.io.ImageSequenceClip"] = _stub("moviepy.video.io.ImageSequenceClip", ImageSequenceClip=object)
    sys.modules["imageio"].imsave = nothing
    sys.modules["torch_mir_eval"].bss_eval_sources = nothing
    _stub("torchaudio.transforms")
    sys.modules["matplotlib"].use = nothing
    _stub("torchvision.ops.misc", FrozenBatchNorm2d=type("FrozenBatchNorm2d", (), {}))
    _stub("models.laion_clap", CLAP_Module=object)  # its module-level import pulls the Hub downloader
    sys.path[:0] = [str(src)]
    clap_pkg = types.ModuleType("clap_module")  # the vendored LAION-CLAP, without its package __init__
    clap_pkg.__path__ = [str(src / "models" / "laion_clap" / "clap_module")]
    sys.modules["clap_module"] = clap_pkg
    import importlib

    utils = importlib.import_module("utils")
    utils.magnitude2heatmap = lambda mag, *a, **k: np.zeros(np.shape(mag) + (3,), np.uint8)  # pictures only
    demo = importlib.import_module("demo")
    models = importlib.import_module("models")
    clap_model = importlib.import_module("clap_module.model")
    arguments = importlib.import_module("arguments")
    return demo, models, clap_model, arguments


def _randomise(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "relative_position_bias_table")) or ("norm" in name and name.endswith("bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif ("norm" in name or ".bn" in name) and name.endswith("weight") and t.ndim == 1:
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))


def run_official(work: Path, src: Path) -> None:
    import numpy as np
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    job = json.loads((work / "job.json").read_text())
    demo, models, clap_model, arguments = _official(src)
    sys.argv = ["demo.py", *DEMO_FLAGS]
    with contextlib.redirect_stdout(io.StringIO()):
        args = arguments.ArgParser().parse_train_arguments()

    torch.manual_seed(0)
    cfg = json.loads((src / "models/laion_clap/clap_module/model_configs/HTSAT-base.json").read_text())
    cfg["text_cfg"]["model_type"] = "roberta"  # create_model(amodel, tmodel='roberta', ...)
    clap_model.RobertaModel = type("R", (), {"from_pretrained": staticmethod(lambda name: RobertaModel(RobertaConfig(**ROBERTA_BASE)))})
    clap = clap_model.CLAP(**cfg, enable_fusion=False, fusion_type="None")
    holder = torch.nn.Module()  # CLAP_Module: the model under .model
    holder.model = clap
    net_clap = models.CustomCLAP.__new__(models.CustomCLAP)
    torch.nn.Module.__init__(net_clap)
    net_clap.model = holder
    net_clap.fc = torch.nn.Linear(512, args.num_channels)
    builder = models.ModelBuilder()
    net_sound = builder.build_sound_net(fc_dim=args.num_channels, args=args)
    net_synth = builder.build_synthesizer(fc_dim=args.num_channels)
    model = demo.NetWrapper((net_sound, net_clap, net_synth), args)
    _randomise(model, 1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # the trained parts, away from their initial values
        net_clap.fc.weight.copy_(0.3 * torch.randn(net_clap.fc.weight.shape, generator=g))
        net_synth.scale.copy_(1.0 + 0.5 * torch.randn(net_synth.scale.shape, generator=g))
        net_synth.bias.copy_(0.1 * torch.randn(1, generator=g))
    model.eval()  # main.py evaluate(); demo.py never calls it
    sd = model.state_dict()
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 0}, work / "model_weights.pth.tar")
    torch.save({"state_dict": {"module." + k: v for k, v in clap.state_dict().items()}, "epoch": 15},
               work / "music_audioset_epoch_15_esc_90.14.pt")  # fmt: skip
    (work / "official_keys.json").write_text(json.dumps({k: list(v.shape) for k, v in sd.items()}))

    # demo.py's separate_audio, from its source, with the model above in its scope
    tree = ast.parse((src / "demo.py").read_text())
    worker = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main_worker")
    fn = next(n for n in worker.body if isinstance(n, ast.FunctionDef) and n.name == "separate_audio")
    local_tok = RobertaTokenizer.from_pretrained(str(work / "tokenizer"))
    scope = {"RobertaTokenizer": type("T", (), {"from_pretrained": staticmethod(lambda name: local_tok)}),
             "np": np, "torch": torch, "librosa": demo.librosa, "model": model, "args": args, "SR_TRG": args.audRate}  # fmt: skip
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(src / "demo.py"), "exec"), scope)  # noqa: S102 - the official function

    seen: dict = {}
    wrapped = net_clap.get_text_conditioning

    def conditioning(*a, **k):
        out = wrapped(*a, **k)
        seen.setdefault("cond", [t.detach().clone() for t in out])
        return out

    def record_ids(module, inputs):  # a hook that returns something would replace the inputs
        seen.setdefault("ids", inputs[1]["input_ids"].clone())

    def record_logits(module, inputs, out):
        seen.setdefault("logits", out.detach().clone())

    net_clap.get_text_conditioning = conditioning
    model.register_forward_pre_hook(record_ids)
    net_synth.register_forward_hook(record_logits)
    results = {}
    for key, item in job["inputs"].items():
        audio = np.load(work / f"{key}.npy")
        seen.clear()
        t = time.perf_counter()
        _, _, (_, out) = scope["separate_audio"]((SR, audio.copy()), item["text"])
        print(f"  official {key}: {len(audio) / SR:.2f} s in {time.perf_counter() - t:.1f} s")
        embed, hidden, fc = seen["cond"]
        results.update({f"{key}/out": out, f"{key}/ids": seen["ids"].numpy(), f"{key}/embed": embed.numpy(),
                        f"{key}/hidden": hidden.numpy(), f"{key}/query": torch.sigmoid(fc).numpy(),
                        f"{key}/mask": torch.sigmoid(seen["logits"]).numpy()})  # fmt: skip
    np.savez(work / "official.npz", **results)


# ---------------------------------------------------------------------------------------------
# hsm-bench half (project venv)
# ---------------------------------------------------------------------------------------------
def _tokenizer_folder(path: Path) -> Path:
    """vocab.json + merges.txt (what both the official slow RobertaTokenizer and transformers 5's
    AutoTokenizer read) and a roberta-base config.json."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=500, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.save_model(str(path))
    RobertaConfig(**ROBERTA_BASE).save_pretrained(str(path))
    return path


def _inputs(work: Path) -> dict:
    import numpy as np

    rng = np.random.default_rng(7)

    def mixture(n: int) -> np.ndarray:
        t = np.arange(n) / SR
        tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
        x = 0.45 * tone + 0.2 * rng.standard_normal(n)
        x[n // 3 : n // 3 + 400] *= 3.0  # a few samples beyond [-1, 1]: the demo clips them
        return x.astype(np.float32)

    inputs = {"10s": (10 * SR, "a man is talking while a dog barks", "caption"),
              "20s": (20 * SR, "acoustic_guitar", "label"),
              "2chunks": (2 * CHUNK, "rain falls on a metal roof and thunder rumbles", "caption")}  # fmt: skip
    job = {}
    for key, (n, caption, style) in inputs.items():
        np.save(work / f"{key}.npy", mixture(n))
        job[key] = {"caption": caption, "style": style}
    return job


def _diff(a, b) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def run_ours(work: Path, job: dict, separator: Path) -> dict:
    import numpy as np
    import torch

    from hsm_bench import weights
    from hsm_bench.api.system import SeparationBatch
    from systems.bimodalsep import BiModalSep
    from systems.bimodalsep_stft import magphase

    s = BiModalSep()
    with weights.overrides({"bimodalsep": separator, "laion-clap-music-audioset": work / "music_audioset_epoch_15_esc_90.14.pt",
                            "roberta-base": work / "tokenizer"}):  # fmt: skip
        s.load("cpu")
    got = {}
    for key, item in job["inputs"].items():
        x = torch.from_numpy(np.load(work / f"{key}.npy"))
        batch = SeparationBatch(item_ids=[key], mixture=x[None, None], lengths=torch.tensor([len(x)]), instructions=[""],
                                task=["extract"], caption=[item["caption"]], query_style=[item["style"]])  # fmt: skip
        t = time.perf_counter()
        with torch.inference_mode():
            got[f"{key}/out"] = s.separate(batch)[0, 0].numpy()
            text = s.query_text(item["caption"], item["style"])
            embed, hidden = s.encode_text([text])
            got[f"{key}/ids"] = s.tokenize([text])["input_ids"].numpy()
            got[f"{key}/embed"], got[f"{key}/hidden"] = embed.numpy(), hidden.numpy()
            got[f"{key}/query"] = torch.sigmoid(s.net.net_clap.fc(embed)).numpy()
            mag = magphase(*s.net.stft(x[: s.chunk].clamp(-1, 1)[None]))[0].transpose(-1, -2)
            got[f"{key}/mask"] = s.net.mask(mag, embed, hidden).numpy()
        print(f"  hsm-bench {key}: {len(x) / SR:.2f} s in {time.perf_counter() - t:.1f} s (with the checks)")
    got["_text"] = {k: s.query_text(v["caption"], v["style"]) for k, v in job["inputs"].items()}
    return got


def compare(work: Path, python: str, src: Path) -> None:
    import subprocess

    import numpy as np
    import torch

    job = {"inputs": _inputs(work)}
    _tokenizer_folder(work / "tokenizer")
    sys.path.insert(0, str(HERE.parent))
    from systems.bimodalsep import BiModalSep, LaionClapMusicAudioset

    probe = BiModalSep()
    for v in job["inputs"].values():
        v["text"] = probe.query_text(v["caption"], v["style"])  # the official side gets the final text
    (work / "job.json").write_text(json.dumps(job))
    print(f"official code ({src}), side python {python}")
    res = subprocess.run([python, str(Path(__file__).resolve()), "--official", str(work), "--src", str(src)],
                         text=True, capture_output=True, check=False)  # fmt: skip
    print(res.stdout, end="")
    if res.returncode:
        raise SystemExit(f"the official half failed:\n{res.stderr[-4000:]}")
    ref = np.load(work / "official.npz")

    official_keys = json.loads((work / "official_keys.json").read_text())
    with torch.device("meta"):
        emb = LaionClapMusicAudioset()
        ours = {k: list(v.shape) for k, v in BiModalSep()._build(emb.build(work / "tokenizer"), 512, 768).state_dict().items()}
    legacy = {k for k in official_keys if k.endswith("embeddings.position_ids")}
    same = set(official_keys) - legacy == set(ours) and all(official_keys[k] == ours[k] for k in ours)
    print(f"key sets: official NetWrapper {len(official_keys)} keys (of which {len(legacy)} transformers-4.30 "
          f"position_ids), hsm-bench {len(ours)}: {'identical names and shapes' if same else 'DIFFERENT'}")  # fmt: skip
    if not same:
        print("  only official:", sorted(set(official_keys) - legacy - set(ours))[:5])
        print("  only hsm-bench:", sorted(set(ours) - set(official_keys))[:5])

    print("hsm-bench, separator file as saved (CLAP copy and STFT kernels inside):")
    got = run_ours(work, job, work / "model_weights.pth.tar")
    sd = torch.load(work / "model_weights.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    lean = {k: v for k, v in sd.items() if not k.startswith(("module.net_clap.model.", "module.stft.", "module.istft."))}
    torch.save({"state_dict": lean, "epoch": 0}, work / "lean.pth.tar")
    print("hsm-bench, separator file without the CLAP copy and the STFT kernels (built here instead):")
    lean_got = run_ours(work, job, work / "lean.pth.tar")

    from systems.bimodalsep_stft import ConvISTFT, ConvSTFT

    built = {**{f"stft.{k}": v for k, v in ConvSTFT(1022, 256).state_dict().items()},
             **{f"istft.{k}": v for k, v in ConvISTFT(1022, 256).state_dict().items()}}  # fmt: skip
    kern = max(_diff(built[k], sd["module." + k]) for k in built)
    print(f"STFT/ISTFT kernels built here vs torchlibrosa's (in the file): max |diff| {kern:.1e}")
    print(f"{'input':<10}{'query text':<52}{'ids':>5}{'embed':>10}{'hidden':>10}{'query':>10}{'mask':>10}"
          f"{'output':>10}{'peak':>8}{'lean':>10}")  # fmt: skip
    for key in job["inputs"]:
        ids = "same" if np.array_equal(ref[f"{key}/ids"], got[f"{key}/ids"]) else "DIFF"
        cols = [_diff(ref[f"{key}/{p}"], got[f"{key}/{p}"]) for p in ("embed", "hidden", "query", "mask", "out")]
        peak = float(np.abs(ref[f"{key}/out"]).max())
        lean_d = _diff(ref[f"{key}/out"], lean_got[f"{key}/out"])
        print(f"{key:<10}{got['_text'][key][:50]:<52}{ids:>5}" + "".join(f"{c:>10.1e}" for c in cols)
              + f"{peak:>8.3f}{lean_d:>10.1e}")  # fmt: skip
        assert ref[f"{key}/out"].shape == got[f"{key}/out"].shape
    print("(max |official - hsm-bench| per quantity; mask of the first chunk; peak = official output peak)")
    spread = ", ".join(f"{k} [{ref[f'{k}/mask'].min():.2f}, {ref[f'{k}/mask'].max():.2f}]" for k in job["inputs"])
    print(f"official masks (first chunk) span {spread}: the random model is not saturated")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=SIDE / "src" / "BiModalAudioSeparation", help="official sources")
    p.add_argument("--side-python", default=str(SIDE / "bimodalsep" / "bin" / "python"), help="python of the side venv")
    p.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    p.add_argument("--official", type=Path, help=argparse.SUPPRESS)  # the side half
    a = p.parse_args()
    if a.official:
        run_official(a.official, a.src.resolve())
        return
    for what, path in (("official sources", a.src / "demo.py"), ("side venv", Path(a.side_python))):
        if not path.exists():
            raise SystemExit(f"{what} missing ({path}): run `bash benchmarks/setup_side_envs.sh bimodalsep`")
    if a.workdir:
        a.workdir.mkdir(parents=True, exist_ok=True)
        compare(a.workdir, a.side_python, a.src.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            compare(Path(tmp), a.side_python, a.src.resolve())


if __name__ == "__main__":
    main()
