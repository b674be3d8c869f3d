"""``hsm-bench download-weights``: fetch and verify checkpoints on a connected machine.

Runs never download. This command fills ``$HSM_BENCH_HOME/weights/<name>/<file>``:
Hub files with ``huggingface_hub.hf_hub_download``, whole Hub repositories (transformers
folders) with ``snapshot_download`` (restricted to ``extra["allow_patterns"]``), anything
else over HTTP(S) into a ``.part`` file that a rerun resumes with a Range request. Each file
is checked against the registry's size, md5 and sha256; a checkpoint without a published
sha256 gets the one of its first download pinned in ``weights.lock.json``, so later copies
must match it.

Which weights: names given on the command line, ``--metrics SET`` (each metric class's
``weights_for(params)`` with default params), ``--system NAME`` (a system class's
``weights``), or ``--all``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from hsm_bench import weights
from hsm_bench.hashing import file_digest
from hsm_bench.weights import WeightSpec, WeightsError


class DownloadError(WeightsError):
    pass


def names_for(names: list[str] | None = None, metrics: str | None = None, system: str | None = None,
              all_weights: bool = False) -> list[str]:  # fmt: skip
    weights._ensure_registered()
    out: list[str] = list(names or [])
    if all_weights:
        out += sorted(weights.WEIGHTS)
    if metrics:
        from hsm_bench.registry import METRICS, resolve_metric_names

        for m in resolve_metric_names(metrics):
            cls = METRICS.get(m)
            if hasattr(cls, "weights_for"):
                out += cls.weights_for(None)
    if system:
        from hsm_bench.registry import SYSTEMS

        out += list(getattr(SYSTEMS.get(system), "weights", ()) or ())
    for n in out:
        weights.spec(n)  # unknown names: did-you-mean error
    return list(dict.fromkeys(out))


def _pin(s: WeightSpec, path: Path) -> None:
    lock = weights._lock_path()
    data = json.loads(lock.read_text()) if lock.exists() else {}
    data[s.name] = {"sha256": weights.file_sha256(path), "size": path.stat().st_size, "source": s.source}
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _verify(s: WeightSpec, path: Path) -> None:
    if s.md5 and file_digest(path, "md5") != s.md5:
        raise DownloadError(f"{path}: md5 differs from the published {s.md5}")
    weights.verify_file(s, path)  # size and sha256 (registry or lock file)
    if not weights.pinned_sha256(s.name):
        _pin(s, path)


def fetch_url(url: str, dest: Path, timeout: float = 60.0, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial download."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch
            part.replace(dest)
            return dest
        raise
    with resp:
        mode = "ab" if have and resp.status == 206 else "wb"
        with open(part, mode) as f:
            while block := resp.read(chunk):
                f.write(block)
    part.replace(dest)
    return dest


def _hub(s: WeightSpec, dest: Path) -> Path:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise DownloadError("Hub downloads need huggingface_hub: pip install 'hsm-bench[metrics]'") from exc
    repo_path = s.source[len("hf://") :]
    parts = repo_path.split("/")
    repo_id = "/".join(parts[:2])
    if s.is_repo:
        huggingface_hub.snapshot_download(repo_id, local_dir=str(dest), allow_patterns=s.extra.get("allow_patterns"))
        return dest
    got = huggingface_hub.hf_hub_download(repo_id, "/".join(parts[2:]), local_dir=str(dest.parent))
    if Path(got).resolve() != dest.resolve():
        Path(got).replace(dest)
    return dest


def download_one(name: str, force: bool = False) -> Path:
    s = weights.spec(name)
    dest = weights.default_path(name)
    if dest.exists() and not force:
        if dest.is_file():
            _verify(s, dest)
        print(f"{name}: present at {dest}")
        return dest
    print(f"{name}: fetching {s.source}")
    try:
        if s.source.startswith("hf://"):
            _hub(s, dest)
        else:
            fetch_url(s.source, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(
            f"cannot fetch {name} from {s.source}: {exc}. This machine may have no access to that host: "
            f"run `hsm-bench download-weights {name}` on a connected machine and copy {weights.home()} here, "
            f"or put the file at {dest}"
        ) from exc
    except Exception as exc:  # huggingface_hub raises its own offline / not-found errors
        if type(exc).__module__.startswith("huggingface_hub"):
            raise DownloadError(
                f"cannot fetch {name} from the Hugging Face Hub ({type(exc).__name__}: {exc}). On a machine without "
                f"Hub access, copy the files from a connected machine into {dest}"
            ) from exc
        raise
    if dest.is_file():
        _verify(s, dest)
    print(f"{name}: ok -> {dest}")
    return dest


def download_weights(names=None, metrics=None, system=None, all_weights=False, force=False) -> int:
    todo = names_for(names, metrics, system, all_weights)
    if not todo:
        print("nothing to fetch: name weights, or give --metrics / --system / --all (see `hsm-bench ls weights`)")
        return 0 if (metrics or system) else 2
    failed = []
    for name in todo:
        try:
            download_one(name, force=force)
        except WeightsError as exc:
            print(f"hsm-bench download-weights: {exc}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"{len(failed)} of {len(todo)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
