"""Expected GPU memory per model (estimates: weights + activations for one 10-s clip, not
measured on a GPU).

* **Weights**: every parameter and buffer of the modules the embedder or system keeps after
  loading (tied tensors once), at the dtype it runs in. Models are built on the ``meta``
  device (shapes, no memory) from the published architectures: Cnn14, HTS-AT tiny/base,
  GPT-2, BERT-base, RoBERTa-base, OPT-IML-MAX-1.3B (``bench_afsim_af1.py``'s config),
  Qwen2.5-7B and the Audio Flamingo 3 encoder; the separators with ``load_random`` on the CPU
  (all small).
* **Activations**: the peak of live tensors (op outputs, weights excluded) during one 10-s
  clip through the path the harness uses (``embed_audio`` with the default batch sizes, the
  system's ``separate`` on a batch of one), tracked on the CPU in float32 under
  ``torch.inference_mode``. A GPU adds kernel workspaces and allocator slack on top; the
  Audio Flamingo 3 row (too large for this machine) uses a stated allowance instead.
* Not included: the CUDA context, about 0.3-0.5 GB per process.

In ``runtime.score_order=metric`` one embedding model is on the GPU at a time, so the score
stage needs the largest row of the metrics it runs, not their sum; the separation stage needs
the system's row. bf16 autocast (``metrics.params.<m>.autocast=bf16``) does not shrink the
weights (they stay float32; autocast casts per op); Audio Flamingo's ``dtype=bfloat16``
backend parameter does.

Usage: python benchmarks/gpu_memory_estimates.py [--no-activations] [--only NAME ...] [--json out.json]
(about a minute and 10 GB of RAM on 2 cores, half of it for Audio Flamingo 1 at full size;
``--no-activations`` prints the weights in about 12 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

GIB = 2**30
SECONDS = 10.0
QUERY = "a dog barks while a car passes by"
AF3_ACTIVATIONS_GIB = 1.0  # stated: 28 hidden states of ~780 tokens x 3584 in float32, attention, FFN; encoder on 30 s
# Qwen2.5-7B as published (config.json of Qwen/Qwen2.5-7B-Instruct), the LM of Audio Flamingo 3
QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, tie_word_embeddings=False)  # fmt: skip


class LiveTensors(TorchDispatchMode):
    """Peak bytes of live op outputs: a storage counts from the op that makes it until the
    last tensor object that views it is gone."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.views: dict[int, int] = {}  # storage pointer -> live tensor objects viewing it
        self.sizes: dict[int, int] = {}
        self.objects: dict[int, weakref.ref] = {}

    def _gone(self, obj_id: int, key: int) -> None:
        self.objects.pop(obj_id, None)
        self.views[key] -= 1
        if not self.views[key]:
            del self.views[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            ref = self.objects.get(id(t))
            if ref is not None and ref() is t:  # an in-place op hands its input back
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if not size:
                continue
            if key not in self.views:
                self.views[key], self.sizes[key] = 0, size
                self.live += size
                self.peak = max(self.peak, self.live)
            self.views[key] += 1
            self.objects[id(t)] = weakref.ref(t)
            weakref.finalize(t, self._gone, id(t), key)
        return out


def peak_activations(fn) -> int:
    with torch.inference_mode():
        mode = LiveTensors()
        with mode:
            fn()
    return mode.peak


def weight_count(modules) -> tuple[int, int]:
    """(parameters, bytes of parameters and buffers), each tensor once."""
    seen: set[int] = set()
    n_params = n_bytes = 0
    for m in modules:
        for is_param, t in itertools.chain(((True, p) for p in m.parameters()), ((False, b) for b in m.buffers())):
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            n_params += t.numel() if is_param else 0
            n_bytes += t.numel() * t.element_size()
    return n_params, n_bytes


def held_modules(obj) -> list[torch.nn.Module]:
    return [v for v in vars(obj).values() if isinstance(v, torch.nn.Module)]


def clip(rate: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(SECONDS * rate))).astype(np.float32)


