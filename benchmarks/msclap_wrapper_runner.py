"""Side-venv half of ``compare_clap_msclap.py``'s CLAPWrapper check: the official ``msclap``
package's ``CLAPWrapper`` end to end (file reading, torchaudio resampling, tiling / random
crop, GPT-2 tokenisation with its ``encode_plus``) on files written by the main half.

Runs in the side venv ``benchmarks/.side/msclap`` (``msclap==1.3.4`` and its pins: numpy < 2,
transformers < 5, torchaudio; made by ``bash benchmarks/setup_side_envs.sh msclap``).
``torchaudio.load`` needs torchcodec, which has no CPU build on PyPI: files are read with
soundfile instead (same float32 samples, channels first). ``HF_HOME`` must hold a Hub-cache
copy of the tiny ``gpt2`` folder (the main half builds it).

Usage: benchmarks/.side/msclap/bin/python benchmarks/msclap_wrapper_runner.py WORKDIR
(reads WORKDIR/job.json, writes WORKDIR/wrapper.npz; compare_clap_msclap.py starts it)
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def _load(path, *args, **kwargs):
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sr


def main() -> None:
    work = Path(sys.argv[1])
    job = json.loads((work / "job.json").read_text())
    import msclap.CLAPWrapper as wrapper_mod

    wrapper_mod.torchaudio.load = _load
    clap = wrapper_mod.CLAPWrapper(model_fp=job["checkpoint"], version="2023", use_cuda=False)
    out = {}
    for key, spec in job["audio"].items():
        random.seed(spec["seed"])  # the crop draws from Python's global RNG
        out[f"audio/{key}"] = clap.get_audio_embeddings([spec["path"]], resample=True).numpy()
        if spec.get("resample_to"):  # the resampler alone, for hsm-bench's torchaudio_resample
            x, sr = _load(spec["path"])  # (read_audio reports the target rate, not the file's)
            out[f"resampled/{key}"] = wrapper_mod.T.Resample(sr, spec["resample_to"])(x).reshape(-1).numpy()
    out["text"] = clap.get_text_embeddings(job["texts"]).numpy()
    np.savez(work / "wrapper.npz", **out)
    import transformers

    print(f"msclap CLAPWrapper ran with torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
