"""The ``hsm-bench`` command line.

Every failure reaches the user as one line on stderr, ``hsm-bench <command>: error: ...``,
with the exit statuses of :mod:`hsm_bench.errors` (0 ok, 1 some items failed, 2 error or
nothing computed, 130 interrupted); ``HSM_BENCH_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hsm_bench import __version__
from hsm_bench.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, ConfigError, HsmBenchError

RUN_HELP = """\
usage: hsm-bench run [--system NAME] [--testset NAME] [--metrics LIST] [--weights N=PATH]
                     [--keep-errors] [-m] [KEY=VALUE ...]

Build the test set if it is missing, separate it with the system, score the outputs and
print the corpus table. Every stage resumes: rerunning the same command after a crash or
Ctrl-C continues where it stopped, and adding a metric rescores the existing outputs
without running the system again.

  --system NAME     a system (hsm-bench ls systems); comma list with -m
  --testset NAME    a test set (hsm-bench ls testsets); comma list with -m
  --metrics LIST    metrics, output keys or sets, comma separated (hsm-bench ls metrics);
                    the table shows what you ask for, corpus.json every metric scored
  --weights N=PATH  use a local checkpoint file or folder for weights N (hsm-bench ls weights)
  --shard I/N       work on shard I of N (items I, I+N, ...) in the same run folder; the
                    last shard to finish writes corpus.json. Sweep the index with -m to run
                    the shards as separate jobs (e.g. hydra/launcher=local_2 or slurm_gpu)
  --keep-errors     do not retry items that failed in an earlier run of this command
                    (default: a rerun tries them again; failures are often environmental)
  -m, --multirun    sweep over comma lists, e.g. -m system=oracle_irm,oracle_mixture
  KEY=VALUE         any config key, e.g. runtime.device=cuda system.params.beta=1
                    paths.runs_dir=/scratch/runs testset.root=/data/my_built_set;
                    misspelt keys and parameters are errors with suggestions
  --cfg job         print the composed configuration instead of running

Defaults: --system oracle_irm --testset demo --metrics signal. Run folders go to
./runs (or $HSM_BENCH_RUNS); test sets, weights and caches to ~/.cache/hsm-bench
(or $HSM_BENCH_HOME).

