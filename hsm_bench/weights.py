"""One resolver for every checkpoint the suite knows, and the checks every loader shares.

Each checkpoint is a :class:`WeightSpec` registered by name (``panns-cnn14-16k``,
``msclap-2023``, ...). At run time :func:`resolve` returns a local path: a user-given file
or folder (``--weights NAME=PATH`` or ``weights: {NAME: PATH}`` in the config, applied for
one run by :func:`overrides`), ``$HSM_BENCH_HOME/weights/<name>/<file>``, or, for a Hub
repository (a transformers folder), a complete copy in the local Hugging Face cache.
Nothing is downloaded at run time: a missing file raises :class:`WeightsMissingError`
naming the command that fetches it (``hsm-bench download-weights NAME``) and the path it
will land in; :func:`require` checks every name a run needs at once and names them all in
one error. A file whose size or sha256 differs from the registry is rejected with
:class:`WeightsMismatchError`.

Loaders read checkpoints with :func:`load_torch_file` and match them against their model
with :func:`check_state_dict`, which raises :class:`CheckpointError` (one line: missing,
unexpected and mis-shaped keys, plus a hint when the file is another model's).

Importing this module is cheap: torch and huggingface_hub are imported only inside the
functions that need them, so ``hsm-bench ls weights`` and config checks stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsm_bench.errors import SetupError
from hsm_bench.hashing import sha256_file

if TYPE_CHECKING:
    import torch


class WeightsError(SetupError):
    pass


class WeightsMissingError(WeightsError):
    pass


class WeightsMismatchError(WeightsError):
    pass


class CheckpointError(WeightsError):
    """A checkpoint file that does not fit the model it is loaded into."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    description: str
    # "hf://<repo id>/<path in repo>" for one Hub file, "hf://<repo id>" for a whole Hub
    # repository (a transformers model folder), or an https URL
    source: str
    filename: str  # file name (or folder name for a Hub repository) under weights/<name>/
    licence: str
    sha256: str | None = None  # None: not published; pinned by the first download (lock file)
    size: int | None = None
    md5: str | None = None  # e.g. Zenodo publishes md5 only
    # a host that serves files only to a browser (Google Drive, OneDrive): the page to open;
    # `download-weights` then says where to put the file instead of trying to fetch it
    manual: str | None = None
    # no public copy exists at all (a model without released weights): what the user can do
    # instead, said in place of the download advice
    unavailable: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_repo(self) -> bool:
        # "hf://owner/name": two path parts (repository names may hold dots: opt-iml-max-1.3b)
        return self.source.startswith("hf://") and len(self.source[len("hf://") :].split("/")) == 2

    @property
    def repo_id(self) -> str | None:
        """``owner/name`` of the Hub repository holding this entry (None for a plain URL)."""
        if not self.source.startswith("hf://"):
            return None
        rest = self.source[len("hf://") :].removeprefix("spaces/")  # a Space file: hf://spaces/owner/name/path
        return "/".join(rest.split("/")[:2])


WEIGHTS: dict[str, WeightSpec] = {}
# the --weights overrides in force; only overrides() changes it, and restores it on exit
_overrides: dict[str, Path] = {}


def register(spec: WeightSpec) -> WeightSpec:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", spec.name):  # names are Hydra keys: `+weights.NAME=PATH`
        raise ValueError(f"weights name {spec.name!r}: use letters, digits, '-' and '_' only")
    WEIGHTS[spec.name] = spec
    return spec


