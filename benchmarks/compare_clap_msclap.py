"""Compare hsm-bench's CLAP re-implementations with the official model code (not a test).

The official modules are imported from unpacked wheels, without installing them or their
pins (msclap needs torchaudio / numpy < 2 / transformers < 5 only in ``CLAPWrapper``, which
is not imported; laion_clap's ``clap_module.utils`` imports torchvision and h5py for code
paths not used here, which are stubbed). The wheels of msclap==1.3.4, laion-clap==1.1.7 and
torchlibrosa==0.1.0 are unpacked into ``benchmarks/.side/clap-src`` by
``bash benchmarks/setup_side_envs.sh clap-src`` (``--src DIR`` reads another folder)::

    python benchmarks/compare_clap_msclap.py [--only msclap-2023 ...] [--no-wrapper]

(run with the project's python; librosa must be importable: torchlibrosa builds its
filterbank with it.)

The official ``msclap.CLAPWrapper`` also runs end to end, in the side venv
``benchmarks/.side/msclap`` (``msclap==1.3.4`` with its pins; ``setup_side_envs.sh msclap``;
another python with ``--wrapper-python PY``, none with ``--no-wrapper``; skipped when the
venv is absent; see ``benchmarks/msclap_wrapper_runner.py``) on wav files: 44.1-kHz files (tile padding, and
msclap's random crop under ``random.seed(item_seed(id))`` against ``windowing=reference_crop``)
and a 16-kHz file (torchaudio's resampler in msclap, soxr VHQ here: the only intended
difference).

For each model:
the official module at its real size (text encoders tiny, built locally; HTS-AT full size)
with random weights (BatchNorm statistics and relative-position tables randomised too), its
``state_dict`` saved in the official file layout, loaded by the hsm-bench embedder, then:
key sets and shapes, audio embeddings of the same windows, text embeddings of the same
captions (msclap's ``preprocess_text`` semantics; LAION's ``tokenizer`` of ``hook.py``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SIDE = Path(__file__).resolve().parent / ".side"

import numpy as np  # noqa: E402
import torch  # noqa: E402

CAPTIONS = ["a dog barks while cars pass by", "rain falls on a metal roof!", "a woman sings with a piano"]


def _package(name: str, path: Path) -> None:
    """Register ``name`` as a namespace-like package at ``path`` without running its __init__."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(path)]
    sys.modules[name] = pkg


def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_mean", "relative_position_bias_table")) or "norm" in name and name.endswith("bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))


