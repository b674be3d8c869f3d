"""``hsm-bench train {hsm_tss,hsm_tss_single} preset=demo out=DIR``: every HSM-TSS stage, in order, on CPU,
from the held-out demo pool, into a small checkpoint (issue 11, item 3).

What it does (each step skipped when its result is already in ``DIR``, so rerunning resumes):

1. ``DIR/text``: a random T5 encoder made here (:func:`systems.hsm_tss.text.local_t5_folder`, FLAN-T5's
   layout at a tiny width) whose word-level vocabulary is every word of the demo sources' captions and
   labels (all 76 sources: the test set's words too, since a user types them) and of the instruction
   templates (:data:`testsets.instructions.TEMPLATES`). It is frozen, as FLAN-T5 is in the paper.
2. ``DIR/init``: the preset's architecture (:data:`DEMO`) with random weights (``seed``).
3. ``DIR/<stage>/`` for each stage of :data:`training.stages.STAGES` the variant has (codec, mae,
   qaudio, global, local, joint, decoder; the single-stage variant: codec, mae, local, decoder), each
   through :func:`training.train.train` with the stage's composed configuration plus the preset's
   overrides, ``init=`` the previous stage's ``model/`` (the first: ``DIR/init``). A finished stage
   (its ``model/`` exists) is skipped; an interrupted one resumes from its ``checkpoints/last.ckpt``.
4. ``DIR/model`` (float32) and ``DIR/model-fp16`` (float16 storage, the shipped form: loading casts it
   back to float32, systems/hsm_tss/checkpoint.py), each with the T5 folder copied in as ``text/``
   (pass ``--weights flan-t5-base=DIR/model-fp16/text``), and ``DIR/card.json``: stages, steps, batch
   sizes, seconds per stage, the data and what was held out, seed, torch version, threads, digests.

Data: ``data.kind=mixtures`` over ``training.sources.pool_from_demo`` (10-s mixtures of two sources,
the demo set's mixing rules; the codec stage crops 3 s of each target itself; the decoder trains on the
clean targets, as the stage does). The pool is held out from the demo test set *by seed* for the
generated families (General MIDI instruments and procedural sounds rendered from variant indices the
demo catalogue never uses; the soundfont's samples are shared, as a class is) and the finite families
(animal recordings, espeak voices) are left out entirely (``pool_from_demo`` without a built test set).

Sizes: the architecture is tiny (AudioMAE 128 wide, 3 layers; Q-Audio, global and local stages 128
wide; acoustic decoder 160 wide, 4 layers; TF-Codec with channels 8/16/32/32 and 8 codebooks of 256 at
50 frames per second) so that the float16 checkpoint stays under 15 MB and all stages fit
``budget_minutes`` on 2 cores. Step counts (:data:`DEMO` ``stages``) were chosen from the seconds per
step measured on this project's 2-core machine (comments there) to fill the 35-minute default;
``budget_minutes`` scales them proportionally and ``steps_scale`` multiplies them again (tests use a tiny
one). Learning rates are for tiny models trained briefly (1e-3-ish peaks, short warm-up, cosine decay);
they are assumptions, not the paper's.

Determinism: one seed (model initialisation, T5, mixtures, per-step randomness), ``threads`` CPU
threads (2 unless told), ``num_workers=0``: rerunning on the same machine and thread count gives the
same bytes of ``DIR/model-fp16/model.safetensors`` (its sha256 is in the card). Other machines may
differ in the last bits (the floating-point kernels do).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import shutil
import sys
import time
from pathlib import Path

from hsm_bench.errors import ConfigError

PRESETS = ("demo",)
BUDGET_MINUTES = 35.0  # the step counts below fill this on 2 cores
VARIANT_STAGES = {"hierarchical": ("codec", "mae", "qaudio", "global", "local", "joint", "decoder"),
                  "single": ("codec", "mae", "local", "decoder")}  # fmt: skip

_SMALL = {"dim": 128, "heads": 4, "ffn": 512}
DEMO: dict = {
    "text": {"d_model": 128, "layers": 2, "heads": 4, "d_ff": 256},
    "architecture": {
        "audiomae": {"embed_dim": 128, "depth": 3, "num_heads": 4},
        "qaudio": {"hidden": 128, "layers": 2, "heads": 4, "ffn": 512, "proj_dim": 64},
        "global": {**_SMALL, "depth": 2},
        "local": {**_SMALL, "depth": 4},
        "acoustic": {"dim": 160, "depth": 4, "heads": 4, "ffn": 640},
        "codec": {"kind": "tfcodec", "arch": {"channels": [8, 16, 32, 32], "tcm_channels": 64, "latent_dim": 64,
                                              "n_codebooks": 8, "codebook_size": 256}},
    },
    # pool_from_demo's arguments and MixtureStream's (data.params)
    "data": {"pool_args": {"variants": 4}, "seconds": 10.0},
    # per stage: steps at budget_minutes = 35, batch size, peak lr, and other settings of its config.
    # s/step measured on the project's 2-core machine, 2 threads, batch 8, 10-s mixtures (codec: 3-s crops),
    # by /tmp timing runs of 2 and 6 steps (difference / 4); fixed cost per stage ~5 s (pool rendering,
    # loading, Lightning). Predicted: 625 + 93 + 96 + 54 + 410 + 149 + 535 s of steps + ~45 s = ~33.5 min
    # (the single-stage variant: codec, mae, local, decoder: ~28 min).
    "stages": {
        "codec": {"steps": 180, "batch_size": 8, "lr": 1e-3,  # 3.47 s/step (generator + 6-scale discriminator)
                  "overrides": {"optim.lr_disc": 1e-3, "discriminator": "{channels:[32,32,32,32,32,32]}"}},
        "mae": {"steps": 300, "batch_size": 8, "lr": 1e-3,  # 0.31 s/step
                "overrides": {"mae.decoder": "{dim:128,depth:2,num_heads:4,mlp_ratio:4.0}"}},
        "qaudio": {"steps": 300, "batch_size": 8, "lr": 1e-3},  # 0.32 s/step
        "global": {"steps": 300, "batch_size": 8, "lr": 1e-3},  # 0.18 s/step
        "local": {"steps": 450, "batch_size": 8, "lr": 1e-3},  # 0.91 s/step
        "joint": {"steps": 150, "batch_size": 8, "lr": 5e-4},  # 0.99 s/step
        "decoder": {"steps": 270, "batch_size": 8, "lr": 1e-3},  # 1.98 s/step (codec tokens of the targets + CE)
    },
}
PRESET_KEYS = ("preset", "out", "budget_minutes", "steps_scale", "seed", "threads", "progress")

PRESET_HELP = """\
usage: hsm-bench train {hsm_tss,hsm_tss_single} preset=demo out=DIR [budget_minutes=35] [steps_scale=1.0]
                       [seed=0] [threads=2] [progress=true]

