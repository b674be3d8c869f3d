"""Run folder layout, run signatures, provenance and the guards of concurrent writers.

    <runs>/<testset>@<manifest sha8>/<system>/<signature>/
        config.yaml  run.json  outputs/<id>.wav  separate.jsonl  items.jsonl
        corpus.json  profile.json

A sharded run (``runtime.shard.index/count``) writes ``separate.shard-I-of-N.jsonl`` and
``items.shard-I-of-N.jsonl`` instead, one pair per shard, into the same folder: processes
never append to one file. Readers merge every row file of the folder; for one key a row that
succeeded wins over an error, otherwise the later row. One process at a time works on a
shard (an exclusive lock, ``.shard-I-of-N.lock``); whole-file updates (run.json, profile.json)
happen under the folder's ``.run.lock``.

The signature hashes what decides the separated audio (system identity, parameters,
code and checkpoint hashes, the manifest, the harness resampler), not how it was run
(device, batch size, workers, paths) and not the metrics: a rerun lands in the same
folder and resumes, and adding a metric rescores the existing outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from hsm_bench import __version__
from hsm_bench.errors import SetupError
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

    def rows_file(self, kind: str, shard: tuple[int, int] = (0, 1)) -> Path:
        """Where one process appends ``kind`` rows ("separate" or "items") for its shard."""
        index, count = shard
        return self.path / (f"{kind}.jsonl" if count == 1 else f"{kind}.shard-{index}-of-{count}.jsonl")

    def row_files(self, kind: str) -> list[Path]:
        """Every ``kind`` row file of the folder: the unsharded one first, then the shards'."""
        plain = self.path / f"{kind}.jsonl"
        return ([plain] if plain.exists() else []) + sorted(self.path.glob(f"{kind}.shard-*-of-*.jsonl"))

    def merged_rows(self, kind: str) -> list[dict[str, Any]]:
        """The rows of all ``kind`` files, one per key: a success beats an error, else the later row."""
        key = (lambda r: r["id"]) if kind == "separate" else (lambda r: (r["id"], r["metric"], r.get("version")))
        best: dict[Any, dict[str, Any]] = {}
        for f in self.row_files(kind):
            for row in read_jsonl(f):
                k = key(row)
                old = best.get(k)
                if old is None or row.get("status") == "ok" or old.get("status") != "ok":
                    best[k] = row
        return list(best.values())

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
        """The separation row per item id, over every shard's file."""
        return {row["id"]: row for row in self.merged_rows("separate")}

    @contextlib.contextmanager
    def shard_lock(self, shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
        """Hold the shard's lock while working on it; a second process stops with one line."""
        import fcntl

        index, count = shard
        path = self.path / f".shard-{index}-of-{count}.lock"
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                what = "this run" if count == 1 else f"shard {index}/{count} of this run"
                raise SetupError(f"another hsm-bench process (pid {holder}) is working on {what} in {self.path}; "
                                 "wait for it to finish, or stop it and rerun") from None  # fmt: skip
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                f.seek(0)
                f.truncate()
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def folder_lock(self) -> Iterator[None]:
        """Serialises whole-file updates of the folder between processes (blocking, brief)."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".run.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @staticmethod
    def read_json(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.exists() else {}

    def update_json(self, path: Path, **fields: Any) -> dict[str, Any]:
        with self.folder_lock():  # shards of one run update run.json and profile.json too
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
