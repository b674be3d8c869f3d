"""Compare hsm-bench's ``audiosep`` / ``audiosep_dcase16k`` systems with the official code (not a test).

Two halves, one file. The *official* half runs in the side venv ``benchmarks/.side/audiosep``
(AudioSep's environment.yml pins that move numbers: transformers 4.28.1, lightning 2.0.0,
torchlibrosa 0.1.0; torch 2.13.0 CPU) on the official sources in ``benchmarks/.side/src/AudioSep``
(Audio-AGI/AudioSep at 944583f) or ``.../dcase2024_task9_baseline`` (at b9ebf34); both made by
``bash benchmarks/setup_side_envs.sh audiosep``. In a work folder laid out as the official code
expects (``roberta-base/``, ``checkpoint/music_speech_audioset_epoch_15_esc_89.98.pt``, read
relative to the current folder by ``RobertaModel.from_pretrained("roberta-base")`` and
``CLAP_Encoder``), it

1. saves a random full-size RoBERTa-base there (the official ``CLAP`` constructor loads it);
2. builds the vendored LAION-CLAP with ``create_model("HTSAT-base", "roberta")``, randomises it
   (weights as initialised, plus BatchNorm statistics, LayerNorm parameters, relative-position
   tables) and saves it in LAION's container (``{"epoch", "state_dict": {"module." + key}}``);
3. imports ``models.audiosep`` (whose default argument builds a ``CLAP_Encoder`` from that file),
   builds the official ``ResUNet30`` from the repository's ``config/audiosep_base.yaml``,
   randomises it (BatchNorm statistics and affine parameters, every bias including FiLM's; the
   frozen STFT kernels stay) and saves a Lightning checkpoint whose ``state_dict`` holds
   ``ss_model.*`` and ``query_encoder.model.*``, the latter with a re-drawn ``text_projection``
   and one RoBERTa tensor left out, so that the load order (CLAP file first, then the Lightning
   file's tensors, ``strict=False``) decides the numbers;
4. loads it with the official ``utils.load_ss_model(configs, path, CLAP_Encoder())`` and
   separates each input as the official evaluators do (``get_query_embed(modality="text",
   text=[caption])`` then ``ss_model({"mixture", "condition"})["waveform"]``), recording token
   ids, the query embedding and the network's three output maps (``after_conv``).

Stood in for (imported by the official modules, unused on the text-query path): torchvision
(``FrozenBatchNorm2d``, image transforms, datasets) and torchaudio (the audio-query resampler).

The *hsm-bench* half (the project's python) loads the same two files through ``--weights``
overrides into ``systems.audiosep`` and separates the same audio with the same caption.
Printed: key sets, token ids, query embedding, output maps, and the maximum absolute output
difference per input (10 s and 20 s by default).

Every model is at full size with random weights; the tokenizer is a byte-level BPE trained here
with roberta-base's special tokens (the roberta-base vocabulary is not reachable offline).

    bash benchmarks/setup_side_envs.sh audiosep
    python benchmarks/compare_audiosep_official.py [--variant audiosep|audiosep_dcase16k|all]
        [--seconds 10 20] [--src-root DIR] [--side-python PY] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
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
CLAP_FILE = "music_speech_audioset_epoch_15_esc_89.98.pt"
VARIANTS = {  # system name -> (official source folder, separator weights name, rate)
    "audiosep": ("AudioSep", "audiosep-base-4m", 32000),
    "audiosep_dcase16k": ("dcase2024_task9_baseline", "audiosep-dcase2024-baseline-16k", 16000),
}
CAPTIONS = ["a dog barks while cars pass by on a busy street", "rain falls on a metal roof and thunder rumbles"]
LEFT_OUT = "text_branch.encoder.layer.11.output.dense.bias"  # absent from the Lightning file: the CLAP value stays
ROBERTA_CONFIG = {"architectures": ["RobertaForMaskedLM"], "model_type": "roberta", "vocab_size": 50265,
                  "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                  "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                  "max_position_embeddings": 514, "type_vocab_size": 1, "initializer_range": 0.02,
                  "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# official half (side venv)
# ---------------------------------------------------------------------------------------------
def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _stand_ins() -> None:
    class _Unused:
        def __init__(self, *a, **k):
            raise RuntimeError("a torchvision stand-in was used: the comparison left the text-query path")

    tv = _stub("torchvision")
    tv.ops = _stub("torchvision.ops")
    tv.ops.misc = _stub("torchvision.ops.misc", FrozenBatchNorm2d=_Unused)
    tv.datasets = _stub("torchvision.datasets")
    tv.transforms = _stub("torchvision.transforms", **{n: _Unused for n in (
        "Normalize", "Compose", "RandomResizedCrop", "InterpolationMode", "ToTensor", "Resize", "CenterCrop")})
    ta = _stub("torchaudio")
    ta.functional = _stub("torchaudio.functional", resample=_Unused)


def _randomise(model, seed: int, skip: tuple[str, ...] = ()) -> None:
    """Values that initialisation leaves at 0 or 1 (BatchNorm statistics and affine parameters,
    LayerNorm parameters, biases, relative-position tables) drawn at random, so every tensor of
    the file matters to the comparison."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.startswith(skip) or not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("running_mean", "relative_position_bias_table", ".bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif ("bn" in name or "norm" in name or "LayerNorm" in name) and name.endswith(".weight"):
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))


