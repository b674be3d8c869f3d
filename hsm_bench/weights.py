"""One resolver for every checkpoint the suite knows.

Each checkpoint is a :class:`WeightSpec` registered by name (``panns-cnn14-16k``,
``msclap-2023``, ...). At run time :func:`resolve` returns a local path: a user-given file
(``--weights NAME=PATH`` or ``weights: {NAME: PATH}`` in the config) or
``$HSM_BENCH_HOME/weights/<name>/<file>``. Nothing is downloaded at run time: a missing
file raises :class:`WeightsMissingError` naming the command that fetches it
(``hsm-bench download-weights NAME``) and the path it will land in. A file whose size or
sha256 differs from the registry is rejected with :class:`WeightsMismatchError`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from hsm_bench.hashing import sha256_file


class WeightsError(RuntimeError):
    pass


class WeightsMissingError(WeightsError):
    pass


class WeightsMismatchError(WeightsError):
    pass


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
    used_by: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def is_repo(self) -> bool:
        return self.source.startswith("hf://") and self.source.count("/") == 3 and "." not in self.filename


WEIGHTS: dict[str, WeightSpec] = {}
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


def set_override(name: str, path: str | os.PathLike) -> None:
    """Use a local file or folder for ``name`` (``--weights NAME=PATH``)."""
    spec(name)
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsMissingError(f"--weights {name}={path}: no such file or folder")
    _overrides[name] = p


def parse_overrides(items: list[str] | dict | None) -> None:
    """Apply ``NAME=PATH`` strings or a ``{NAME: PATH}`` mapping."""
    if not items:
        return
    pairs = items.items() if isinstance(items, dict) else (i.split("=", 1) for i in items)
    for name, path in pairs:
        set_override(str(name).strip(), str(path).strip())


def default_path(name: str) -> Path:
    s = spec(name)
    return home() / s.name / s.filename


def resolve(name: str, verify: bool = True) -> Path:
    """Local path of the checkpoint ``name``, checked against the registry."""
    s = spec(name)
    path = _overrides.get(name) or default_path(name)
    if not path.exists():
        raise WeightsMissingError(
            f"weights {name!r} ({s.description}) not found at {path}. "
            f"Fetch them on a connected machine with `hsm-bench download-weights {name}` "
            f"(copy {home()} over afterwards), or point to a local copy with --weights {name}=/path/to/{s.filename}"
        )
    if verify and path.is_file():
        verify_file(s, path)
    return path


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


def verify_file(s: WeightSpec, path: Path) -> str:
    if s.size is not None and path.stat().st_size != s.size:
        raise WeightsMismatchError(
            f"{path} has {path.stat().st_size} bytes, weights {s.name!r} should have {s.size}; "
            f"re-fetch with `hsm-bench download-weights {s.name}`"
        )
    digest = file_sha256(path)
    expected = pinned_sha256(s.name)
    if expected and digest != expected:
        raise WeightsMismatchError(
            f"{path} has sha256 {digest[:16]}..., weights {s.name!r} should have {expected[:16]}...; "
            f"re-fetch with `hsm-bench download-weights {s.name}`"
        )
    return digest


def checkpoint_sha256(name: str) -> str | None:
    """sha256 of the resolved file (folders: None), for provenance in run.json."""
    path = resolve(name, verify=False)
    return file_sha256(path) if path.is_file() else None


def _ensure_registered() -> None:
    """Import the modules that register weights (cheap: specs only, no torch models)."""
    import importlib

    for module in WEIGHT_MODULES:
        importlib.import_module(module)


# Modules whose import registers WeightSpecs. They must not import heavy packages at
# module level.
WEIGHT_MODULES: list[str] = ["hsm_bench.weights_catalog"]