def _report(label: str, a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    err = float(np.abs(a - b).max())
    cos = float(np.min(np.sum(a * b, axis=-1)))
    print(f"  {label:<34} max |diff| {err:.2e}   min cosine {cos:.7f}")
    return err


def _keys(label: str, official: dict, ours: dict) -> None:
    o = {k: tuple(v.shape) for k, v in official.items()}
    m = {k: tuple(v.shape) for k, v in ours.items()}
    only_o, only_m = sorted(set(o) - set(m)), sorted(set(m) - set(o))
    shapes = [k for k in set(o) & set(m) if o[k] != m[k]]
    ok = not (only_o or only_m or shapes)
    print(f"  {label:<34} {len(o)} official keys, {len(m)} ours: {'identical names and shapes' if ok else 'DIFFER'}")
    if not ok:
        print("    only official:", only_o[:8], "\n    only ours:", only_m[:8], "\n    shapes:", shapes[:8])


def compare_msclap(src: Path, tmp: Path, version: str) -> None:
    from hsm_bench import weights
    from hsm_bench.embedders.msclap import MSCLAP2022, MSCLAP2023
    from tests import clap_tiny

    _package("msclap", src / "msclap")
    clap_mod = importlib.import_module("msclap.models.clap")
    from transformers import AutoTokenizer

    print(f"MS-CLAP {version}")
    if version == "2023":
        folder = clap_tiny.gpt2_folder(tmp / "gpt2-tiny", n_embd=48, n_layer=2, n_head=4)
        args = dict(audioenc_name="HTSAT", sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                    fmax=8000, classes_num=527, out_emb=768, transformer_embed_dim=48, d_proj=1024)  # fmt: skip
        ours_cls, text_name, dur, text_len = MSCLAP2023, "gpt2", 7, 77
    else:
        folder = clap_tiny.bert_folder(tmp / "bert-tiny", hidden=48, layers=2, heads=4)
        args = dict(audioenc_name="Cnn14", sample_rate=44100, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                    fmax=14000, classes_num=527, out_emb=2048, transformer_embed_dim=48, d_proj=1024)  # fmt: skip
        ours_cls, text_name, dur, text_len = MSCLAP2022, "bert-base-uncased", 5, 100
    torch.manual_seed(0)
    official = clap_mod.CLAP(text_model=str(folder), **args).eval()
    _randomise(official, 1)
    ckpt = tmp / f"CLAP_weights_{version}.pth"
    torch.save({"model": official.state_dict()}, ckpt)
    ours = ours_cls()
    with weights.overrides({f"msclap-{version}": ckpt, text_name: folder}):
        ours.load("cpu")
    _keys("state dict", official.state_dict(), ours.model.state_dict())

    sr = 44100
    rng = np.random.default_rng(0)
    t = np.arange(dur * sr) / sr
    clips = [0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)), 0.1 * rng.standard_normal(dur * sr)]
    batch = torch.from_numpy(np.stack(clips).astype(np.float32))
    with torch.no_grad():
        ref = official.audio_encoder(batch)[0].numpy()
    got = np.stack([f["embedding"] for f in ours.embed_audio([c.astype(np.float32) for c in clips])])
    _report(f"audio, {dur}-s windows", ref, got)

    short = (0.2 * rng.standard_normal(int(2.3 * sr))).astype(np.float32)  # msclap: tile then truncate
    tiled = np.tile(short, int(np.ceil(dur * sr / len(short))))[: dur * sr]
    with torch.no_grad():
        ref = official.audio_encoder(torch.from_numpy(tiled)[None])[0].numpy()
    _report("audio, 2.3-s clip (tile padding)", ref, ours.embed_audio([short])[0]["embedding"][None])

    tok = AutoTokenizer.from_pretrained(str(folder))
    if version == "2023":
        tok.add_special_tokens({"pad_token": "!"})
        keys = ["input_ids", "attention_mask"]
    else:
        keys = ["input_ids", "token_type_ids", "attention_mask"]
    rows = []
    for c in CAPTIONS:  # CLAPWrapper.preprocess_text, with encode_plus replaced by __call__
        text = c + " <|endoftext|>" if version == "2023" else c
        enc = tok(text, add_special_tokens=True, max_length=text_len, padding="max_length", return_tensors="pt")
        rows.append({k: enc[k].reshape(-1) for k in keys})
    batch = {k: torch.stack([r[k] for r in rows]) for k in keys}
    with torch.no_grad():
        ref = official.caption_encoder(batch).numpy()
    _report("text", ref, ours.embed_text(CAPTIONS))


