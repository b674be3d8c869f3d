"""Compare hsm-bench's ``lass_net`` system with the official LASS-Net code (not a test).

The official code is liuxubo717/LASS at commit 8979776 (no licence file: never vendored), in
``benchmarks/.side/src/LASS``, run in the side venv ``benchmarks/.side/lass`` (transformers
4.30.2, the last release whose BERT saves ``position_ids`` like the 2022 checkpoint; its
environment.yml pins 4.13.0, whose tokenizers 0.10 has no wheels for current Pythons;
librosa 0.9.2, whose positional ``pad_center(data, size)`` the official STFT calls; torch
2.13.0). ``bash benchmarks/setup_side_envs.sh lass`` makes both (it clones GitHub when it
answers, else takes ``LASS_SRC=DIR``, a clone or an extracted archive). Then::

    python benchmarks/compare_lass_net_official.py [--seconds 10 20 13.37 6] [--src DIR] [--python PY]

What runs, on the same inputs and the same random weights:

* official (in the side venv: this file with ``--official``): ``LASSNet('cpu')`` built by its
  own constructor, whose ``Text_Encoder`` loads ``prajjwal1/bert-mini`` with
  ``BertTokenizer/BertModel.from_pretrained`` from a Hugging Face cache made here offline
  (the full-size BERT-mini configuration and random weights, and a small WordPiece
  vocabulary trained here: the real 30522-token vocabulary cannot be fetched offline, the
  embedding table keeps its 30522 rows); every floating tensor is then randomised
  (BatchNorm/LayerNorm scales, biases and running statistics included), saved as
  ``{'model': DataParallel(model).state_dict()}``, reloaded strictly into a fresh
  ``DataParallel(LASSNet)`` as ``inference.py`` does, and run as ``inference.py`` L52-63 runs
  it: ``load_wav``, ``STFT.transform``, ``'[CLS] ' + caption``, the model, mask x magnitude,
  ``STFT.inverse``; the float output (not ``save_wav``'s peak-normalised int16).
* hsm-bench: ``LassNet.load()`` on that file and the same BERT folder (``--weights``
  overrides), ``separate()`` on the same samples, one item per batch and all in one batch.

Printed per input: whether the token ids agree, the max |difference| of the query vector,
the STFT magnitude, the mask and the output waveform (over the official output's length),
the largest hsm-bench sample past it (the zero tail), and the sha256 of the official
checkpoint's key/shape layout (``tests/test_system_lass_net.py`` checks hsm-bench's
full-size layout against it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).resolve().parent / ".side"
SR = 32000
CAPTIONS = ["A person shouts nearby and then emergency vehicle sirens sounds",
            "rain falls on a metal roof, thunder rumbles!", "Café music: a piano & violin play", "Acoustic guitar"]  # fmt: skip


def layout_sha256(pairs) -> str:
    """sha256 over the sorted "key [shape]" lines: one fingerprint of a checkpoint layout."""
    lines = sorted(f"{k} {list(s)}" for k, s in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# -- official side (the side venv) ----------------------------------------------------------
def _hub_cache(work: Path) -> None:
    """``prajjwal1/bert-mini`` in the Hugging Face cache layout (HF_HUB_CACHE points here)."""
    import torch
    from transformers import BertConfig, BertModel

    repo = work / "hf-cache" / "models--prajjwal1--bert-mini"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (snap / "vocab.txt").write_bytes((work / "bert-mini" / "vocab.txt").read_bytes())
    torch.manual_seed(0)
    BertModel(BertConfig.from_json_file(str(work / "bert-mini" / "config.json"))).save_pretrained(
        str(snap), safe_serialization=False)  # fmt: skip
    (snap / "config.json").write_bytes((work / "bert-mini" / "config.json").read_bytes())


def _randomise(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("bias"):
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
            elif name.endswith("weight") and (".bn" in name or "LayerNorm" in name):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))


def run_official(work: Path, src: Path) -> None:
    import numpy as np
    import torch
    from torch import nn

    _hub_cache(work)
    sys.path.insert(0, str(src))
    from model.LASSNet import LASSNet
    from utils.stft import STFT
    from utils.wav_io import load_wav

    torch.manual_seed(1)
    net = LASSNet("cpu")
    _randomise(net, seed=2)
    torch.save({"model": nn.DataParallel(net).state_dict()}, work / "LASSNet.pt")
    model = nn.DataParallel(LASSNet("cpu"))
    model.load_state_dict(torch.load(work / "LASSNet.pt")["model"])
    model.eval()
    stft = STFT()
    job = json.loads((work / "job.json").read_text())
    out = {"layout": [[k, list(v.shape)] for k, v in model.state_dict().items()], "seconds": []}
    with torch.no_grad():
        for k, item in enumerate(job):
            t0 = time.perf_counter()
            waveform = torch.tensor(load_wav(item["wav"])).transpose(1, 0)
            mixed_mag, mixed_phase = stft.transform(waveform)
            text_query = ["[CLS] " + item["caption"]]
            mixed_mag = mixed_mag.transpose(2, 1).unsqueeze(0)
            est_mask = model(mixed_mag, text_query)
            est_mag = (est_mask * mixed_mag).squeeze(1).permute(0, 2, 1)
            est_wav = stft.inverse(est_mag, mixed_phase).squeeze(0).squeeze(0).numpy()
            out["seconds"].append(time.perf_counter() - t0)
            ids, attn = model.module.text_embedder.tokenize(text_query)
            cond = model.module.text_embedder(ids, attn)[0]
            np.savez(work / f"official{k}.npz", wav=est_wav, mag=mixed_mag[0, 0].numpy(), mask=est_mask[0, 0].numpy(),
                     cond=cond[0].numpy(), ids=ids[0].numpy())  # fmt: skip
    (work / "official.json").write_text(json.dumps(out))


# -- hsm-bench side -------------------------------------------------------------------------
def _inputs(work: Path, seconds: list[float]) -> list[dict]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    job = []
    for k, s in enumerate(seconds):
        n = round(s * SR)
        t = np.arange(n) / SR
        x = 0.2 * np.sin(2 * np.pi * (220 + 97 * k) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
        x = (x + 0.05 * rng.standard_normal(n)).astype(np.float32)
        wav = work / f"in{k}.wav"
        sf.write(wav, x, SR, subtype="FLOAT")
        job.append({"wav": str(wav), "caption": CAPTIONS[k % len(CAPTIONS)], "seconds": s})
    return job


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 20.0, 13.37, 6.0])
    ap.add_argument("--src", type=Path, default=SIDE / "src" / "LASS", help="the official LASS sources")
    ap.add_argument("--python", type=Path, default=SIDE / "lass" / "bin" / "python", help="the side venv's python")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    ap.add_argument("--official", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.official is not None:  # the side-venv half
        run_official(a.official, a.src)
        return 0
    for need, what in ((a.src / "model" / "LASSNet.py", "official sources"), (a.python, "side venv")):
        if not need.exists():
            print(f"{need} not found ({what}): run `bash benchmarks/setup_side_envs.sh lass` first")
            return 2

    sys.path.insert(0, str(ROOT))
    import numpy as np
    import soundfile as sf
    import torch

    from hsm_bench import weights
    from hsm_bench.api.system import SeparationBatch
    from systems.lass_net import BERT_MINI, LassNet, query_text
    from tests.lass_net_tiny import bert_mini_folder

    work = a.workdir or Path(tempfile.mkdtemp(prefix="lass-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    bert_mini_folder(work / "bert-mini", config=BERT_MINI, vocab_size=2000)
    job = _inputs(work, a.seconds)
    (work / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "HF_HUB_CACHE": str(work / "hf-cache"), "TRANSFORMERS_CACHE": str(work / "hf-cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([str(a.python), str(Path(__file__).resolve()), "--official", str(work), "--src", str(a.src)],
                   env=env, check=True, cwd=str(work))  # fmt: skip
    print(f"official side: {time.perf_counter() - t0:.1f} s ({a.python})")
    official = json.loads((work / "official.json").read_text())

    with weights.overrides({"lass-net": work / "LASSNet.pt", "bert-mini": work / "bert-mini"}):
        system = LassNet()
        system.load("cpu")
    ours_layout = [(f"module.{k}", list(v.shape)) for k, v in system.model.state_dict().items()]
    ours_layout.append(("module.text_embedder.bert_layer.embeddings.position_ids", [1, BERT_MINI["max_position_embeddings"]]))
    print(f"checkpoint layout sha256: official {layout_sha256(official['layout'])} ({len(official['layout'])} keys), "
          f"hsm-bench {layout_sha256(ours_layout)} (+ the legacy position_ids buffer)")  # fmt: skip

    clips = [sf.read(item["wav"], dtype="float32")[0] for item in job]

    def batch_of(rows: list[int]) -> SeparationBatch:
        n = max(len(clips[k]) for k in rows)
        x = torch.zeros(len(rows), 1, n)
        for i, k in enumerate(rows):
            x[i, 0, : len(clips[k])] = torch.from_numpy(clips[k])
        return SeparationBatch(item_ids=[str(k) for k in rows], mixture=x, lengths=torch.tensor([len(clips[k]) for k in rows]),
                               instructions=[""] * len(rows), task=["extract"] * len(rows),
                               caption=[job[k]["caption"] for k in rows], query_style=["caption"] * len(rows))  # fmt: skip

    with torch.inference_mode():
        together = system.separate(batch_of(list(range(len(job))))).numpy()[:, 0]
        print(f"\n{'input':>8} {'samples':>8} {'off.len':>8} {'ids':>4} {'query':>9} {'|X|':>9} {'mask':>9} "
              f"{'wav':>9} {'wav(bat)':>9} {'tail':>6} {'max|y|':>7} {'t off':>6} {'t ours':>6}")  # fmt: skip
        worst = 0.0
        for k, item in enumerate(job):
            ref = np.load(work / f"official{k}.npz")
            t1 = time.perf_counter()
            y = system.separate(batch_of([k])).numpy()[0, 0]
            t_ours = time.perf_counter() - t1
            n_in = len(clips[k])
            ids = system.tokenizer([query_text(item["caption"])], add_special_tokens=False)["input_ids"][0]
            cond = system.encode_queries([item["caption"]])[0].numpy()
            x = torch.zeros(1, max(n_in, system.pad_to))
            x[0, :n_in] = torch.from_numpy(clips[k])
            mag, _ = system.stft.transform(x)
            spec = mag.transpose(1, 2)[:, None]
            mask = system.model.mask(spec, torch.from_numpy(cond)[None])[0, 0].numpy()
            m = min(len(ref["wav"]), n_in)
            d_wav = float(np.abs(ref["wav"][:m] - y[:m]).max())
            d_bat = float(np.abs(ref["wav"][:m] - together[k, :m]).max())
            worst = max(worst, d_wav, d_bat)
            tail = float(np.abs(y[m:]).max()) if m < n_in else 0.0
            print(f"{item['seconds']:>7.2f}s {n_in:>8} {len(ref['wav']):>8} {'=' if list(ids) == list(ref['ids']) else 'DIFF':>4} "
                  f"{np.abs(cond - ref['cond']).max():>9.2e} {np.abs(spec[0, 0].numpy() - ref['mag']).max():>9.2e} "
                  f"{np.abs(mask - ref['mask']).max():>9.2e} {d_wav:>9.2e} {d_bat:>9.2e} {tail:>6.0e} "
                  f"{np.abs(ref['wav']).max():>7.3f} {official['seconds'][k]:>6.1f} {t_ours:>6.1f}")  # fmt: skip
    print(f"\nmax |official - hsm-bench| over all outputs: {worst:.3e} (target < 1e-4); files in {work}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