# -- embedders (metrics) ----------------------------------------------------------------------------
def cnn14(measure: bool) -> list[dict]:
    from hsm_bench.embedders.panns import Cnn14, Cnn14_16k

    with torch.device("meta"):
        n, b = weight_count([Cnn14(16000)])
    act = None
    if measure:
        e = Cnn14_16k()
        e.load_state_dict(Cnn14(16000).state_dict())
        act = peak_activations(lambda: e.embed_audio([clip(16000)]))
    return [row("PANNs Cnn14 16 kHz", "kl", n, b, "float32", act)]


def msclap(measure: bool) -> list[dict]:
    from transformers import BertConfig, GPT2Config

    from hsm_bench.embedders.msclap import MSCLAP2022, MSCLAP2023

    rows = []
    for cls, text in ((MSCLAP2023, GPT2Config()), (MSCLAP2022, BertConfig())):  # gpt2 / bert-base-uncased sizes
        with torch.device("meta"):
            n, b = weight_count([cls().build(None, text_config=text)])
        act = None
        if measure:  # the audio tower is what runs per clip; text embeddings are memoised
            e = cls()
            e.init_random(0)
            act = peak_activations(lambda: e.embed_audio([clip(e.sample_rate)]))
        rows.append(row(f"MS-CLAP {cls.ms_version} (+ {'GPT-2' if cls is MSCLAP2023 else 'BERT-base'})",
                        f"clap ({cls.name})", n, b, "float32", act))  # fmt: skip
    return rows


def laion(measure: bool) -> list[dict]:
    from transformers import RobertaConfig

    from hsm_bench.embedders.laion_clap import LaionClap630kAudioset, LaionClapMusicSpeechAudioset
    from systems.audiosep_query import ROBERTA_BASE

    rows = []
    for cls, label in ((LaionClapMusicSpeechAudioset, "HTS-AT base"), (LaionClap630kAudioset, "HTS-AT tiny")):
        with torch.device("meta"):
            n, b = weight_count([cls().build(None, text_config=RobertaConfig(**ROBERTA_BASE))])
        act = None
        if measure:
            e = cls()
            e.init_random(0)
            act = peak_activations(lambda: e.embed_audio([clip(e.sample_rate)]))
        rows.append(row(f"LAION-CLAP {label} (+ RoBERTa-base)", f"clap ({cls.name})", n, b, "float32", act))
    return rows


def audio_flamingo_1(measure: bool) -> list[dict]:
    from transformers import OPTForCausalLM

    from benchmarks.bench_afsim_af1 import opt_iml_max_1_3b_config
    from hsm_bench.embedders.audio_flamingo1 import ARCH, AudioFlamingo1, _build_model, add_af1_tokens
    from tests.af1_tiny import tokenizer

    def build():
        lm = OPTForCausalLM(opt_iml_max_1_3b_config()).eval()
        lm.resize_token_embeddings(50268, mean_resizing=False)  # OPT's 50265 tokens + <audio>, <|endofchunk|>, <SEP>
        e = AudioFlamingo1()
        clap = e.build_clap()
        return e, _build_model(lm, int(clap.projection.linear1.out_features), ARCH), clap

    with torch.device("meta"):
        _, model, clap = build()
        n, b32 = weight_count([model, clap])
        lm_params, lm_bytes = weight_count([model])
    b16 = b32 - lm_bytes // 2  # dtype=bfloat16 converts the Flamingo LM; the CLAP encoder stays float32
    acts = {"float32": None, "bfloat16": None}
    if measure:
        e = AudioFlamingo1()
        e.init_random(OPTForCausalLM(opt_iml_max_1_3b_config()).eval(), add_af1_tokens(tokenizer()), seed=0)
        for dtype in ("float32", "bfloat16"):
            e.model.to(getattr(torch, dtype))
            e._zero_embedding = None
            acts[dtype] = peak_activations(lambda e=e: e.embed_audio([clip(16000)]))
        del e
    return [row("Audio Flamingo 1 (OPT-IML-MAX-1.3B + xattn + clapcap HTS-AT)", "afsim (audio-flamingo-1)", n, b32,
                "float32", acts["float32"]),
            row("Audio Flamingo 1, backend_params.dtype=bfloat16", "afsim (audio-flamingo-1)", n, b16,
                "LM bfloat16", acts["bfloat16"])]  # fmt: skip