def run_official(work: Path, src: Path, variant: str) -> None:
    import lightning  # before the stand-ins: lightning probes torchvision when imported
    import numpy as np
    import torch
    from transformers import RobertaConfig, RobertaModel

    job = json.loads((work / "job.json").read_text())
    os.chdir(work)  # the official code reads "roberta-base" and "checkpoint/..." relative to here
    sys.path.insert(0, str(src))
    _stand_ins()
    torch.manual_seed(0)
    RobertaModel(RobertaConfig.from_pretrained("roberta-base")).save_pretrained("roberta-base")

    from models.CLAP.open_clip import create_model

    clap, _ = create_model("HTSAT-base", "roberta", "", precision="fp32", device=torch.device("cpu"),
                           enable_fusion=False, fusion_type="aff_2d")  # fmt: skip
    _randomise(clap, 1)
    clap_state = clap.state_dict()
    (work / "checkpoint").mkdir(exist_ok=True)
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in clap_state.items()}}, work / "checkpoint" / CLAP_FILE)

    from models.clap_encoder import CLAP_Encoder
    from models.resunet import ResUNet30
    from utils import load_ss_model, parse_yaml

    configs = parse_yaml(str(src / "config" / "audiosep_base.yaml"))
    m = configs["model"]
    torch.manual_seed(2)
    ss_model = ResUNet30(input_channels=m["input_channels"], output_channels=m["output_channels"],
                         condition_size=m["condition_size"])  # fmt: skip
    _randomise(ss_model, 3, skip=("base.stft.", "base.istft."))
    query = dict(clap_state)
    g = torch.Generator().manual_seed(4)
    for k in [k for k in query if k.startswith("text_projection.")]:
        query[k] = 0.05 * torch.randn(query[k].shape, generator=g)
    del query[LEFT_OUT]
    state = {**{"ss_model." + k: v for k, v in ss_model.state_dict().items()},
             **{"query_encoder.model." + k: v for k, v in query.items()}}  # fmt: skip
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": lightning.__version__, "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}, work / "separator.ckpt")  # fmt: skip

    model = load_ss_model(configs=configs, checkpoint_path=str(work / "separator.ckpt"), query_encoder=CLAP_Encoder().eval()).eval()
    maps = {}
    model.ss_model.base.after_conv.register_forward_hook(lambda mod, i, o: maps.update(x=o.detach().clone()))
    out = {"keys": json.dumps({k: list(v.shape) for k, v in model.ss_model.state_dict().items()})}
    with torch.no_grad():
        for k, item in enumerate(job["items"]):
            mixture = np.load(work / item["audio"])
            ids = model.query_encoder.tokenizer([item["caption"]] * 2)["input_ids"][0]
            t0 = time.perf_counter()
            cond = model.query_encoder.get_query_embed(modality="text", text=[item["caption"]], device="cpu")
            wave = model.ss_model({"mixture": torch.Tensor(mixture)[None, None, :], "condition": cond})["waveform"]
            out.update({f"ids{k}": ids.numpy(), f"cond{k}": cond.numpy(), f"wave{k}": wave[0, 0].numpy(),
                        f"maps{k}": maps["x"][0].numpy(), f"seconds{k}": time.perf_counter() - t0})  # fmt: skip
    np.savez(work / "official.npz", **out)


# ---------------------------------------------------------------------------------------------
# hsm-bench half (project venv)
# ---------------------------------------------------------------------------------------------
def _roberta_folder(path: Path) -> Path:
    """Config (roberta-base's architecture) and a locally trained tokenizer, readable by the
    official side's slow ``RobertaTokenizer`` (vocab.json, merges.txt) and by hsm-bench's
    ``AutoTokenizer`` (tokenizer.json)."""
    from tests import clap_tiny

    path.mkdir(parents=True, exist_ok=True)
    tok = clap_tiny.roberta_tokenizer()
    tok.save_pretrained(str(path))
    tok.backend_tokenizer.model.save(str(path))
    (path / "config.json").write_text(json.dumps(ROBERTA_CONFIG, indent=2))
    return path


def _mixture(n: int, rate: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * 0.3 * t)) * t)
    bursts = (np.sin(2 * np.pi * 2.0 * t) > 0.6) * rng.standard_normal(n) * 0.2
    return (tone + bursts + 0.02 * rng.standard_normal(n)).astype(np.float32)


