"""Write the golden tables of tests/golden/ from the official implementations (not a test).

Each table holds per-item values computed by the reference code itself, on inputs and
weights that ``tests/golden/inputs.py`` rebuilds bit for bit from numpy; the test
``tests/test_golden_official.py`` recomputes them with hsm-bench and compares. The official
code runs in the side environments of ``benchmarks/setup_side_envs.sh``; hsm-bench is not
imported by any part (so nothing of ours leaks into the official numbers).

Parts (each runs in its own interpreter, started by this driver):

* ``signal`` (``.side/aldm``): audioldm-eval 0.0.3's ``MelPairedDataset`` + ``TacotronSTFT``
  and ``EvaluationHelper.calculate_lsd`` (time offset 1120, and 0 for ``lsd_aligned``) /
  ``calculate_psnr_ssim``, one pair per loader (per-item values) and all pairs at once (the
  package's corpus means), with the run-time patches of ``audioldm_eval_runner.py``
  (soundfile reading, librosa keyword wrappers). An item whose PSNR the package skips as
  infinite is recorded with the package's own ``psnr`` function on the same mel images.
* ``kl`` (``.side/aldm``): audioldm-eval's ``Cnn14`` with narrow conv blocks (the official
  ``ConvBlock`` / ``nn.Linear`` modules at the widths ``inputs.CNN14_WIDTHS``, swapped in after
  construction; the constructor's hard-wired full-size checkpoint load is bypassed), its
  numpy-seeded state dict loaded strictly, ``WaveDataset`` (mean removal, torchaudio
  resampling, padding to 2 s), ``get_featuresdict`` and ``calculate_kl`` per pair.
* ``kl_full``: the same at Cnn14's real size, built by the official constructor itself from
  a checkpoint file it loads strictly (two pairs; the test is marked slow).
* ``resample`` (``.side/aldm``): torchaudio 2.11's two sinc-resampler paths on
  ``inputs.resample_inputs()``: ``torchaudio.functional.resample`` on the float32 waveform
  (float32 kernel; audioldm-eval's loaders) and ``torchaudio.transforms.Resample`` (float64
  kernel rounded to float32; msclap), every output sample stored (base64 float32).
* ``clap`` (``.side/msclap``, msclap 1.3.4 with its pins): ``msclap.models.clap.CLAP`` with a
  narrow official ``HTSAT_Swin_Transformer`` (``inputs.TINY_HTSAT``) and a 2-layer GPT-2 from
  a local folder (tokenizer built from an explicit vocabulary), numpy-seeded weights loaded
  strictly; embeddings through ``CLAPWrapper.get_audio_embeddings`` / ``get_text_embeddings``
  (file reading with soundfile, torchaudio's resampler, tiling or the random crop under
  ``random.seed(crop seed)``, ``encode_plus`` tokenisation) on a wrapper whose fields are set
  as ``CLAPWrapper.load_clap`` sets them. Cosines in float64.

Usage:
    bash benchmarks/setup_side_envs.sh aldm msclap
    python benchmarks/make_golden.py [--only signal kl kl_full clap] [--side DIR] [--out DIR]

Takes about 1.5 minutes on 2 cores. Writes tests/golden/<part>.json (values, input hashes,
weight fingerprints, package versions, date, command).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_SIDE = HERE / ".side"
DEFAULT_OUT = ROOT / "tests" / "golden"
PARTS = {"signal": "aldm", "kl": "aldm", "kl_full": "aldm", "resample": "aldm", "clap": "msclap"}
SEEDS = {"kl": 1, "kl_full": 1, "clap": 2}  # weight seeds
KL_FULL_ITEMS = ("tone_vs_square", "short_padded")


# ---------------------------------------------------------------- shared helpers (side)
def _inputs():
    sys.path.insert(0, str(ROOT))
    from tests.golden import inputs

    return inputs


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "absent"
    return out


def _sf_load(path, *args, **kwargs):
    """torchaudio.load's result ([C, T] float32, rate) read with soundfile."""
    import soundfile as sf
    import torch

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), rate