def audio_flamingo_3(measure: bool) -> list[dict]:
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, Qwen2Config

    config = AudioFlamingo3Config(text_config=Qwen2Config(**QWEN25_7B).to_dict())
    with torch.device("meta"):
        model = AudioFlamingo3ForConditionalGeneration(config)
        n, b32 = weight_count([model.model])  # the embedder keeps model.model: no LM head
    act = int(AF3_ACTIVATIONS_GIB * GIB)
    return [row("Audio Flamingo 3 (Qwen2.5-7B + AF-Whisper)", "afsim (audio-flamingo-3)", n, b32, "float32", act, True),
            row("Audio Flamingo 3, backend_params.dtype=bfloat16", "afsim (audio-flamingo-3)", n, b32 // 2, "bfloat16",
                act // 2, True)]  # fmt: skip


# -- separators ------------------------------------------------------------------------------------------
def separators(measure: bool, names=("audiosep", "audiosep_dcase16k", "lass_net", "clipsep", "bimodalsep")) -> list[dict]:
    from hsm_bench.api.system import SeparationBatch
    from hsm_bench.pipeline.run import make_system
    from hsm_bench.run_config import _compose

    rows = []
    for name in names:
        system = make_system(_compose([f"system={name}"]))
        system.load_random("cpu", seed=0)
        n, b = weight_count(held_modules(system))
        act = None
        if measure:
            x = torch.from_numpy(clip(system.sample_rate))[None, None]
            batch = SeparationBatch(item_ids=["x"], mixture=x, lengths=torch.tensor([x.shape[-1]]),
                                    instructions=[f"Extract: {QUERY}."], task=["extract"], caption=[QUERY],
                                    query_style=["caption"])  # fmt: skip
            act = peak_activations(lambda s=system, b=batch: s.separate(b))
        rows.append(row(f"{name} ({system.sample_rate // 1000} kHz)", "separation", n, b, "float32", act))
        del system
    return rows


def row(model: str, used_by: str, n_params: int, weight_bytes: int, dtype: str, act: int | None,
        stated: bool = False) -> dict:  # fmt: skip
    return {"model": model, "used_by": used_by, "params": n_params, "dtype": dtype, "weights_gib": weight_bytes / GIB,
            "activations_gib": None if act is None else act / GIB, "activations_stated": stated,
            "total_gib": None if act is None else (weight_bytes + act) / GIB}  # fmt: skip


GROUPS = {"cnn14": cnn14, "msclap": msclap, "laion": laion, "af1": audio_flamingo_1, "af3": audio_flamingo_3,
          "separators": separators}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    out = ["| model | used by | parameters | weights | activations, one 10-s clip | expected total |",
           "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        act = "-" if r["activations_gib"] is None else f"{r['activations_gib']:.2f} GB" + (" (stated)" if r["activations_stated"] else "")
        total = "-" if r["total_gib"] is None else f"**{r['total_gib']:.1f} GB**"
        p = r["params"]
        params = f"{p / 1e9:.2f} B" if p >= 1e9 else f"{p / 1e6:.0f} M"
        out.append(f"| {r['model']} | {r['used_by']} | {params} | {r['weights_gib']:.2f} GB ({r['dtype']}) | {act} | {total} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-activations", action="store_true", help="weights only (seconds, little memory)")
    ap.add_argument("--only", nargs="+", choices=list(GROUPS), help="some groups only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.only or GROUPS:
        t = time.perf_counter()
        rows += GROUPS[name](not a.no_activations)
        print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    print("GB = 2^30 bytes. Estimates: weights from parameter counts + activations of one 10-s clip tracked on the CPU; "
          "not measured on a GPU. CUDA context (0.3-0.5 GB) not included.\n")  # fmt: skip
    print(markdown(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
