"""``hsm-bench download-weights``: fetch and verify checkpoints on a connected machine.

Runs never download. This command fills ``$HSM_BENCH_HOME/weights/<name>/<file>``:
Hub files with ``huggingface_hub.hf_hub_download``, whole Hub repositories (transformers
folders) with ``snapshot_download`` (restricted to ``extra["allow_patterns"]``), anything
else over HTTP(S) into a ``.part`` file that a rerun resumes with a Range request. Each file
is checked against the registry's size, md5 and sha256; a checkpoint without a published
sha256 gets the one of its first download pinned in ``weights.lock.json``, so later copies
must match it.

Without network the command fails fast. Each host is contacted once before its first file:
one HEAD request with a :data:`PROBE_TIMEOUT` timeout, no retries. A host that gives no
HTTP answer (name not resolved, connection refused or closed, no answer in time), or that
fails during a download, fails every file it serves at once, one line each, instead of
huggingface_hub's five retries with back-off per file. ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) set means the Hub is not contacted at all. A failed file leaves
the weights folder as it was, except a non-empty partial download (``*.part``, or
huggingface_hub's ``*.incomplete``) that a rerun resumes; the message says so.

Which weights: names given on the command line, ``--metrics SET`` (each metric class's
``weights_for(params)`` with default params), ``--system NAME`` (a system class's
``weights``), or ``--all``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from hsm_bench import weights
from hsm_bench.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from hsm_bench.hashing import file_digest
from hsm_bench.weights import WeightsError, WeightSpec

PROBE_TIMEOUT = 10.0  # seconds; a host that answers nothing in this time is taken as unreachable
PARTIAL_SUFFIXES = (".part", ".incomplete")  # resumable downloads (ours, huggingface_hub's)


class DownloadError(WeightsError):
    pass


def names_for(names: list[str] | None = None, metrics: str | None = None, system: str | None = None,
              all_weights: bool = False) -> list[str]:  # fmt: skip
    weights._ensure_registered()
    out: list[str] = list(names or [])
    if all_weights:  # entries without any public copy (HSM-TSS) only when named
        out += sorted(n for n, s in weights.WEIGHTS.items() if not s.unavailable)
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


# -- reachability ---------------------------------------------------------------------------
def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """The Hub's base URL, read now: huggingface_hub fixes ``HF_ENDPOINT`` when first imported."""
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    try:
        from huggingface_hub import constants
    except ImportError:
        return "https://huggingface.co"
    return constants.ENDPOINT.rstrip("/")


def origin(s: WeightSpec) -> str:
    """``scheme://host[:port]`` that serves ``s``."""
    u = urlsplit(hub_endpoint() if s.source.startswith("hf://") else s.source)
    return f"{u.scheme}://{u.netloc}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
            yield exc.reason
        exc = exc.__cause__ or exc.__context__


_TRANSPORT = {"TransportError", "NetworkError", "TimeoutException", "ProxyError"}  # httpx2 bases


def connection_problem(exc: BaseException, timeout: float | None = None) -> str | None:
    """Why ``exc`` means the host gave no HTTP answer, or None (an HTTP status, a checksum...)."""
    for e in _causes(exc):
        if isinstance(e, urllib.error.HTTPError):
            return None
        if isinstance(e, socket.gaierror):
            return "its name does not resolve"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, TimeoutError):
            return f"no answer within {timeout:g} s" if timeout else "timed out"
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected,
                          http.client.BadStatusLine, http.client.IncompleteRead)):  # fmt: skip
            return "the connection was closed without an HTTP answer"
        if isinstance(e, ssl.SSLError):
            return f"TLS failed: {e}"
        if any(c.__name__ in _TRANSPORT for c in type(e).__mro__):
            return f"{type(e).__name__}: {' '.join(str(e).split())}"
        if isinstance(e, OSError) and e.errno is not None:  # network unreachable, host down, ...
            return os.strerror(e.errno)
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer: the host is reachable
        return None