def _write(folder: Path, name: str, x, sr: int) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wav"
    sf.write(path, x, sr, subtype="FLOAT")  # float32 on disk: the exact arrays, values > 1 kept
    return path


def _float(v: float):
    import math

    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")


# ---------------------------------------------------------------- part: signal
def part_signal(work: Path) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    sys.path.insert(0, str(HERE))
    from audioldm_eval_runner import patch  # soundfile reading + librosa keyword wrappers

    g = _inputs()
    patch()
    from types import SimpleNamespace

    import audioldm_eval.eval as aldm_eval
    from audioldm_eval.audio import TacotronSTFT
    from audioldm_eval.datasets.load_mel import MelPairedDataset
    from audioldm_eval.eval import EvaluationHelper
    from ssr_eval.metrics import AudioMetrics

    pairs = g.signal_pairs()
    hashes = {}
    for name, (est, ref) in pairs.items():
        _write(work / "gen", name, est, g.SIGNAL_SR)
        _write(work / "target", name, ref, g.SIGNAL_SR)
        hashes[name] = {"estimate": g.sha256(est), "reference": g.sha256(ref)}
    torch.manual_seed(0)
    stft = TacotronSTFT(512, 160, 512, 64, 16000, 50, 8000)  # what EvaluationHelper builds at 16 kHz
    dataset = MelPairedDataset(str(work / "gen"), str(work / "target"), stft, 16000)
    helper = SimpleNamespace(lsd_metric=AudioMetrics(16000))
    helper.lsd = lambda x, y: EvaluationHelper.lsd(helper, x, y)
    items = {}
    for i in range(len(dataset)):
        name = Path(dataset.datalist1[i]).stem
        loader = DataLoader(Subset(dataset, [i]), batch_size=1)
        lsd = EvaluationHelper.calculate_lsd(helper, loader)["lsd"]
        aligned = EvaluationHelper.calculate_lsd(helper, loader, time_offset=0)["lsd"]
        psnr = EvaluationHelper.calculate_psnr_ssim(helper, loader)["psnr"]
        if not np.isfinite(psnr):  # skipped as infinite by the package: its own psnr() on the same images
            mel_gen, mel_target, _, _ = next(iter(loader))
            psnr = aldm_eval.psnr(mel_gen.numpy()[0], mel_target.numpy()[0])
        items[name] = {"lsd": float(lsd), "lsd_aligned": float(aligned), "psnr": _float(float(psnr))}
    loader = DataLoader(dataset, batch_size=1)
    corpus = {"lsd": float(EvaluationHelper.calculate_lsd(helper, loader)["lsd"]),
              "psnr": float(EvaluationHelper.calculate_psnr_ssim(helper, loader)["psnr"])}  # fmt: skip
    return {
        "items": dict(sorted(items.items())),
        "corpus": corpus,
        "inputs": {"function": "tests/golden/inputs.py::signal_pairs", "sample_rate": g.SIGNAL_SR, "sha256": hashes},
        "versions": _versions("audioldm-eval", "ssr-eval", "torch", "torchaudio", "numpy", "librosa", "scikit-image", "soundfile"),
    }


# ---------------------------------------------------------------- part: kl
FULL_WIDTHS = (64, 128, 256, 512, 1024, 2048)


def _official_cnn14(widths: tuple[int, ...], load: bool = False):
    """audioldm-eval's Cnn14 (16-kHz configuration).

    ``load=True``: the constructor as the package runs it, which loads
    ./ckpt/Cnn14_16k_mAP=0.438.pth strictly (real size only). ``load=False``: the
    constructor with that hard-wired load skipped; then, for other widths, the conv blocks
    and the two linear layers are replaced by the official ``ConvBlock`` / ``nn.Linear`` at
    ``widths`` (the official forward is width-agnostic)."""
    import torch

    import audioldm_eval.feature_extractors.panns.models as models

    kwargs = dict(features_list=["2048", "logits"], sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
                  fmin=50, fmax=8000, classes_num=527)  # fmt: skip
    if load:
        return models.Cnn14(**kwargs)
    torch_load = torch.load
    models.Cnn14.load_state_dict = lambda self, *a, **k: None
    torch.load = lambda *a, **k: {"model": None}
    try:
        model = models.Cnn14(**kwargs)
    finally:
        torch.load = torch_load
        del models.Cnn14.load_state_dict
    if tuple(widths) != FULL_WIDTHS:
        chans = (1, *widths)
        for k in range(6):
            setattr(model, f"conv_block{k + 1}", models.ConvBlock(in_channels=chans[k], out_channels=chans[k + 1]))
        model.fc1 = torch.nn.Linear(widths[-1], widths[-1], bias=True)
        model.fc_audioset = torch.nn.Linear(widths[-1], 527, bias=True)
    return model