def compare_laion(src: Path, tmp: Path, variant: str) -> None:
    from hsm_bench import weights
    from hsm_bench.embedders.laion_clap import LaionClap630kAudioset, LaionClapMusicSpeechAudioset
    from tests import clap_tiny

    for stub in ("torchvision", "torchvision.ops", "torchvision.ops.misc", "h5py"):
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (), {})
    _package("laion_clap", src / "laion_clap")
    _package("laion_clap.clap_module", src / "laion_clap" / "clap_module")
    model_mod = importlib.import_module("laion_clap.clap_module.model")
    for stub in ("torchvision", "torchvision.ops", "torchvision.ops.misc", "h5py"):  # transformers probes them
        if getattr(sys.modules.get(stub), "__spec__", 1) is None:
            del sys.modules[stub]
    import json

    from transformers import AutoConfig, RobertaModel

    print(f"LAION-CLAP HTSAT-{variant}")
    folder = clap_tiny.roberta_folder(tmp / "roberta-tiny", hidden=768, layers=1, heads=12)
    cfg = json.loads((src / "laion_clap" / "clap_module" / "model_configs" / f"HTSAT-{variant}.json").read_text())
    cfg["text_cfg"]["model_type"] = "roberta"
    model_mod.RobertaModel = type("R", (), {"from_pretrained": staticmethod(lambda name: RobertaModel(AutoConfig.from_pretrained(str(folder))))})
    torch.manual_seed(0)
    official = model_mod.CLAP(embed_dim=cfg["embed_dim"], audio_cfg=cfg["audio_cfg"], text_cfg=cfg["text_cfg"]).eval()
    _randomise(official, 2)
    sd = official.state_dict()
    sd["text_branch.embeddings.position_ids"] = torch.arange(130)[None]  # as in the published files
    ckpt = tmp / f"laion-{variant}.pt"
    torch.save({"epoch": 15, "state_dict": {"module." + k: v for k, v in sd.items()}}, ckpt)
    cls = LaionClap630kAudioset if variant == "tiny" else LaionClapMusicSpeechAudioset
    import dataclasses

    spec = weights.spec(cls.checkpoint_name)  # a stand-in file: drop the published size
    weights.WEIGHTS[spec.name] = dataclasses.replace(spec, size=None, sha256=None)
    ours = cls()
    with weights.overrides({cls.checkpoint_name: ckpt, "roberta-base": folder}):
        ours.load("cpu")
    _keys("state dict", official.state_dict(), ours.model.state_dict())

    sr = 48000
    rng = np.random.default_rng(1)
    clips = [(0.2 * rng.standard_normal(10 * sr)).astype(np.float32) for _ in range(2)]
    q = [((np.clip(c, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32) for c in clips]  # hook.py
    with torch.no_grad():
        ref = official.get_audio_embedding([{"waveform": torch.from_numpy(x)} for x in q]).numpy()
    got = np.stack([f["embedding"] for f in ours.embed_audio(clips)])
    _report("audio, 10-s windows (int16)", ref, got)

    short = (0.2 * rng.standard_normal(int(3.7 * sr))).astype(np.float32)
    x = torch.from_numpy(((np.clip(short, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32))
    x = torch.nn.functional.pad(x.repeat(480000 // len(x)), (0, 480000 - len(x) * (480000 // len(x))))  # repeatpad
    with torch.no_grad():
        ref = official.get_audio_embedding([{"waveform": x}]).numpy()
    _report("audio, 3.7-s clip (repeatpad)", ref, ours.embed_audio([short])[0]["embedding"][None])

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    enc = tok(CAPTIONS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        ref = official.get_text_embedding(dict(enc)).numpy()
    _report("text", ref, ours.embed_text(CAPTIONS))


def compare_wrapper(python: str, tmp: Path) -> None:
    import json
    import shutil
    import subprocess

    import soundfile as sf

    from hsm_bench import weights
    from hsm_bench.audio.resample import resample, torchaudio_resample
    from hsm_bench.embedders.clap_common import item_seed
    from hsm_bench.embedders.msclap import MSCLAP2023
    from tests import clap_tiny

    print("msclap.CLAPWrapper (official package, side venv) vs hsm-bench msclap-2023, full-size HTS-AT")
    folder = clap_tiny.gpt2_folder(tmp / "gpt2", n_embd=768, n_layer=1, n_head=12)  # the YAML fixes 768
    snap = tmp / "hf" / "hub" / "models--gpt2" / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    ckpt = clap_tiny.msclap_checkpoint(tmp / "CLAP_weights_2023.pth", "2023", folder, arch=None, seed=3)
    rng = np.random.default_rng(5)

    def tone(sec, sr, f0):
        t = np.arange(int(sec * sr)) / sr
        return (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 1.3 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)

    cases = {"44k-7s": (tone(7, 44100, 330), 44100), "44k-3s-tile": (tone(3, 44100, 550), 44100),
             "44k-10s-crop": (tone(10, 44100, 440), 44100), "16k-10s-crop": (tone(10, 16000, 440), 16000)}  # fmt: skip
    audio = {}
    for key, (x, sr) in cases.items():
        sf.write(tmp / f"{key}.wav", x, sr, subtype="FLOAT")
        audio[key] = {"path": str(tmp / f"{key}.wav"), "seed": item_seed(key), "resample_to": 44100 if sr != 44100 else None}
    job = {"checkpoint": str(ckpt), "audio": audio, "texts": CAPTIONS}
    (tmp / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    runner = Path(__file__).with_name("msclap_wrapper_runner.py")
    res = subprocess.run([python, str(runner), str(tmp)], env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"wrapper run failed:\n{res.stderr[-3000:]}")
    print("  " + res.stdout.strip().splitlines()[-1])
    ref = np.load(tmp / "wrapper.npz")

    ours = MSCLAP2023()
    with weights.overrides({"msclap-2023": ckpt, "gpt2": folder}):
        ours.load("cpu")
    for key, (x, sr) in cases.items():
        y0, _ = sf.read(tmp / f"{key}.wav", dtype="float32")
        for label, resampler in (("soxr", resample), ("torchaudio", torchaudio_resample)):
            if sr == 44100 and label == "torchaudio":
                continue
            y = resampler(y0, sr, 44100)
            if sr != 44100 and label == "torchaudio":
                err = float(np.abs(y - ref[f"resampled/{key}"]).max())
                print(f"  {'resampler ' + key + ' vs torchaudio':<34} max |diff| {err:.2e} (samples)")
            if "crop" in key:
                y = ours.reference_crop(y, item_seed(key))
            got = ours.embed_audio([y])[0]["embedding"][None]
            _report(f"audio {key}" + (f" ({label})" if sr != 44100 else ""), ref[f"audio/{key}"], got)
    _report("text (GPT-2, encode_plus)", ref["text"], ours.embed_text(CAPTIONS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=SIDE / "clap-src",
                    help=f"folder with the unpacked msclap/, laion_clap/, torchlibrosa/ (default {SIDE / 'clap-src'})")  # fmt: skip
    ap.add_argument("--only", choices=["msclap-2023", "msclap-2022", "laion-tiny", "laion-base", "none"], action="append")
    ap.add_argument("--wrapper-python", help=f"python of a venv with msclap==1.3.4 (default {SIDE / 'msclap' / 'bin' / 'python'})")
    ap.add_argument("--no-wrapper", action="store_true", help="skip the end-to-end CLAPWrapper check")
    a = ap.parse_args()
    if not (a.src / "msclap" / "models" / "clap.py").exists():
        sys.exit(f"{a.src} holds no unpacked msclap: run `bash benchmarks/setup_side_envs.sh clap-src` (or pass --src)")
    default_wrapper = SIDE / "msclap" / "bin" / "python"
    if a.no_wrapper:
        a.wrapper_python = None
    elif a.wrapper_python is None and default_wrapper.exists():
        a.wrapper_python = str(default_wrapper)
    elif a.wrapper_python is None:
        print(f"(CLAPWrapper check skipped: {default_wrapper} absent; bash benchmarks/setup_side_envs.sh msclap)")
    import tests.clap_tiny  # noqa: F401 - the project's `tests` first: laion-clap's wheel ships a `tests` package too

    sys.path.insert(0, str(a.src))  # torchlibrosa
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    todo = a.only or ["msclap-2023", "msclap-2022", "laion-tiny", "laion-base"]
    with tempfile.TemporaryDirectory() as d:
        os.environ["HSM_BENCH_HOME"] = d
        if a.wrapper_python:
            (Path(d) / "wrapper").mkdir()
            compare_wrapper(a.wrapper_python, Path(d) / "wrapper")
        for name in todo:
            if name == "none":
                continue
            tmp = Path(d) / name
            tmp.mkdir()
            if name.startswith("msclap"):
                compare_msclap(a.src, tmp, name.split("-")[1])
            else:
                compare_laion(a.src, tmp, name.split("-")[1])


if __name__ == "__main__":
    main()