def probe(base: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when ``base`` answers one HEAD request (any HTTP status), else why it does not."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(base + "/", method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, http.client.HTTPException) as exc:
        return connection_problem(exc, timeout) or " ".join(str(exc).split())


class Hosts:
    """Which hosts answered; each is probed once per command."""

    def __init__(self, timeout: float = PROBE_TIMEOUT):
        self.timeout = timeout
        self.down: dict[str, str] = {}
        self.up: set[str] = set()

    def reason(self, base: str) -> tuple[str | None, bool]:
        """(why ``base`` cannot be used or None, whether this call found it out)."""
        if base in self.down:
            return self.down[base], False
        if base not in self.up:
            why = probe(base, self.timeout)
            if why:
                self.down[base] = why
                return why, True
            self.up.add(base)
        return None, False

    def failed(self, base: str, why: str) -> None:
        self.down[base] = why


# -- leaving the weights folder as it was ----------------------------------------------------
class _Undo:
    """What existed under ``root`` before an attempt; :meth:`restore` removes what it added."""

    def __init__(self, root: Path):
        self.root = root
        self.before = set(root.rglob("*")) if root.exists() else set()
        self.new_ancestors = []
        p = root
        while not p.exists():
            self.new_ancestors.append(p)
            p = p.parent

    def restore(self) -> list[Path]:
        """Remove new files and folders; keep non-empty partial downloads (returned)."""
        files = [p for p in self.root.rglob("*") if not p.is_dir()] if self.root.exists() else []
        kept = [p for p in files if p.name.endswith(PARTIAL_SUFFIXES) and p.lstat().st_size > 0]
        for p in files:
            if p in self.before or p in kept:
                continue
            # beside a kept partial, huggingface_hub's small bookkeeping files stay for the resume
            if kept and p.lstat().st_size > 0 and not p.name.endswith(".lock"):
                continue
            p.unlink()
        dirs = sorted((p for p in self.root.rglob("*") if p.is_dir() and p not in self.before),
                      key=lambda p: len(p.parts), reverse=True) if self.root.exists() else []  # fmt: skip
        for d in [*dirs, *self.new_ancestors]:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        return kept


# -- fetching --------------------------------------------------------------------------------
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
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial download (one attempt)."""
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
        length = resp.headers.get("Content-Length")
        got = 0
        with open(part, mode) as f:
            while block := resp.read(chunk):
                f.write(block)
                got += len(block)
        # read(amt) returns what arrived when the server hangs up early; a short file must
        # stay a .part (resumable), never become the checkpoint
        if length is not None and length.isdigit() and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)
    part.replace(dest)
    return dest


def hub_file(source: str) -> tuple[str | None, str, str]:
    """(repo_type, repo_id, path in repo) of one Hub file: ``hf://owner/name/path`` in a model
    repository, ``hf://spaces/owner/name/path`` in a Space (some checkpoints, e.g. AudioSep's,
    are published only in a demo Space)."""
    rest = source[len("hf://") :]
    repo_type = None
    if rest.startswith("spaces/"):
        repo_type, rest = "space", rest[len("spaces/") :]
    owner, name, in_repo = rest.split("/", 2)
    return repo_type, f"{owner}/{name}", in_repo


def _hub(s: WeightSpec, dest: Path) -> Path:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise DownloadError("Hub downloads need huggingface_hub: pip install 'hsm-bench[metrics]'") from exc
    endpoint = hub_endpoint()
    if s.is_repo:
        huggingface_hub.snapshot_download(s.repo_id, local_dir=str(dest), allow_patterns=s.extra.get("allow_patterns"),
                                          endpoint=endpoint)  # fmt: skip
        return dest
    repo_type, repo_id, in_repo = hub_file(s.source)
    # into a private folder: huggingface_hub recreates the repository's sub-folders and keeps
    # its .cache there (the resume state of a partial download, kept on failure)
    staging = dest.parent / f".{dest.name}.hub"
    got = huggingface_hub.hf_hub_download(repo_id, in_repo, repo_type=repo_type, local_dir=str(staging),
                                          endpoint=endpoint)  # fmt: skip
    Path(got).replace(dest)
    shutil.rmtree(staging, ignore_errors=True)
    return dest


def _present(s: WeightSpec, dest: Path) -> bool:
    return weights.folder_complete(dest) if s.is_repo else dest.is_file()


def _advice(name: str, s: WeightSpec, dest: Path) -> str:
    what = "folder" if s.is_repo else "file"
    return (f"run `hsm-bench download-weights {name}` on a connected machine and copy {weights.home()} to this one, "
            f"or put the {what} at {dest}")  # fmt: skip


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def download_one(name: str, force: bool = False, hosts: Hosts | None = None) -> Path:
    """Fetch and verify ``name``; a :class:`DownloadError` (one line) says what failed and what to do."""
    s = weights.spec(name)
    dest = weights.default_path(name)
    if _present(s, dest) and not force:
        if dest.is_file():
            _verify(s, dest)
        print(f"{name}: present at {dest}")
        return dest
    if s.unavailable:
        raise DownloadError(f"{name}: {s.description}: {s.unavailable}")
    if s.manual:
        raise DownloadError(
            f"{name}: {s.description} is only published on {s.manual} ({s.source}), which serves browsers, not "
            f"scripts: download it there and put it at {dest} (or pass --weights {name}=/path/to/{s.filename})"
        )
    hosts = hosts or Hosts()
    base = origin(s)
    host = urlsplit(base).netloc
    if s.source.startswith("hf://") and (_env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")):
        raise DownloadError(f"{name}: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, so the Hub is not contacted: "
                            f"unset it on a connected machine, or {_advice(name, s, dest)}")  # fmt: skip
    why, now = hosts.reason(base)
    if why:
        lead = f"cannot reach {host} from this machine ({why})" if now else \
            f"not tried: {host} could not be reached a moment ago ({why})"  # fmt: skip
        raise DownloadError(f"{name}: {lead}; {_advice(name, s, dest)}")
    print(f"{name}: fetching {s.source}")
    undo = _Undo(weights.home() / name)
    existed = dest.exists()
    try:
        if s.source.startswith("hf://"):
            _hub(s, dest)
        else:
            fetch_url(s.source, dest)
        if dest.is_file():
            _verify(s, dest)
    except BaseException as exc:
        kept = undo.restore()
        if not isinstance(exc, Exception):  # Ctrl-C: the folder is tidied, the interrupt goes on
            raise
        resume = f" (partial download kept at {kept[0]}: a rerun resumes it)" if kept else ""
        why = connection_problem(exc)
        if why:
            hosts.failed(base, why)
            raise DownloadError(f"{name}: lost the connection to {host} ({why}){resume}; {_advice(name, s, dest)}") from exc
        if isinstance(exc, WeightsError):  # a checksum: the new file is of no use
            gone = " (the download was removed)" if not existed and not dest.exists() else ""
            raise DownloadError(f"{name}: {_one_line(exc)}{gone}{resume}") from exc
        raise DownloadError(f"{name}: cannot fetch {s.source}: {type(exc).__name__}: {_one_line(exc)}{resume}") from exc
    print(f"{name}: ok -> {dest}")
    return dest


def download_weights(names=None, metrics=None, system=None, all_weights=False, force=False) -> int:
    todo = names_for(names, metrics, system, all_weights)
    if not todo:
        print("nothing to fetch: name weights, or give --metrics / --system / --all (see `hsm-bench ls weights`)")
        return EXIT_OK if (metrics or system) else EXIT_ERROR
    hosts = Hosts()
    failed = []
    for name in todo:
        try:
            download_one(name, force=force, hosts=hosts)
        except WeightsError as exc:
            print(f"hsm-bench download-weights: {_one_line(exc)}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"hsm-bench download-weights: {len(failed)} of {len(todo)} failed: {', '.join(failed)}", file=sys.stderr)
        # the exit statuses of every command: 2 nothing fetched, 1 some fetched
        return EXIT_ERROR if len(failed) == len(todo) else EXIT_PARTIAL
    return EXIT_OK