def spec(name: str) -> WeightSpec:
    _ensure_registered()
    if name not in WEIGHTS:
        import difflib

        close = difflib.get_close_matches(name, sorted(WEIGHTS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise WeightsError(f"unknown weights {name!r}.{hint} See `hsm-bench ls weights`.")
    return WEIGHTS[name]


def home() -> Path:
    from hsm_bench.paths import default_paths

    return Path(default_paths()["weights_dir"])


# -- overrides (--weights NAME=PATH) ------------------------------------------------------
def _pairs(items: Mapping | Iterable[str] | str | None) -> list[tuple[str, str]]:
    if not items:
        return []
    if isinstance(items, Mapping):
        return [(str(k).strip(), str(v).strip()) for k, v in items.items()]
    if isinstance(items, str):
        items = [items]
    out = []
    for item in items:
        name, sep, path = str(item).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise WeightsError(f"--weights {item}: expected NAME=PATH (see `hsm-bench ls weights` for the names)")
        out.append((name.strip(), path.strip()))
    return out


@contextlib.contextmanager
def overrides(items: Mapping | Iterable[str] | str | None) -> Iterator[dict[str, Path]]:
    """Use local files or folders for some weights during the ``with`` block.

    ``items``: a ``{NAME: PATH}`` mapping, ``"NAME=PATH"`` strings, or None (no change).
    Every name and path is checked before any is applied (unknown name: did-you-mean
    error; missing path: :class:`WeightsMissingError` naming the flag). On exit the
    previous overrides come back, so one Hydra sweep job or one test cannot leak its
    files into the next; blocks nest.
    """
    pairs = _pairs(items)
    new: dict[str, Path] = {}
    absent = []
    for name, path in pairs:
        spec(name)
        p = Path(path).expanduser()
        if not p.exists():
            absent.append(f"--weights {name}={path}")
        new[name] = p
    if absent:
        raise WeightsMissingError(f"{'; '.join(absent)}: no such file or folder")
    saved = dict(_overrides)
    _overrides.update(new)
    try:
        yield dict(new)
    finally:
        _overrides.clear()
        _overrides.update(saved)


# -- resolution ---------------------------------------------------------------------------
def default_path(name: str) -> Path:
    s = spec(name)
    return home() / s.name / s.filename


def folder_complete(folder: Path) -> bool:
    """Whether a Hub-repository folder holds a usable model: ``config.json``, and every
    shard its weight index lists (a partial copy in the HF cache is common: transformers
    fetches files one by one)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        if not all((folder / s).is_file() for s in shards):
            return False
    return True


def hub_cache_folder(name: str) -> Path | None:
    """A complete snapshot of the Hub repository ``name`` in the local Hugging Face cache.

    Never touches the network (``local_files_only``); None when the entry is not a Hub
    repository, huggingface_hub is not installed, or the cache has no complete copy.
    """
    s = spec(name)
    if not s.is_repo:
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    # read at call time: huggingface_hub fixes its default cache folder when first imported
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        path = Path(snapshot_download(s.repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub raises several error types)
        return None
    return path if folder_complete(path) else None


def _locate(name: str) -> Path | None:
    s = spec(name)
    if name in _overrides:  # the user's file or folder; loaders report what is wrong with it
        p = _overrides[name]
        return p if p.exists() else None
    p = default_path(name)
    if s.is_repo:
        return p if folder_complete(p) else hub_cache_folder(name)
    return p if p.exists() else None


def resolved_path(name: str) -> Path:
    """Where ``name`` resolves now (override, default path or HF cache), or, when it is
    missing, where it is expected (for listings such as ``hsm-bench ls weights``)."""
    return _locate(name) or _overrides.get(name) or default_path(name)


def _fetch_hint(names: list[str]) -> str:
    gone = [n for n in names if WEIGHTS[n].unavailable]
    if gone:
        return " ".join(f"{n}: {WEIGHTS[n].unavailable}." for n in gone) + (
            " " + _fetch_hint([n for n in names if n not in gone]) if len(gone) < len(names) else "")
    what = "it" if len(names) == 1 else "them"
    return (f"Fetch {what} on a connected machine with `hsm-bench download-weights {' '.join(names)}` "
            f"(copy {home()} over afterwards)")  # fmt: skip


def resolve(name: str, verify: bool = True) -> Path:
    """Local path of the checkpoint ``name``, checked against the registry."""
    s = spec(name)
    path = _locate(name)
    if path is None:
        where = _overrides.get(name) or default_path(name)
        state = "incomplete (no config.json or missing weight shards)" if where.exists() else "not found"
        if s.unavailable:
            raise WeightsMissingError(f"weights {name!r} ({s.description}) {state} at {where}: {s.unavailable}")
        raise WeightsMissingError(
            f"weights {name!r} ({s.description}) {state} at {where}. "
            f"{_fetch_hint([name])}, or point to a local copy with "
            f"--weights {name}=/path/to/{s.filename}"
        )
    if verify and path.is_file():
        verify_file(s, path)
    return path


def missing(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that :func:`resolve` would report missing (unknown names
    raise); considers overrides, the default path and, for Hub repositories, the HF cache."""
    return [n for n in dict.fromkeys(names) if _locate(n) is None]


def require(names: Iterable[str]) -> None:
    """Raise one :class:`WeightsMissingError` naming every missing name of ``names``, its
    expected path, and one ``hsm-bench download-weights`` command fetching them all."""
    gone = missing(names)
    if not gone:
        return
    where = "; ".join(f"{n} (expected at {_overrides.get(n) or default_path(n)})" for n in gone)
    tail = "" if all(WEIGHTS[n].unavailable for n in gone) else ", or point to local copies with --weights NAME=PATH"
    raise WeightsMissingError(f"{len(gone)} weights missing: {where}. {_fetch_hint(gone)}{tail}")


# -- digests ------------------------------------------------------------------------------
def _lock_path() -> Path:
    return home() / "weights.lock.json"


def _read_lock() -> dict:
    p = _lock_path()
    return json.loads(p.read_text()) if p.exists() else {}


def pinned_sha256(name: str) -> str | None:
    """The registry's sha256, or the one the first download pinned in the lock file."""
    s = spec(name)
    return s.sha256 or _read_lock().get(name, {}).get("sha256")


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered next to it (keyed by size and mtime) to avoid rehashing GBs."""
    path = Path(path)
    stat = path.stat()
    memo = path.with_name(f".{path.name}.sha256.json")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if memo.exists():
        try:
            data = json.loads(memo.read_text())
            if data.get("key") == key:
                return data["sha256"]
        except (ValueError, KeyError):
            pass
    digest = sha256_file(path)
    try:
        memo.write_text(json.dumps({"key": key, "sha256": digest}))
    except OSError:
        pass  # read-only weights folder: hash again next time
    return digest


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def path_sha256(path: Path) -> str | None:
    """Digest of a checkpoint: a file's sha256; for a model folder, the sha256 over the names
    and sha256s of its weight files (config and tokenizer files do not change the numbers
    a metric reports the way weights do); None when there is no weight file."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        return None
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    import hashlib

    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def verify_file(s: WeightSpec, path: Path) -> str:
    if s.size is not None and path.stat().st_size != s.size:
        raise WeightsMismatchError(
            f"{path} has {path.stat().st_size} bytes, weights {s.name!r} should have {s.size}; "
            f"re-fetch with `hsm-bench download-weights --force {s.name}`"
        )
    digest = file_sha256(path)
    expected = pinned_sha256(s.name)
    if expected and digest != expected:
        raise WeightsMismatchError(
            f"{path} has sha256 {digest[:16]}..., weights {s.name!r} should have {expected[:16]}...; "
            f"re-fetch with `hsm-bench download-weights --force {s.name}`"
        )
    return digest


def checkpoint_sha256(name: str) -> str | None:
    """Digest of what ``name`` resolves to (:func:`path_sha256`), for provenance in run.json."""
    return path_sha256(resolve(name, verify=False))


# -- reading and checking checkpoints -------------------------------------------------------
def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` on CPU: weights-only when the file allows it, memory-mapped if possible.

    Official checkpoints may hold non-tensor metadata (an argparse namespace, numpy
    scalars) that the weights-only unpickler refuses; such files are loaded in full. They
    are sha256-pinned by ``hsm-bench download-weights``.
    """
    import pickle

    import torch

    weights_only = True
    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
        except pickle.UnpicklingError as first:  # non-tensor metadata: load in full
            weights_only = False
            try:
                return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
            except RuntimeError as exc:
                if mmap and "mmap" in str(exc):
                    continue
                raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - not a torch file at all
                raise CheckpointError(f"cannot read checkpoint {path}: {first}") from exc
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc):  # legacy (non-zip) format: no memory map
                continue
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
        except (EOFError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    raise CheckpointError(f"cannot read checkpoint {path}")  # pragma: no cover


# buffers older transformers versions saved and newer ones rebuild: accepted as extras when
# their values are the ones the model would rebuild
_LEGACY = [
    # GPT-2 causal mask / masked value, stored by transformers < 4.3x
    (re.compile(r"\.h\.\d+\.attn\.bias$"), "causal"),
    (re.compile(r"\.h\.\d+\.attn\.masked_bias$"), "masked_bias"),
    (re.compile(r"\.embeddings\.position_ids$"), "position_ids"),
    (re.compile(r"\.embeddings\.token_type_ids$"), "zeros"),
]


def _legacy_ok(kind: str, t: torch.Tensor) -> bool:
    import torch

    t = t.detach()
    if kind == "causal":
        n = t.shape[-1]
        return t.ndim >= 2 and bool(torch.equal(t.reshape(n, n).bool(), torch.ones(n, n).tril().bool()))
    if kind == "masked_bias":
        return t.numel() == 1 and float(t) <= -1e4 + 1e-3
    if kind == "position_ids":
        return bool(torch.equal(t.reshape(-1).long(), torch.arange(t.numel())))
    return bool((t == 0).all())


def check_state_dict(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    source: str,
    hints: Iterable[tuple[str, str]] = (),
    optional_prefixes: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors for ``model``, or :class:`CheckpointError`.

    Compares key for key and shape for shape; the only tolerated extras are the legacy
    buffers above, checked for their values. ``hints``: (key prefix, message) pairs; a
    checkpoint holding such a key (and failing) gets the message (e.g. "this is an MS-CLAP
    2022 file"). Keys under ``optional_prefixes`` may be missing (the caller fills them
    elsewhere).
    """
    import torch

    expected = model.state_dict()
    clean: dict[str, torch.Tensor] = {}
    unexpected, bad_legacy = [], []
    for k, v in state.items():
        if k in expected:
            clean[k] = v
            continue
        legacy = next((kind for rx, kind in _LEGACY if rx.search(k)), None)
        if legacy is None or not torch.is_tensor(v):
            unexpected.append(k)
        elif not _legacy_ok(legacy, v):
            bad_legacy.append(k)
    absent = [k for k in expected if k not in clean and not k.startswith(optional_prefixes)]
    shapes = [
        f"{k} {list(clean[k].shape)} (model {list(expected[k].shape)})"
        for k in clean
        if torch.is_tensor(clean[k]) and tuple(clean[k].shape) != tuple(expected[k].shape)
    ]
    nontensor = [k for k, v in clean.items() if not torch.is_tensor(v)]
    if absent or unexpected or shapes or bad_legacy or nontensor:
        parts = []
        for label, keys in (("missing", absent), ("unexpected", unexpected), ("wrong shape", shapes),
                            ("unexpected buffer values", bad_legacy), ("not tensors", nontensor)):  # fmt: skip
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        hint = next((msg for prefix, msg in hints if prefix and any(k.startswith(prefix) for k in state)), "")
        raise CheckpointError(f"{source} is not a {what} checkpoint: {'; '.join(parts)}{'. ' + hint if hint else ''}")
    return clean


def _ensure_registered() -> None:
    """Import the modules that register weights (cheap: specs only, no torch models)."""
    import importlib

    for module in WEIGHT_MODULES:
        importlib.import_module(module)


# Modules whose import registers WeightSpecs. They must not import heavy packages at
# module level.
WEIGHT_MODULES: list[str] = ["hsm_bench.weights_catalog"]