def part_kl(work: Path, full: bool = False) -> dict:
    import torch
    from torch.utils.data import DataLoader

    g = _inputs()
    import audioldm_eval.datasets.load_mel as load_mel

    load_mel.torchaudio.load = _sf_load  # torchaudio's decoder needs CUDA libraries here
    from types import SimpleNamespace

    from audioldm_eval.datasets.load_mel import WaveDataset
    from audioldm_eval.eval import EvaluationHelper
    from audioldm_eval.metrics.kl import calculate_kl

    seed = SEEDS["kl_full" if full else "kl"]
    pairs = g.kl_pairs()
    if full:
        pairs = {k: pairs[k] for k in KL_FULL_ITEMS}
    hashes = {}
    for name, (est, ref, sr) in pairs.items():
        _write(work / "gen", name, est, sr)
        _write(work / "target", name, ref, sr)
        hashes[name] = {"estimate": g.sha256(est), "reference": g.sha256(ref), "sample_rate": sr}
    os.chdir(work)  # the constructor reads ./ckpt/...; the 32-kHz file only has to exist (no download)
    (work / "ckpt").mkdir()
    (work / "ckpt" / "Cnn14_mAP=0.431.pth").touch()
    widths = FULL_WIDTHS if full else g.CNN14_WIDTHS
    model = _official_cnn14(widths)
    state = model.state_dict()
    filled = g.fill_state_dict({k: tuple(v.shape) for k, v in state.items()}, seed, g.cnn14_rule)
    sd = {k: (torch.from_numpy(filled[k]) if k in filled else v) for k, v in state.items()}
    if full:  # the package's own path: its constructor loads the file strictly
        torch.save({"model": sd}, work / "ckpt" / "Cnn14_16k_mAP=0.438.pth")
        del model, state, sd
        model = _official_cnn14(widths, load=True)
    else:
        model.load_state_dict(sd, strict=True)
    model.eval()
    helper = SimpleNamespace(mel_model=model, device=torch.device("cpu"))
    f_gen = EvaluationHelper.get_featuresdict(helper, DataLoader(WaveDataset(str(work / "gen"), 16000), batch_size=1))
    f_tgt = EvaluationHelper.get_featuresdict(helper, DataLoader(WaveDataset(str(work / "target"), 16000), batch_size=1))
    items = {}
    for i, path in enumerate(f_tgt["file_path_"]):
        j = f_gen["file_path_"].index(path)
        one_gen = {"logits": f_gen["logits"][j : j + 1], "file_path_": [path]}
        one_tgt = {"logits": f_tgt["logits"][i : i + 1], "file_path_": [path]}
        kl, _, _ = calculate_kl(one_gen, one_tgt, "logits", True)
        items[Path(path).stem] = {"kl": kl["kullback_leibler_divergence_softmax"], "kl_sigmoid": kl["kullback_leibler_divergence_sigmoid"]}
    corpus, _, _ = calculate_kl(f_gen, f_tgt, "logits", True)
    return {
        "items": dict(sorted(items.items())),
        "corpus": {"kl": corpus["kullback_leibler_divergence_softmax"], "kl_sigmoid": corpus["kullback_leibler_divergence_sigmoid"]},
        "model": {"widths": list(widths), "seed": seed,
                  "rule": "tests/golden/inputs.py::cnn14_rule", "weights_sha256": g.fingerprint(filled),
                  "filled_keys": len(filled), "keys": len(model.state_dict())},  # fmt: skip
        "inputs": {"function": "tests/golden/inputs.py::kl_pairs" + (f" ({', '.join(KL_FULL_ITEMS)})" if full else ""),
                   "sha256": hashes},  # fmt: skip
        "versions": _versions("audioldm-eval", "torchlibrosa", "torch", "torchaudio", "numpy", "librosa", "soundfile"),
    }


