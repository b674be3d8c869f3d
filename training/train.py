"""``hsm-bench train hsm_tss stage=NAME init=CKPT text=T5 out=DIR [key=value ...]``: one HSM-TSS
training stage on Lightning, from one CPU to many GPUs and nodes without code changes.

The configuration is composed by Hydra from ``hsm_bench/conf/train/<stage>.yaml`` (which
extends ``base.yaml``); every override key is checked first (a misspelt key is a one-line
error with a suggestion). The run folder ``out`` holds:

* ``checkpoints/last.ckpt``: Lightning's checkpoint (weights, optimizer, scheduler, step,
  loop state), written every ``trainer.checkpoint_every_n_steps`` and at the last step;
  rerunning the same command resumes from it exactly (``resume=true``, the default);
* ``logs/``: the metrics as CSV (and TensorBoard event files when tensorboard is installed);
* ``model/``: the trained model in hsm-bench's checkpoint format
  (:func:`systems.hsm_tss.checkpoint.save_checkpoint`), its ``info`` naming the stage,
  steps, data, seed and what it started from: ``init=`` of the next stage.

Scale-out is Lightning's: ``trainer.devices=4`` (DDP, one process per device; ``strategy:
auto`` picks DDP when more than one process), ``trainer.num_nodes=2``; under SLURM (one
task per device, ``srun``), Lightning's ``SLURMEnvironment`` reads ranks from SLURM and,
with ``trainer.slurm_requeue=true``, on ``SIGUSR1`` (``#SBATCH --signal=SIGUSR1@90``) saves
``out/hpc_ckpt_N.ckpt`` and requeues the job, which resumes from it. Precision ``auto`` is
bf16-mixed on CUDA devices with bf16 support (the trained stage only: frozen feature
extractors and targets are computed in float32) and float32 elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hsm_bench.errors import ConfigError

SYSTEMS = {"hsm_tss": "hierarchical", "hsm_tss_single": "single"}
REQUIRED = ("init", "text", "out")

TRAIN_HELP = """\
usage: hsm-bench train {hsm_tss,hsm_tss_single} stage=NAME init=CKPT text=T5 out=DIR [KEY=VALUE ...]
       hsm-bench train {hsm_tss,hsm_tss_single} preset=demo out=DIR [budget_minutes=35 steps_scale=1 seed=0 threads=2]
       (every stage in order on CPU from the demo sources: training/preset.py, `... preset=demo --help`)

Train one stage of HSM-TSS (Lightning): stage=codec, mae, qaudio, global, local, joint or
decoder, in that order, each starting from the previous one's OUT/model (the first from
`hsm-bench convert-weights`). Rerunning the same command resumes from OUT/checkpoints/last.ckpt.

  stage=NAME          codec | mae | qaudio | global | local | joint | decoder
  init=FOLDER         checkpoint folder to start from
  text=FOLDER         the FLAN-T5 folder (transformers layout)
  out=DIR             run folder: checkpoints/, logs/, model/ (the trained checkpoint)
  data.kind=KIND      synthetic (smoke runs) | mixtures (training.mixtures; data.params.*)
  data.batch_size=N   per device
  trainer.max_steps=N trainer.devices=N trainer.num_nodes=N trainer.accelerator=cpu|gpu|auto
  trainer.precision=auto|32|bf16-mixed   optim.lr=X optim.warmup_steps=N seed=N
  --cfg               print the composed configuration and exit