Exit status: 0 every item of every stage succeeded; 1 some items failed (the last line
says how many and where their rows are; rerun to retry them); 2 nothing was computed (a
usage or setup error such as missing weights, or every item failed); 130 interrupted
(finished items are kept; rerun the same command to resume). Errors are one line; set
HSM_BENCH_TRACEBACK=1 for the full traceback.
"""


def _say(cmd: str | None, message: str) -> None:
    """One line on stderr, whatever the message holds."""
    text = " ".join(str(message).split())
    print(f"hsm-bench{' ' + cmd if cmd else ''}: {text}", file=sys.stderr)


def cmd_run(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(RUN_HELP)
        return EXIT_OK
    from hsm_bench import hydra_app
    from hsm_bench.run_config import checked_overrides, parse_args

    overrides, flags, multirun = parse_args(argv)
    overrides, runs_dir = checked_overrides(overrides, multirun)
    hydra_app.RESULTS.clear()
    saved, saved_env = sys.argv, os.environ.get(hydra_app.RESULTS_ENV)
    printing = any(a in ("--cfg", "-c", "--info") for a in flags)
    multirun = multirun and not printing  # Hydra prints one composed config, never a sweep's jobs
    sys.argv = ["hsm-bench-run", *flags, *(["--multirun"] if multirun else []), *overrides]
    results_dir = None
    if multirun:  # jobs may run in other processes or on other nodes: they report through files
        import tempfile

        Path(runs_dir, ".sweeps").mkdir(parents=True, exist_ok=True)
        results_dir = Path(tempfile.mkdtemp(prefix="results-", dir=Path(runs_dir, ".sweeps")))
        os.environ[hydra_app.RESULTS_ENV] = str(results_dir)
    try:
        hydra_app.main()
        results = hydra_app.collect(results_dir) if results_dir else list(hydra_app.RESULTS)
    finally:
        sys.argv = saved
        if results_dir is not None:
            import shutil

            shutil.rmtree(results_dir, ignore_errors=True)
            if saved_env is None:
                os.environ.pop(hydra_app.RESULTS_ENV, None)
            else:
                os.environ[hydra_app.RESULTS_ENV] = saved_env
    if printing:
        return EXIT_OK
    status = EXIT_OK if results else EXIT_ERROR
    if not results:
        _say("run", "error: no job reported a result (see the launcher's logs)")
    for result in results:
        if result["problem"]:
            label = f"{result['label']}: " if len(results) > 1 else ""
            if result["status"] == EXIT_PARTIAL:
                _say("run", f"{label}{result['problem']}; rerun the same command to retry them (--keep-errors keeps them)")
            else:
                _say("run", f"error: {label}{result['problem']}")
        status = max(status, result["status"])
    return status


def cmd_train(argv: list[str]) -> int:
    """``hsm-bench train hsm_tss stage=NAME ...`` (training/train.py; needs the train extra)."""
    try:
        import lightning  # noqa: F401
    except ImportError:
        raise ConfigError("training needs Lightning: pip install 'hsm-bench[train]'") from None
    from training.train import main as train_main

    return train_main(argv)


def cmd_score(a: argparse.Namespace) -> int:
    from hsm_bench.score_dirs import score_directories

    return score_directories(
        pred_dir=Path(a.pred_dir),
        ref_dir=Path(a.ref_dir),
        mix_dir=Path(a.mix_dir) if a.mix_dir else None,
        metrics=a.metrics,
        out=Path(a.out) if a.out else None,
        captions=Path(a.captions) if a.captions else None,
        allow_resample=a.allow_resample,
        downmix=a.downmix,
        max_length_diff_s=a.max_length_diff,
        batch_size=a.batch_size,
        progress=not a.no_progress,
        weights_overrides=a.weights,
        metric_params=_metric_params(a.param),
    )


def _metric_params(items: list[str] | None) -> dict[str, dict]:
    """``METRIC.KEY.SUB=VALUE`` strings as ``{metric: {key: {sub: value}}}``."""
    out: dict[str, dict] = {}
    for key, value in _key_values(items, "--param").items():
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"--param expects METRIC.KEY=VALUE, got {key!r}")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--param {key}: {part!r} was given a value and sub-keys")
        node[parts[-1]] = value
    return out


def _key_values(items: list[str] | None, flag: str) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)  # numbers, booleans, lists as YAML
    return out


def _built(path: Path, what: str) -> int:
    """The summary of a finished build, with what the card says was left out."""
    card = json.loads((Path(path) / "card.json").read_text())
    print(f"built {card['n_items']} items{what} in {path} (manifest sha256 {card['manifest_sha256'][:12]})")
    sources = card.get("sources") or {}
    left_out = {k: (sources.get(k) or {}).get("count", 0) for k in ("skipped", "unreadable", "missing")}
    if any(left_out.values()):
        print("left out: " + ", ".join(f"{n} {k}" for k, n in left_out.items() if n) + f" (reasons in {path}/card.json)")
    return EXIT_OK


def cmd_build_testset(a: argparse.Namespace) -> int:
    from hsm_bench.registry import TESTSETS

    if a.from_manifest and a.import_spec:
        raise ConfigError("give either --from-manifest or --import, not both")
    if a.from_manifest or a.import_spec:
        from testsets.rebuild import build_from_manifest, import_list

        if a.from_manifest:
            path = build_from_manifest(a.name, Path(a.from_manifest), source=a.source, out=a.out, progress=not a.no_progress)
        else:
            path = import_list(a.import_spec, name=a.name, source=a.source, out=a.out, progress=not a.no_progress)
        return _built(path, "")
    if a.name is None:
        raise ConfigError("give a test set NAME (hsm-bench ls testsets), --from-manifest FILE or --import KIND:CSV")
    params = _key_values(a.set, "--set")
    if a.ontology:
        params["ontology"] = a.ontology
    builder = TESTSETS.get(a.name)(n_items=a.n_items, seed=a.seed, source=a.source, **params)
    if a.out:
        out = Path(a.out).expanduser()
    else:
        from hsm_bench.paths import default_paths

        out = builder.output_dir(default_paths()["data_dir"])
    if (out / "card.json").exists() and not a.force:
        print(f"{a.name} is already built at {out} (use --force to rebuild)")
        return EXIT_OK
    return _built(builder.build(out, progress=not a.no_progress), f" of {a.name}")


def _print_weights() -> None:
    from hsm_bench import weights

    weights._ensure_registered()
    print("weights:" + ("" if weights.WEIGHTS else " none registered"))
    for name, s in sorted(weights.WEIGHTS.items()):
        path = weights.resolved_path(name)
        state = "present" if path.exists() else "missing"
        size = f"{s.size / 1e6:,.0f} MB" if s.size else "size ?"
        print(f"  {name:<34} {state:<8} {size:>10}  {s.licence:<14} {s.source}")


def cmd_ls(a: argparse.Namespace) -> int:
    from hsm_bench.registry import METRIC_ALIASES, METRIC_SETS, REGISTRIES

    kinds = [a.kind] if a.kind else [*REGISTRIES, "weights"]
    for kind in kinds:
        if kind == "weights":
            _print_weights()
            continue
        reg = REGISTRIES[kind]
        print(f"{kind}:")
        for name in reg.names():
            origin = reg.origin(name)
            line = f"  {name:<16} {reg.target(name)}" + ("" if origin == "hsm-bench" else f"  (plugin: {origin})")
            if kind == "metrics" and a.verbose:
                try:
                    info = reg.get(name).info
                except Exception as exc:  # an optional dependency missing must not hide the list
                    print(f"{line}\n      (cannot load: {type(exc).__name__}: {exc})")
                    continue
                needs = "; ".join(f"{k}: {'+'.join(sorted(info.needs(k))) or 'estimate only'}" for k in info.outputs)
                line += (
                    f"\n      outputs={','.join(info.outputs)} "
                    f"{'higher' if info.higher_is_better else 'lower'} is better, rate={info.sample_rate or 'test set'}"
                    f"{'' if reg.origin(name) == 'hsm-bench' else ', plugin from ' + reg.origin(name)}\n"
                    f"      needs (besides the estimate): {needs}\n"
                    f"      reproduces: {info.reference}"
                )
            print(line)
        if kind == "metrics":
            print("metric sets:")
            for name, members in METRIC_SETS.items():
                print(f"  {name:<16} {', '.join(members)}")
            print("output keys:")
            for key, metric in METRIC_ALIASES.items():
                print(f"  {key:<16} -> {metric}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from hsm_bench.paths import default_paths
    from hsm_bench.store.runstore import environment

    env = environment()
    paths = default_paths()
    print(f"hsm-bench {__version__} (git {env['git']}), Python {env['python']}, {env['platform']}")
    print("packages:")
    for k, v in env["packages"].items():
        print(f"  {k:<18} {v or '-'}")
    print("paths:")
    for k, v in paths.items():
        print(f"  {k:<18} {v}")
    print("offline flags:")
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HSM_BENCH_HOME", "HSM_BENCH_RUNS"):
        print(f"  {k:<18} {os.environ.get(k, '-')}")
    _print_weights()
    root = Path(paths["data_dir"]) / "testsets"
    built = sorted(p.parent for p in root.glob("*/*/card.json")) if root.exists() else []
    print("built test sets:" + ("" if built else " none"))
    for p in built:
        card = json.loads((p / "card.json").read_text())
        print(f"  {card['name']:<12} {card['version']:<14} {card['n_items']:>5} items  {p}")
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from hsm_bench.validate import validate

    return validate(a.target, check_audio=not a.no_audio)


def cmd_aggregate(a: argparse.Namespace) -> int:
    from hsm_bench.api.testset import TestSet
    from hsm_bench.pipeline.aggregate import aggregate_run
    from hsm_bench.pipeline.table import print_corpus_table
    from hsm_bench.store.runstore import RunDir

    run = RunDir(Path(a.run_dir))
    if not run.run_json.exists():
        raise ConfigError(f"{run.path} is not a run folder (no run.json); run folders are under ./runs")
    info = run.read_json(run.run_json)
    ts = TestSet(info["testset"]["root"])
    corpus = aggregate_run(run, ts)
    print_corpus_table(corpus, title=f"{corpus['system']} on {ts.name} ({len(ts)} items)")
    return EXIT_OK


def cmd_report(a: argparse.Namespace) -> int:
    from hsm_bench import weights
    from hsm_bench.paths import default_paths

    try:
        from reports.report import make_report
    except ImportError as exc:
        raise ConfigError(f"reports need the report extra ({exc.name} is missing): pip install 'hsm-bench[report]'") from None
    runs = a.runs or [os.environ.get("HSM_BENCH_RUNS") or default_paths()["runs_dir"]]
    parts = tuple(p.strip() for p in a.parts.split(",") if p.strip())
    with weights.overrides(a.weights):
        summary = make_report(runs, a.out, parts=parts, published=a.published == "on", reference=a.reference,
                              embedder=None if a.embedder == "none" else a.embedder, seed=a.seed,
                              max_items=a.max_items, progress=not a.no_progress)  # fmt: skip
    print(f"report of {len(summary['runs'])} run(s) written to {a.out} in {summary['seconds']:.1f} s")
    return EXIT_OK


def cmd_download_weights(a: argparse.Namespace) -> int:
    from hsm_bench.download import download_weights

    return download_weights(names=a.names, metrics=a.metrics, system=a.system, all_weights=a.all, force=a.force)


def cmd_convert_weights(a: argparse.Namespace) -> int:
    from systems.hsm_tss.convert import convert

    if not (a.audiomae or a.tfcodec):
        raise ConfigError("give --audiomae and/or --tfcodec: the official files to start the checkpoint from")
    out = convert(a.out, audiomae=a.audiomae, tfcodec=a.tfcodec, variant=a.variant, arch_file=a.arch,
                  text_folder=a.text, seed=a.seed)  # fmt: skip
    from systems.hsm_tss.checkpoint import read_config

    info = read_config(out)["info"]
    print(f"wrote {out}: {', '.join(info['converted_from']) or 'nothing'} from the official files; random (untrained): "
          f"{', '.join(info['untrained'])}. Train it (`hsm-bench train`) before separating with it.")  # fmt: skip
    return EXIT_OK


def cmd_download_metadata(a: argparse.Namespace) -> int:
    from testsets.metadata import download_metadata

    return download_metadata(out=a.out, force=a.force)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to --help (argparse prints the whole usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hsm-bench",
        description="Benchmark suite for text-queried audio source separation.",
        epilog="Start with: hsm-bench run --system oracle_irm --testset demo",
    )
    p.add_argument("--version", action="version", version=f"hsm-bench {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("run", help="build + separate + score + aggregate (Hydra; see `hsm-bench run --help`)", add_help=False)
    sub.add_parser("train", help="train one HSM-TSS stage on Lightning (see `hsm-bench train --help`)", add_help=False)

    s = sub.add_parser("score", help="score a folder of outputs against references matched by file stem",
                       description="Score PRED_DIR against REF_DIR (files matched by stem). Exit status: 0 every "
                       "item scored, 1 some item/metric scores failed (see --out), 2 nothing scored or a setup error.")
    s.add_argument("pred_dir", help="folder of separated audio (<id>.wav, flac, ...)")
    s.add_argument("ref_dir", help="folder of reference audio with the same stems")
    s.add_argument("--mix-dir", help="folder of mixtures with the same stems (needed for sdri, si_sdri, clapi)")
    s.add_argument("--captions", help="CSV (id or file, caption) or JSONL of captions by stem (needed for clap, clapi)")
    s.add_argument("--metrics", default="signal", help="comma list of metrics, output keys or sets (default: signal)")
    s.add_argument("--out", help="per-item results, .csv or .jsonl")
    s.add_argument("--allow-resample", action="store_true", help="accept files whose rates differ (resampled to each metric's rate)")
    s.add_argument("--downmix", action="store_true",
                   help="average every file to mono, also when estimate and reference have different channel counts "
                   "(default: such a pair is an item error)")
    s.add_argument("--max-length-diff", type=float, default=0.1, help="seconds two matched files may differ in length (default 0.1)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--weights", action="append", metavar="NAME=PATH", help="use a local checkpoint file for NAME")
    s.add_argument("--param", action="append", metavar="METRIC.KEY=VALUE",
                   help="a metric parameter (YAML value; dotted keys nest), e.g. --param clap.backend=msclap-2022")
    s.add_argument("--no-progress", action="store_true")

    b = sub.add_parser(
        "build-testset",
        help="build a mixture test set from its source data",
        description="Build a mixture test set from the source dataset as you have it on disk, "
        "rebuild another user's set from its manifest, or import a peer's published list.",
    )
    b.add_argument("name", nargs="?", help="test set name (hsm-bench ls testsets)")
    b.add_argument("--source", help="folder holding the source dataset (not needed for demo)")
    b.add_argument("--from-manifest", metavar="FILE", help="rebuild bit-exact audio from a manifest.jsonl and --source")
    b.add_argument("--import", dest="import_spec", metavar="KIND:CSV",
                   help="turn a peer's list into a test set: audiosep:CSV or dcase2024:CSV (with --source)")
    b.add_argument("--ontology", help="local AudioSet ontology.json (default: the copy shipped with hsm-bench)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder parameter, e.g. --set min_duration_s=5")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--n-items", type=int, default=None, help="number of mixtures (default: the set's size)")
    b.add_argument("--out", help="output folder (default: $HSM_BENCH_HOME/data/testsets/<name>/<version>)")
    b.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    b.add_argument("--no-progress", action="store_true")

    ls = sub.add_parser("ls", help="list systems, test sets and metrics")
    ls.add_argument("kind", nargs="?", choices=["systems", "testsets", "metrics", "embedders", "weights"])
    ls.add_argument("-v", "--verbose", action="store_true", help="metric details")

    sub.add_parser("info", help="versions, paths, offline flags and built test sets")

    v = sub.add_parser("validate", help="check the registries and configs, or re-hash a built test set")
    v.add_argument("target", nargs="?", help="a built test set folder or name; omit to check the configuration tree")
    v.add_argument("--no-audio", action="store_true", help="skip re-hashing audio files")

    ag = sub.add_parser("aggregate", help="recompute corpus.json of a run folder from its items.jsonl")
    ag.add_argument("run_dir")

    r = sub.add_parser(
        "report",
        help="paper tables, significance, breakdowns, figures and a listening page from run folders",
        description="Report run folders (or the run folders under the given folders; default ./runs): the "
        "paper's tables beside its published numbers, paired significance tests, breakdowns by SNR, task, class "
        "and query kind, figures, and a self-contained listening page. Needs the report extra.",
    )
    r.add_argument("runs", nargs="*", help="run folders or folders holding them (default: ./runs or $HSM_BENCH_RUNS)")
    r.add_argument("--out", default="report", help="output folder (default: report); replaced if it is a report")
    r.add_argument("--parts", default="tables,breakdowns,figures,listen", help="comma list of parts to write")
    r.add_argument("--published", choices=["on", "off"], default="on", help="show the paper's numbers beside (default on)")
    r.add_argument("--reference", help="the system every other one is tested against (default: the best per column)")
    r.add_argument("--embedder", default="msclap-2023",
                   help="embedder for the t-SNE of outputs and references, or none (default msclap-2023)")
    r.add_argument("--seed", type=int, default=0, help="seed of bootstrap, permutation tests and t-SNE (default 0)")
    r.add_argument("--max-items", type=int, help="items on the listening page per test set (default: all)")
    r.add_argument("--weights", action="append", metavar="NAME=PATH", help="use a local checkpoint file for NAME")
    r.add_argument("--no-progress", action="store_true")

    dw = sub.add_parser(
        "download-weights",
        help="fetch and verify checkpoints on a connected machine (runs never download)",
        description="Fetch checkpoints into $HSM_BENCH_HOME/weights and verify their sha256. "
        "Name them, or select what a metric set or a system needs.",
    )
    dw.add_argument("names", nargs="*", help="weights names (hsm-bench ls weights)")
    dw.add_argument("--metrics", help="the weights these metrics or metric sets need, e.g. paper")
    dw.add_argument("--system", help="the weights this system needs")
    dw.add_argument("--all", action="store_true", help="every registered checkpoint")
    dw.add_argument("--force", action="store_true", help="download again even if present")

    cw = sub.add_parser(
        "convert-weights",
        help="start an HSM-TSS checkpoint from the official AudioMAE and TF-Codec files",
        description="Write an HSM-TSS checkpoint folder (config.json + model.safetensors) whose AudioMAE and TF-Codec "
        "weights come from their official files and whose other stages are random: the starting point of training. "
        "No public HSM-TSS checkpoint exists.",
    )
    cw.add_argument("--audiomae", help="official AudioMAE file: pretrain .pth, fine-tuned .pth, or the timm port's "
                    "model.safetensors (or its folder)")  # fmt: skip
    cw.add_argument("--tfcodec", help="official TF-Codec file, e.g. tfcodec_6k_514000.ckpt")
    cw.add_argument("--out", required=True, help="new checkpoint folder")
    cw.add_argument("--variant", default="hierarchical", choices=["hierarchical", "single"])
    cw.add_argument("--arch", help="JSON file of architecture sections to change (default: the paper's)")
    cw.add_argument("--text", help="FLAN-T5 folder the model will use (its d_model and vocabulary size)")
    cw.add_argument("--seed", type=int, default=0, help="seed of the random stages")

    dm = sub.add_parser("download-metadata", help="fetch the AudioSet ontology and class index (connected machine)")
    dm.add_argument("--out", help="folder (default: $HSM_BENCH_HOME/metadata)")
    dm.add_argument("--force", action="store_true")
    return p


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see :mod:`hsm_bench.errors`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = _command(argv)
    try:
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        if argv and argv[0] == "train":
            return cmd_train(argv[1:])
        parser = build_parser()
        a = parser.parse_args(argv)
        if a.cmd is None:
            parser.print_help()
            return EXIT_OK
        handler = {
            "score": cmd_score, "build-testset": cmd_build_testset, "ls": cmd_ls, "info": cmd_info,
            "validate": cmd_validate, "aggregate": cmd_aggregate, "report": cmd_report,
            "download-weights": cmd_download_weights, "download-metadata": cmd_download_metadata,
            "convert-weights": cmd_convert_weights,
        }[a.cmd]  # fmt: skip
        return handler(a)
    except KeyboardInterrupt:
        _say(cmd, "interrupted: finished items are kept; rerun the same command to resume")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hsm-bench ls | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except HsmBenchError as exc:
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        _say(cmd, f"error: {exc}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if os.environ.get("HSM_BENCH_TRACEBACK"):
            raise
        _say(cmd, f"error: unexpected {type(exc).__name__}: {exc} (set HSM_BENCH_TRACEBACK=1 for the traceback "
                  "and please report it)")  # fmt: skip
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