# ---------------------------------------------------------------- part: clap
def crop_seed(item_id: str, seed: int = 0) -> int:
    """The per-item crop seed hsm-bench's ``windowing=reference_crop`` documents: the first 4
    bytes (big-endian) of sha256("{seed}:{id}"). Recorded per item; the test checks hsm-bench
    derives the same one."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def part_clap(work: Path) -> dict:
    import random

    import numpy as np
    import torch

    g = _inputs()
    import msclap.CLAPWrapper as wrapper_mod
    from msclap.models import htsat as off_htsat
    from msclap.models.clap import CLAP
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    wrapper_mod.torchaudio.load = _sf_load  # torchaudio.load needs torchcodec (no CPU build here)
    folder = g.gpt2_folder(work / "gpt2-tiny")  # msclap keys GPT-2 handling on 'gpt' in the name
    torch.manual_seed(0)  # any weights: AutoModel.from_pretrained needs a file, the checkpoint replaces them
    GPT2Model(GPT2Config.from_pretrained(str(folder))).save_pretrained(str(folder))

    Wrapper = wrapper_mod.CLAPWrapper
    w = Wrapper.__new__(Wrapper)  # the fields __init__ / load_clap set, with a small model
    w.np_str_obj_array_pattern = __import__("re").compile(r"[SaUO]")
    w.default_collate_err_msg_format = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
    w.use_cuda = False
    w.config_as_str = (Path(wrapper_mod.__file__).parent / "configs" / "config_2023.yml").read_text()
    args = w.read_config_as_args(w.config_as_str, is_config_str=True)
    tiny_features = g.TINY_HTSAT["embed_dim"] * 2 ** (len(g.TINY_HTSAT["depths"]) - 1)
    args.text_model, args.transformer_embed_dim = str(folder), g.GPT2_TEXT["n_embd"]
    args.out_emb, args.d_proj = tiny_features, g.CLAP_D_PROJ
    w.args = args
    w.token_keys = ["input_ids", "attention_mask"]
    clap = CLAP(audioenc_name=args.audioenc_name, sample_rate=args.sampling_rate, window_size=args.window_size,
                hop_size=args.hop_size, mel_bins=args.mel_bins, fmin=args.fmin, fmax=args.fmax,
                classes_num=args.num_classes, out_emb=args.out_emb, text_model=args.text_model,
                transformer_embed_dim=args.transformer_embed_dim, d_proj=args.d_proj)  # fmt: skip
    clap.audio_encoder.base.htsat = off_htsat.HTSAT_Swin_Transformer(config=off_htsat.config, **g.TINY_HTSAT)
    state = clap.state_dict()
    filled = g.fill_state_dict({k: tuple(v.shape) for k, v in state.items()}, SEEDS["clap"], g.clap_rule)
    clap.load_state_dict({k: (torch.from_numpy(filled[k]) if k in filled else v) for k, v in state.items()}, strict=True)
    w.clap = clap.eval()
    tok = AutoTokenizer.from_pretrained(args.text_model)
    tok.add_special_tokens({"pad_token": "!"})
    w.tokenizer = tok

    def unit(v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        return v / np.linalg.norm(v)

    items, hashes, tokens = {}, {}, {}
    captions = [it["caption"] for it in g.clap_items()]
    text = {c: unit(e) for c, e in zip(captions, w.get_text_embeddings(captions).numpy())}
    for it in g.clap_items():
        iid, sr = it["id"], it["sample_rate"]
        seed = crop_seed(iid)
        emb = {}
        for role in ("estimate", "reference", "mixture"):
            path = _write(work / role, iid, it[role], sr)
            random.seed(seed)  # msclap's crop draws from Python's global RNG
            emb[role] = unit(w.get_audio_embeddings([str(path)], resample=True).numpy())
        t = text[it["caption"]]
        clap_v = float(t @ emb["estimate"])
        items[iid] = {"clap": clap_v, "clap_a": float(emb["estimate"] @ emb["reference"]),
                      "clapi": clap_v - float(t @ emb["mixture"])}  # fmt: skip
        hashes[iid] = {r: g.sha256(it[r]) for r in ("estimate", "reference", "mixture")}
        hashes[iid].update(sample_rate=sr, crop_seed=seed, seconds=len(it["estimate"]) / sr)
        enc = w.preprocess_text([it["caption"]])
        tokens[iid] = enc["input_ids"][0][: int(enc["attention_mask"][0].sum())].tolist()
    return {
        "items": items,
        "tokens": tokens,
        "model": {"htsat": g.TINY_HTSAT, "d_proj": g.CLAP_D_PROJ, "text": g.GPT2_TEXT, "seed": SEEDS["clap"],
                  "rule": "tests/golden/inputs.py::clap_rule", "weights_sha256": g.fingerprint(filled),
                  "filled_keys": len(filled), "keys": len(state), "window_s": args.duration,
                  "sample_rate": args.sampling_rate, "text_len": args.text_len},  # fmt: skip
        "inputs": {"function": "tests/golden/inputs.py::clap_items", "sha256": hashes},
        "versions": _versions("msclap", "torch", "torchaudio", "transformers", "tokenizers", "numpy", "soundfile"),
    }


# ---------------------------------------------------------------- part: resample
def part_resample(work: Path) -> dict:
    import base64

    import numpy as np
    import torch
    import torchaudio

    g = _inputs()
    items, hashes = {}, {}
    for name, (x, a, b) in g.resample_inputs().items():
        wave = torch.from_numpy(x)[None]
        outs = {
            "functional": torchaudio.functional.resample(wave, a, b)[0].numpy(),
            "transform": torchaudio.transforms.Resample(a, b)(wave)[0].numpy(),
        }
        items[name] = {k: base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode() for k, v in outs.items()}
        hashes[name] = g.sha256(x)
    return {
        "items": items,
        "inputs": {"function": "tests/golden/inputs.py::resample_inputs", "sha256": hashes},
        "versions": _versions("torch", "torchaudio", "numpy"),
    }


# ---------------------------------------------------------------- driver
def run_part(name: str, out: Path) -> None:
    torch_threads = os.environ.get("GOLDEN_THREADS")
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as d:
        work = Path(d)
        if name == "signal":
            table = part_signal(work)
        elif name in ("kl", "kl_full"):
            table = part_kl(work, full=name == "kl_full")
        elif name == "resample":
            table = part_resample(work)
        else:
            table = part_clap(work)
    out.write_text(json.dumps(table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(PARTS), help="parts to (re)write (default: all)")
    ap.add_argument("--side", type=Path, default=DEFAULT_SIDE, help=f"side environments folder (default {DEFAULT_SIDE})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the tables go (default {DEFAULT_OUT})")
    ap.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)  # internal: run one part here
    ap.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        run_part(a.part, a.part_out)
        return
    import time

    for name in a.only or list(PARTS):
        py = a.side / PARTS[name] / "bin" / "python"
        if not py.exists():
            sys.exit(f"{py} not found: run `bash benchmarks/setup_side_envs.sh {PARTS[name]}` first (or pass --side)")
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d) / "part.json"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}
            res = subprocess.run([str(py), __file__, "--part", name, "--part-out", str(tmp)], env=env,
                                 capture_output=True, text=True)  # fmt: skip
            if res.returncode:
                sys.exit(f"part {name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
            table = json.loads(tmp.read_text())
        table = {
            "generator": {
                "command": f"python benchmarks/make_golden.py --only {name}",
                "side_environment": f"benchmarks/.side/{PARTS[name]} (benchmarks/setup_side_envs.sh)",
                "date": datetime.date.today().isoformat(),
                "inputs_py_sha256": hashlib.sha256((ROOT / "tests" / "golden" / "inputs.py").read_bytes()).hexdigest(),
            },
            **table,
        }
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{name}.json").write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
        print(f"{name}: {len(table['items'])} items -> {a.out / (name + '.json')} ({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