Settings and their sources: hsm_bench/conf/train/*.yaml and docs/hsm_tss.md ("Training").
Exit status: 0 trained; 2 a usage or setup error (one line); 130 interrupted (rerun to resume).
"""


def _conf_dir() -> Path:
    from hsm_bench.paths import CONF_DIR

    return Path(CONF_DIR) / "train"


def compose(stage: str, overrides: list[str] | None = None):
    """The checked configuration of ``stage`` with ``overrides`` (``key=value`` strings)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from hsm_bench.run_config import _unknown_key
    from training.stages import check_stage

    check_stage(stage)
    overrides = list(overrides or [])
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"{str(exc).splitlines()[0]}: write overrides as KEY=VALUE") from None
    try:
        with initialize_config_dir(str(_conf_dir()), version_base="1.3"):
            base = hydra_compose(stage)
            for o in parsed:
                if o.is_sweep_override():
                    raise ConfigError(f"{o.input_line}: one value per key (train does not sweep)")
                key = o.key_or_group
                if key == "stage":
                    raise ConfigError("give stage=NAME once, as the stage to train")
                if not _has_key(base, key) and not key.startswith("data.params."):
                    raise _unknown_key(base, key, added=False)
            lines = [f"++{o.key_or_group}={o.get_value_element_as_str()}" if o.key_or_group.startswith("data.params.")
                     else o.input_line for o in parsed]  # fmt: skip
            cfg = hydra_compose(stage, overrides=lines)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(" ".join(str(exc).split())) from None
    missing = [k for k in REQUIRED if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ConfigError(f"give {' '.join(k + '=...' for k in missing)} (see `hsm-bench train --help`)")
    return cfg


def _has_key(cfg, key: str) -> bool:
    from omegaconf import DictConfig

    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():  # noqa: SIM118 (`in` hides ??? values)
            return False
        node = node._get_node(part)
    return True


def _devices(t) -> tuple[object, int]:
    """``(devices as Lightning takes them, number of processes on this node)``."""
    import torch

    devices = t.devices
    if isinstance(devices, str) and devices not in ("auto", "-1") and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices != -1:
        return devices, devices
    if not isinstance(devices, (int, str)):  # a list of device indices
        devices = list(devices)
        return devices, len(devices)
    gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    return devices, (torch.cuda.device_count() if gpu else 1)


def resolve_precision(precision, accelerator: str) -> str:
    """``auto``: bf16-mixed on CUDA devices that support bf16, else 32-true; others as given."""
    import torch

    p = str(precision)
    if p != "auto":
        return p
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


class _LastCheckpoint:
    """Lightning callback: ``last.ckpt`` every ``every`` steps and at the last step (what resume
    reads; Lightning's ModelCheckpoint skips the last step when it is not a multiple)."""

    def __new__(cls, path: Path, every: int):
        from lightning.pytorch.callbacks import Callback

        class LastCheckpoint(Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                step = trainer.global_step
                if step and (step % max(1, every) == 0 or (trainer.max_steps > 0 and step >= trainer.max_steps)):
                    trainer.save_checkpoint(str(path), weights_only=False)  # the full state: exact resume

        return LastCheckpoint()


class _NoAdverts:
    """Drops Lightning's "Tip: try installing <cloud service>" lines, which are advertisements, not
    information about the run (GPU/TPU availability and the like still print)."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip:")


_NO_ADVERTS = _NoAdverts()


def build_trainer(cfg, out: Path):
    import importlib.util
    import logging

    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NO_ADVERTS)  # once: addFilter skips a repeat
    t = cfg.trainer
    devices, n_local = _devices(t)
    strategy = t.strategy
    if strategy == "auto" and n_local * int(t.num_nodes) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        # every trained parameter gets a gradient each step, except in the codec stage, whose
        # discriminator update leaves the codec's parameters without one
        strategy = DDPStrategy(find_unused_parameters=str(cfg.stage) == "codec")
    loggers = [CSVLogger(str(out), name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(str(out), name="logs"))
    plugins = [SLURMEnvironment(auto_requeue=bool(t.slurm_requeue))] if SLURMEnvironment.detect() else []
    callbacks = [_LastCheckpoint(out / "checkpoints" / "last.ckpt", int(t.checkpoint_every_n_steps)),
                 LearningRateMonitor(logging_interval="step")]  # fmt: skip
    return L.Trainer(
        accelerator=t.accelerator, devices=devices, num_nodes=int(t.num_nodes), strategy=strategy,
        precision=resolve_precision(t.precision, t.accelerator), max_steps=int(t.max_steps), max_epochs=-1,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=int(t.accumulate_grad_batches),
        log_every_n_steps=int(t.log_every_n_steps), enable_progress_bar=bool(t.progress_bar),
        enable_checkpointing=False, logger=loggers, callbacks=callbacks, plugins=plugins or None,
        default_root_dir=str(out), deterministic=bool(t.deterministic), enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False,  # the loader shards by rank itself
    )  # fmt: skip


def load_parts(cfg, variant: str | None = None):
    """``(HsmTssModel, TextEncoder, init config)`` from ``cfg.init`` and ``cfg.text``, checked."""
    from hsm_bench.weights import WeightsError
    from systems.hsm_tss.checkpoint import load_checkpoint
    from systems.hsm_tss.text import TextEncoder
    from training.stages import check_stage

    model, config = load_checkpoint(Path(str(cfg.init)).expanduser(), variant=variant)
    check_stage(str(cfg.stage), model.variant)
    text = TextEncoder.from_folder(Path(str(cfg.text)).expanduser())
    want = config["architecture"]["text"]
    if text.d_model != int(want["d_model"]) or text.vocab_size != int(want["vocab_size"]):
        raise WeightsError(f"text={cfg.text} has d_model {text.d_model} and vocabulary {text.vocab_size}; the checkpoint "
                           f"{cfg.init} expects {want['d_model']} and {want['vocab_size']}: pass the T5 it was built "
                           "for (convert-weights --text)")  # fmt: skip
    return model, text, config


def train(cfg, variant: str | None = None) -> Path:
    """Run the configured stage; returns ``out/model`` (on the global rank 0; other ranks return it too)."""
    import warnings

    import lightning as L
    import torch
    from omegaconf import OmegaConf

    from hsm_bench.hashing import sha256_file
    from systems.hsm_tss.checkpoint import save_checkpoint, weights_path
    from training.data import data_module
    from training.stages import stage_module

    # frozen modules are in eval mode on purpose; the checkpoint is ours, written by this code
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    # Lightning 2.6's own use of a torch pytree API torch 2.13 deprecates; nothing the user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    out = Path(str(cfg.out)).expanduser()
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    model, text, init_config = load_parts(cfg, variant)
    container = OmegaConf.to_container(cfg, resolve=True)
    module = stage_module(model, text, str(cfg.stage), container, seed=seed)
    data, data_info = data_module(str(cfg.data.kind), container["data"]["params"], seed, int(cfg.data.batch_size),
                                  int(cfg.data.num_workers))  # fmt: skip
    trainer = build_trainer(cfg, out)
    last = out / "checkpoints" / "last.ckpt"
    ckpt_path = None
    if bool(cfg.resume):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        hpc = SLURMEnvironment.detect() and any(out.glob("hpc_ckpt_*.ckpt"))
        ckpt_path = None if hpc else (str(last) if last.is_file() else None)  # None under SLURM: Lightning's hpc resume
    elif last.is_file():
        raise ConfigError(f"{out} holds a run (checkpoints/last.ckpt) and resume=false: choose a new out=")
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    folder = out / "model"
    if hasattr(module, "export"):  # codec, mae: the trained network back into the model, frozen again
        module.export(model)
    if trainer.is_global_zero:
        init = Path(str(cfg.init)).expanduser()
        info = {
            "trained": True, "stage": str(cfg.stage), "steps": int(trainer.global_step), "seed": seed,
            "data": data_info, "batch_size": int(cfg.data.batch_size),
            "world_size": int(trainer.world_size), "precision": str(trainer.precision),
            "optim": container["optim"], "loss": container["loss"],
            "init": {"folder": str(init), "sha256": sha256_file(weights_path(init))},
            "stages": [*(init_config.get("info") or {}).get("stages", []),
                       {"stage": str(cfg.stage), "steps": int(trainer.global_step), "seed": seed, "data": data_info}],
            "lightning_checkpoint": str(last), "text": str(cfg.text), "torch": torch.__version__,
            **({"mae": module.describe()} if hasattr(module, "describe") else {}),
        }  # fmt: skip
        save_checkpoint(module.model, folder, info=info, overwrite=True)
    return folder


def parse(argv: list[str]) -> tuple[str, str, list[str], bool]:
    """``(system, stage, overrides, print_cfg)`` from ``train``'s arguments."""
    from hsm_bench.params import did_you_mean

    args = list(argv)
    print_cfg = False
    if "--cfg" in args:
        args.remove("--cfg")
        print_cfg = True
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown option {flags[0]}: train takes SYSTEM and KEY=VALUE overrides (see --help)")
    if not args or "=" in args[0]:
        raise ConfigError("name the system first: `hsm-bench train hsm_tss stage=NAME ...` (see --help)")
    system, rest = args[0], args[1:]
    if system not in SYSTEMS:
        raise ConfigError(f"cannot train {system!r}: hsm-bench trains {', '.join(SYSTEMS)}.{did_you_mean(system, list(SYSTEMS))}")
    stages = [a.partition("=")[2] for a in rest if a.partition("=")[0] == "stage"]
    if len(stages) != 1:
        raise ConfigError("give stage=NAME once: codec, mae, qaudio, global, local, joint or decoder, or preset=demo "
                          "for all of them (see --help)")  # fmt: skip
    overrides = [a for a in rest if a.partition("=")[0] != "stage"]
    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise ConfigError(f"{bad[0]!r}: write overrides as KEY=VALUE")
    return system, stages[0], overrides, print_cfg


def main(argv: list[str]) -> int:
    """The ``train`` command (``hsm_bench.cli`` dispatches here)."""
    from omegaconf import OmegaConf

    from hsm_bench.errors import EXIT_OK

    if any(a.partition("=")[0] == "preset" for a in argv):  # every stage in order: training/preset.py
        from training.preset import main as preset_main

        return preset_main(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(TRAIN_HELP)
        return EXIT_OK
    system, stage, overrides, print_cfg = parse(argv)
    cfg = compose(stage, overrides)
    if print_cfg:
        print(OmegaConf.to_yaml(cfg))
        return EXIT_OK
    folder = train(cfg, variant=SYSTEMS[system])
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print(f"trained stage {stage}: {folder} (use it as init= of the next stage, or --weights "
              f"{'hsm-tss' if SYSTEMS[system] == 'hierarchical' else 'hsm-tss-single'}={folder})")  # fmt: skip
    return EXIT_OK


if __name__ == "__main__":
    from hsm_bench.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