Train every stage of HSM-TSS on CPU from the held-out demo sources into DIR (DIR/<stage>/ per stage,
DIR/model, DIR/model-fp16 with the T5 in text/, DIR/card.json). Rerunning the same command continues
(finished stages are skipped). Same machine, same settings: the same DIR/model-fp16 checksum.
"""


# -- the text encoder -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def demo_words() -> tuple[str, ...]:
    """Every token (as the local T5's tokenizer splits text) of the demo sources' captions and labels,
    the instruction templates and the task words, in first-seen order of a sorted walk (stable)."""
    from tokenizers import pre_tokenizers

    from systems.hsm_tss.text import TASK_WORDS
    from testsets.base import CANONICAL_RATE
    from testsets.demo_sources import load_demo_sources
    from testsets.instructions import TEMPLATES

    texts = []
    for s in load_demo_sources(CANONICAL_RATE):
        texts += [s.label, *s.captions]
    texts += [t.replace("{d}", " ") for group in TEMPLATES.values() for t in group]
    texts += list(TASK_WORDS.values())
    split = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    words: dict[str, None] = {}
    for text in sorted(set(texts)):
        for piece, _ in split.pre_tokenize_str(text):
            words.setdefault(piece)
            words.setdefault(piece.lower())  # a capitalised first word also reads as its lower-case self
    return tuple(words)


def make_text(folder: Path, text: dict, seed: int) -> Path:
    from systems.hsm_tss.text import local_t5_folder

    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    local_t5_folder(tmp, seed=seed, words=demo_words(), **text)
    tmp.rename(folder)
    return folder


# -- plan -----------------------------------------------------------------------------------------
def plan(preset: str = "demo", variant: str = "hierarchical", budget_minutes: float = BUDGET_MINUTES,
         steps_scale: float = 1.0, seed: int = 0, arch: dict | None = None, data: dict | None = None,
         text: dict | None = None) -> dict:  # fmt: skip
    """The run's settings: architecture, text encoder, data, and per stage steps, batch size, lr, warm-up.
    ``arch``/``data``/``text``: section updates for tests (smaller models, shorter clips)."""
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r}: one of {', '.join(PRESETS)}")
    if variant not in VARIANT_STAGES:
        raise ConfigError(f"variant {variant!r}: one of {', '.join(VARIANT_STAGES)}")
    if not budget_minutes > 0 or not steps_scale > 0:
        raise ConfigError("budget_minutes and steps_scale must be positive")
    p = copy.deepcopy(DEMO)
    for key, value in (arch or {}).items():
        p["architecture"][key] = {**p["architecture"].get(key, {}), **value} if key != "codec" else value
    if data:
        p["data"] = {**p["data"], **data}
    if text:
        p["text"] = {**p["text"], **text}
    factor = float(budget_minutes) / BUDGET_MINUTES * float(steps_scale)
    stages = {}
    for name in VARIANT_STAGES[variant]:
        s = p["stages"][name]
        steps = max(1, round(s["steps"] * factor))
        stages[name] = {"steps": steps, "batch_size": int(s["batch_size"]), "lr": float(s["lr"]),
                        "warmup_steps": round(0.05 * steps), "overrides": dict(s.get("overrides", {}))}  # fmt: skip
    return {"preset": preset, "variant": variant, "budget_minutes": float(budget_minutes),
            "steps_scale": float(steps_scale), "seed": int(seed), "text": p["text"],
            "architecture_sections": p["architecture"], "data": p["data"], "stages": stages}  # fmt: skip


def architecture(settings: dict, text_folder: Path) -> dict:
    from systems.hsm_tss.model import architecture as build
    from systems.hsm_tss.text import TextEncoder

    text = TextEncoder.from_folder(text_folder)
    sections = copy.deepcopy(settings["architecture_sections"])
    if settings["variant"] == "single":
        sections.pop("qaudio", None), sections.pop("global", None)
    sections["text"] = {"d_model": text.d_model, "vocab_size": text.vocab_size, "weights": "local-t5 (preset)"}
    return build(settings["variant"], **sections)


def stage_overrides(settings: dict, stage: str, init: Path, text: Path, out: Path, progress: bool) -> list[str]:
    """``key=value`` overrides of ``stage``'s composed config (training/train.py ``compose``)."""
    s = settings["stages"][stage]
    d = settings["data"]
    o = {"init": init, "text": text, "out": out, "seed": settings["seed"], "resume": "true",
         "trainer.max_steps": s["steps"], "trainer.accelerator": "cpu", "trainer.devices": 1,
         "trainer.num_nodes": 1, "trainer.precision": 32, "trainer.progress_bar": str(progress).lower(),
         "trainer.log_every_n_steps": max(1, min(10, s["steps"])), "trainer.checkpoint_every_n_steps": 50,
         "data.kind": "mixtures", "data.batch_size": s["batch_size"], "data.num_workers": 0,
         "data.params.pool": "demo", "data.params.seconds": d["seconds"],
         "optim.lr": s["lr"], "optim.warmup_steps": s["warmup_steps"], "optim.schedule": "cosine",
         "optim.total_steps": s["steps"]}  # fmt: skip
    for k, v in d.get("pool_args", {}).items():
        o[f"data.params.pool_args.{k}"] = json.dumps(v).replace(" ", "") if isinstance(v, (list, dict)) else v
    if stage == "mae":
        o["optim.min_lr_ratio"] = 0.1
    o.update(s["overrides"])
    return [f"{k}={v}" for k, v in o.items()]


def _compose(settings: dict, stage: str, init: Path, text: Path, out: Path, progress: bool):
    from omegaconf import OmegaConf, open_dict

    from training.train import compose

    cfg = compose(stage, stage_overrides(settings, stage, init, text, out, progress))
    if stage == "codec":
        # the official Gumbel temperature decays over ~2.8 M steps; a short run reaches the final 0.5 at
        # 60 % of its steps instead (an assumption of the preset), so that the decoder learns the hard codes
        steps = settings["stages"]["codec"]["steps"]
        with open_dict(cfg):
            OmegaConf.update(cfg, "loss.temperature", [2.0, 0.5, 0.25 ** (1 / max(1.0, 0.6 * steps))], merge=False)
    return cfg


# -- run ------------------------------------------------------------------------------------------
def _cpu() -> str:
    """The CPU's model name: the checksum promise holds on the same machine, so the card says which."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _held_out() -> dict:
    from training.sources import DEMO_FINITE_FAMILIES, DEMO_SEEDED_FAMILIES

    return {"by_seed": list(DEMO_SEEDED_FAMILIES), "left_out": list(DEMO_FINITE_FAMILIES),
            "how": "generated families (instrument, procedural) rendered from variant indices the demo catalogue "
                   "never uses (fresh melodies and noise; the soundfont's samples are shared, as a class is); the "
                   "finite families (animal recordings, espeak voices) left out entirely (no built test set given)"}  # fmt: skip


def run_preset(system: str, out: str | Path, preset: str = "demo", budget_minutes: float = BUDGET_MINUTES,
               steps_scale: float = 1.0, seed: int = 0, threads: int = 2, progress: bool = True,
               arch: dict | None = None, data: dict | None = None, text: dict | None = None,
               log=print) -> Path:  # fmt: skip
    """Train every stage of ``system`` ("hsm_tss" or "hsm_tss_single") into ``out`` (module doc); returns
    ``out/model-fp16``. ``arch``/``data``/``text``: section updates for tests (:func:`plan`)."""
    import torch

    from hsm_bench.hashing import sha256_file
    from systems.hsm_tss.checkpoint import load_checkpoint, random_checkpoint, save_checkpoint
    from training.train import SYSTEMS, train

    if system not in SYSTEMS:
        raise ConfigError(f"cannot train {system!r}: the preset trains {', '.join(SYSTEMS)}")
    if int(threads) < 1:
        raise ConfigError(f"threads={threads}: at least 1")
    variant = SYSTEMS[system]
    settings = plan(preset, variant, budget_minutes, steps_scale, seed, arch, data, text)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "preset.json"
    if saved.is_file() and json.loads(saved.read_text()) != json.loads(json.dumps(settings)):
        raise ConfigError(f"{out} holds a preset run with other settings ({saved}): rerun it with the same "
                          "ones to continue, or choose a new out=")  # fmt: skip
    _write_json(saved, settings)
    card_path = out / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        text_folder = make_text(out / "text", settings["text"], int(seed))
        init = out / "init"
        if not (init / "config.json").is_file():
            random_checkpoint(init, architecture(settings, text_folder), seed=int(seed), info={"preset": preset})
        seconds = dict(card.get("seconds", {}))
        for stage in VARIANT_STAGES[variant]:
            folder = out / stage
            if (folder / "model" / "config.json").is_file():
                log(f"stage {stage}: done ({folder / 'model'}), skipped")
            else:
                log(f"stage {stage}: {settings['stages'][stage]['steps']} steps into {folder}")
                start = time.perf_counter()
                train(_compose(settings, stage, init, text_folder, folder, progress), variant=variant)
                seconds[stage] = round(time.perf_counter() - start, 1)
                _write_json(card_path, {**card, "seconds": seconds})  # per stage, for an interrupted run
            init = folder / "model"
        model, config = load_checkpoint(init, variant=variant)
        info = {**config["info"], "preset": preset}
        final, fp16 = out / "model", out / "model-fp16"
        save_checkpoint(model, final, info=info, overwrite=True)
        save_checkpoint(model, fp16, info=info, overwrite=True, dtype=torch.float16)
        for folder in (final, fp16):
            shutil.copytree(text_folder, folder / "text")
        n_params = sum(int(v.numel()) for v in model.state_dict().values())
        card = {
            "preset": preset, "system": system, "variant": variant, "seed": int(seed), "threads": int(threads),
            "budget_minutes": settings["budget_minutes"], "steps_scale": settings["steps_scale"],
            "torch": torch.__version__, "python": sys.version.split()[0], "cpu": _cpu(),
            "stages": [{"stage": s, **{k: settings["stages"][s][k] for k in ("steps", "batch_size", "lr", "warmup_steps")},
                        "seconds": seconds.get(s)} for s in VARIANT_STAGES[variant]],  # fmt: skip
            "seconds": seconds, "total_minutes": round(sum(v for v in seconds.values() if v) / 60, 2),
            "data": {"kind": "mixtures", "pool": "demo", "pool_args": settings["data"].get("pool_args", {}),
                     "seconds": settings["data"]["seconds"], "held_out": _held_out()},
            "architecture": model.arch, "tensors": n_params,
            "text": {**settings["text"], "vocab_size": model.arch["text"]["vocab_size"], "folder": "text/",
                     "note": "a random T5 made here (not FLAN-T5), frozen; copied into model/text and model-fp16/text"},
            "model": {"folder": "model", "dtype": "float32", "weights_sha256": sha256_file(final / "model.safetensors")},
            "model_fp16": {"folder": "model-fp16", "dtype": "float16",
                           "weights_sha256": sha256_file(fp16 / "model.safetensors"),
                           "bytes": (fp16 / "model.safetensors").stat().st_size},
            "command": f"hsm-bench train {system} preset={preset} out={out} budget_minutes={settings['budget_minutes']:g} "
                       f"steps_scale={settings['steps_scale']:g} seed={seed} threads={threads}",
        }  # fmt: skip
        _write_json(card_path, card)
    finally:
        torch.set_num_threads(previous_threads)
    log(f"wrote {fp16} (sha256 {card['model_fp16']['weights_sha256'][:16]}..., "
        f"{card['model_fp16']['bytes'] / 1e6:.1f} MB) and {final}; card: {card_path}")  # fmt: skip
    return fp16


# -- command line ---------------------------------------------------------------------------------
def parse(argv: list[str]) -> tuple[str, dict]:
    """``(system, keyword arguments of run_preset)`` from ``train``'s arguments with ``preset=``."""
    from hsm_bench.params import did_you_mean
    from training.train import SYSTEMS

    args = list(argv)
    if not args or "=" in args[0]:
        raise ConfigError("name the system first: `hsm-bench train hsm_tss preset=demo out=DIR` (see --help)")
    system, rest = args[0], args[1:]
    if system not in SYSTEMS:
        raise ConfigError(f"cannot train {system!r}: hsm-bench trains {', '.join(SYSTEMS)}.{did_you_mean(system, list(SYSTEMS))}")
    kw: dict = {}
    for a in rest:
        key, eq, value = a.partition("=")
        if not eq:
            raise ConfigError(f"{a!r}: write KEY=VALUE (preset=demo out=DIR ...)")
        if key not in PRESET_KEYS:
            hint = " (stage= trains one stage: leave preset= out)" if key == "stage" else did_you_mean(key, list(PRESET_KEYS))
            raise ConfigError(f"{key}=: not a preset setting; the preset takes {', '.join(PRESET_KEYS)}.{hint}")
        if key in kw:
            raise ConfigError(f"give {key}= once")
        kw[key] = value
    if "out" not in kw:
        raise ConfigError("give out=DIR: the folder the preset trains into")
    types = {"budget_minutes": float, "steps_scale": float, "seed": int, "threads": int}
    for key, kind in types.items():
        if key in kw:
            try:
                kw[key] = kind(kw[key])
            except ValueError:
                raise ConfigError(f"{key}={kw[key]!r}: a {'number' if kind is float else 'whole number'}") from None
    if "progress" in kw:
        if kw["progress"].lower() not in ("true", "false"):
            raise ConfigError(f"progress={kw['progress']!r}: true or false")
        kw["progress"] = kw["progress"].lower() == "true"
    return system, kw


def main(argv: list[str]) -> int:
    """``hsm-bench train SYSTEM preset=NAME ...`` (training/train.py's ``main`` routes here)."""
    from hsm_bench.errors import EXIT_OK

    if any(a in ("-h", "--help") for a in argv):
        print(PRESET_HELP)
        return EXIT_OK
    system, kw = parse(argv)
    run_preset(system, **kw)
    return EXIT_OK
