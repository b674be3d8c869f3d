"""Run folder layout, run signatures and provenance.

    <runs>/<testset>@<manifest sha8>/<system>/<signature>/
        config.yaml  run.json  outputs/<id>.wav  separate.jsonl  items.jsonl
        corpus.json  profile.json

The signature hashes what decides the separated audio (system identity, parameters,
code and checkpoint hashes, the manifest, the harness resampler), not how it was run
(device, batch size, workers, paths) and not the metrics: a rerun lands in the same
folder and resumes, and adding a metric rescores the existing outputs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hsm_bench import __version__
from hsm_bench.store.jsonl import atomic_write_json, read_jsonl

TRACKED_PACKAGES = (
    "torch", "numpy", "scipy", "soundfile", "soxr", "hydra-core", "omegaconf",
    "transformers", "huggingface-hub", "scikit-learn",
)  # fmt: skip


def signature(payload: dict[str, Any], length: int = 12) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


@dataclass
class RunDir:
    path: Path

    @classmethod
    def locate(cls, runs_root: str | Path, testset: str, manifest_sha256: str, system: str, sig: str) -> "RunDir":
        """The run folder of these coordinates, without creating it (setup may still fail)."""
        return cls(Path(runs_root) / f"{testset}@{manifest_sha256[:8]}" / system / sig)

    @classmethod
    def create(cls, runs_root: str | Path, testset: str, manifest_sha256: str, system: str, sig: str) -> "RunDir":
        return cls.locate(runs_root, testset, manifest_sha256, system, sig).make()

    def make(self) -> "RunDir":
        (self.path / "outputs").mkdir(parents=True, exist_ok=True)
        return self

    @property
    def outputs(self) -> Path:
        return self.path / "outputs"

    @property
    def separate_jsonl(self) -> Path:
        return self.path / "separate.jsonl"

    @property
    def items_jsonl(self) -> Path:
        return self.path / "items.jsonl"

    @property
    def corpus_json(self) -> Path:
        return self.path / "corpus.json"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def profile_json(self) -> Path:
        return self.path / "profile.json"

    def output_path(self, item_id: str) -> Path:
        return self.outputs / f"{item_id}.wav"

    def separation_rows(self) -> dict[str, dict[str, Any]]:
        """Latest separate.jsonl row per item id."""
        return {row["id"]: row for row in read_jsonl(self.separate_jsonl)}

    @staticmethod
    def read_json(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.exists() else {}

    def update_json(self, path: Path, **fields: Any) -> dict[str, Any]:
        data = self.read_json(path)
        data.update(fields)
        atomic_write_json(path, data)
        return data


def git_revision() -> str | None:
    """Commit of the hsm-bench checkout in use (None for an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}{'-dirty' if dirty else ''}" if rev else None


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES + tuple(extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    return {
        "hsm_bench": __version__,
        "git": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