def run_ours(work: Path, variant: str, official) -> list[str]:
    import numpy as np
    import torch

    from hsm_bench import weights
    from hsm_bench.api.system import SeparationBatch
    from hsm_bench.registry import SYSTEMS
    from systems.audiosep import CLAP_WEIGHTS

    _, sep_name, rate = VARIANTS[variant]
    job = json.loads((work / "job.json").read_text())
    # the random CLAP file cannot have the published file's size
    weights.WEIGHTS[CLAP_WEIGHTS] = dataclasses.replace(weights.spec(CLAP_WEIGHTS), size=None, sha256=None)
    system = SYSTEMS.get(variant)()
    with weights.overrides({sep_name: work / "separator.ckpt", CLAP_WEIGHTS: work / "checkpoint" / CLAP_FILE,
                            "roberta-base": work / "roberta-base"}):  # fmt: skip
        system.load("cpu")
    lines = []
    keys = json.loads(str(official["keys"]))
    ours = {k: list(v.shape) for k, v in system.model.state_dict().items()}
    lines.append(f"  ss_model keys: official {len(keys)}, hsm-bench {len(ours)}, names and shapes identical: {keys == ours}")
    maps = {}
    system.model.base.after_conv.register_forward_hook(lambda mod, i, o: maps.update(x=o.detach().clone()))
    for k, item in enumerate(job["items"]):
        mixture = torch.from_numpy(np.load(work / item["audio"]))[None, None]
        ids = system.text.tokens(system.tokenizer, [item["caption"]])["input_ids"][0].numpy()
        t0 = time.perf_counter()
        cond = system.embed([item["caption"]]).numpy()
        batch = SeparationBatch(item_ids=["x"], mixture=mixture, lengths=torch.tensor([mixture.shape[-1]]),
                                instructions=[""], task=["extract"], caption=[item["caption"]], query_style=["caption"])  # fmt: skip
        with torch.inference_mode():
            wave = system.separate(batch)[0, 0].numpy()
        secs = time.perf_counter() - t0
        ref = official[f"wave{k}"]
        lines.append(
            f"  {item['seconds']:>4g} s at {rate} Hz: token ids equal {np.array_equal(ids, official[f'ids{k}'])}; "
            f"query embedding max |diff| {np.abs(cond - official[f'cond{k}']).max():.2e}; "
            f"output maps {np.abs(maps['x'][0].numpy() - official[f'maps{k}']).max():.2e}; "
            f"OUTPUT max |diff| {np.abs(wave - ref).max():.2e} (peak {np.abs(ref).max():.3f}); "
            f"{float(official[f'seconds{k}']):.1f} s official, {secs:.1f} s hsm-bench"
        )
    return lines


def compare(variant: str, args) -> list[str]:
    import subprocess

    import numpy as np

    folder, _, rate = VARIANTS[variant]
    src = Path(args.src_root or SIDE / "src") / folder
    if not (src / "models" / "resunet.py").is_file():
        raise SystemExit(f"official sources missing at {src}: run `bash benchmarks/setup_side_envs.sh audiosep` "
                         f"(or pass --src-root DIR holding {folder}/)")  # fmt: skip
    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"cmp-{variant}-")) / variant
    work.mkdir(parents=True, exist_ok=True)
    _roberta_folder(work / "roberta-base")
    items = []
    for k, s in enumerate(args.seconds):
        np.save(work / f"mix{k}.npy", _mixture(int(s * rate), rate, seed=k))
        items.append({"audio": f"mix{k}.npy", "caption": CAPTIONS[k % len(CAPTIONS)], "seconds": s})
    (work / "job.json").write_text(json.dumps({"items": items}))
    t0 = time.perf_counter()
    res = subprocess.run([args.side_python, str(Path(__file__).resolve()), "--official", str(work), "--src", str(src),
                          "--variant", variant], capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"the official half failed:\n{res.stderr[-4000:]}")
    official = np.load(work / "official.npz")
    lines = [f"{variant}: official {src.name} ({time.perf_counter() - t0:.0f} s for the official half), work {work}"]
    lines += run_ours(work, variant, official)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="all", choices=[*VARIANTS, "all"])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 20.0])
    ap.add_argument("--src-root", help="folder holding AudioSep/ and dcase2024_task9_baseline/ (default benchmarks/.side/src)")
    ap.add_argument("--side-python", default=str(SIDE / "audiosep" / "bin" / "python"))
    ap.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--official", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.official:
        run_official(Path(args.official), Path(args.src), args.variant)
        return
    sys.path.insert(0, str(HERE.parent))
    print("random full-size models (ResUNet30, HTSAT-base, RoBERTa-base 12 layers); locally trained BPE tokenizer")
    for variant in VARIANTS if args.variant == "all" else [args.variant]:
        print("\n".join(compare(variant, args)), flush=True)


if __name__ == "__main__":
    main()
