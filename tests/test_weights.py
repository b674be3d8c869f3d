"""The weights resolver and download-weights, against local servers (no real network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from hsm_bench import download, weights
from hsm_bench.cli import main
from hsm_bench.errors import SetupError
from hsm_bench.weights import WeightSpec


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring a simple ``Range: bytes=N-`` header; counts requests."""

    requests: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        _RangeHandler.requests.append(self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.requests = []
    yield root, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture
def spec_for(monkeypatch):
    added = []

    def make(**kw):
        s = WeightSpec(description="test file", licence="CC0-1.0", **kw)
        weights.register(s)
        added.append(s.name)
        return s

    yield make
    for name in added:
        weights.WEIGHTS.pop(name, None)


def test_missing_file_error_is_one_line_with_command_and_path(spec_for):
    spec_for(name="t-missing", source="http://example.invalid/x.bin", filename="x.bin")
    with pytest.raises(weights.WeightsMissingError) as err:
        weights.resolve("t-missing")
    msg = str(err.value)
    assert "hsm-bench download-weights t-missing" in msg and str(weights.default_path("t-missing")) in msg
    assert "--weights t-missing=" in msg and "\n" not in msg


def test_override_and_mismatch(spec_for, tmp_path):
    blob = b"0123456789" * 100
    (tmp_path / "w.bin").write_bytes(blob)
    spec_for(name="t-sized", source="http://example.invalid/w.bin", filename="w.bin", size=len(blob),
             sha256=hashlib.sha256(blob).hexdigest())  # fmt: skip
    with weights.overrides(["t-sized=" + str(tmp_path / "w.bin")]):
        assert weights.resolve("t-sized") == tmp_path / "w.bin"
        (tmp_path / "w.bin").write_bytes(blob[:-1] + b"x")
        with pytest.raises(weights.WeightsMismatchError, match="sha256"):
            weights.resolve("t-sized")
        (tmp_path / "w.bin").write_bytes(blob[:10])
        with pytest.raises(weights.WeightsMismatchError, match="bytes"):
            weights.resolve("t-sized")
    with pytest.raises(weights.WeightsMissingError):  # the override ended with its block
        weights.resolve("t-sized")


def test_overrides_are_checked_scoped_and_nest(spec_for, tmp_path):
    spec_for(name="t-a", source="http://example.invalid/a.bin", filename="a.bin")
    spec_for(name="t-b", source="http://example.invalid/b.bin", filename="b.bin")
    a1, a2, b = (tmp_path / n for n in ("a1.bin", "a2.bin", "b.bin"))
    for f in (a1, a2, b):
        f.write_bytes(b"x")
    with weights.overrides({"t-a": a1}) as applied:
        assert applied == {"t-a": a1} and weights.resolve("t-a") == a1
        with weights.overrides([f"t-a={a2}", f" t-b = {b} "]):
            assert weights.resolve("t-a") == a2 and weights.resolve("t-b") == b
        assert weights.resolve("t-a") == a1 and weights.missing(["t-b"]) == ["t-b"]
        with pytest.raises(KeyError), weights.overrides({"t-b": b}):
            raise KeyError("a failing job")  # restored on errors too
        assert weights.missing(["t-a", "t-b"]) == ["t-b"]
    assert weights._overrides == {}
    with weights.overrides(None), weights.overrides({}):
        assert weights._overrides == {}
    # nothing is applied unless every entry is valid
    with pytest.raises(weights.WeightsError, match="Did you mean 't-a'") as err:
        with weights.overrides({"t-b": b, "t-aa": a1}):
            pass
    assert isinstance(err.value, SetupError) and weights._overrides == {}
    with pytest.raises(weights.WeightsMissingError, match=r"--weights t-a=.*nope.bin: no such file or folder"):
        with weights.overrides({"t-b": b, "t-a": tmp_path / "nope.bin"}):
            pass
    with pytest.raises(weights.WeightsError, match="expected NAME=PATH"):
        with weights.overrides(["t-a"]):
            pass
    assert weights._overrides == {}


def test_require_names_every_missing_weight_at_once(spec_for, tmp_path, monkeypatch):
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "home"))
    spec_for(name="t-one", source="http://example.invalid/one.bin", filename="one.bin")
    spec_for(name="t-two", source="hf://own/two/two.pt", filename="two.pt")
    spec_for(name="t-there", source="http://example.invalid/there.bin", filename="there.bin")
    there = weights.default_path("t-there")
    there.parent.mkdir(parents=True, exist_ok=True)
    there.write_bytes(b"x")
    assert weights.missing(["t-one", "t-there", "t-two", "t-one"]) == ["t-one", "t-two"]
    with pytest.raises(weights.WeightsMissingError) as err:
        weights.require(["t-one", "t-there", "t-two"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("2 weights missing")
    assert f"t-one (expected at {weights.default_path('t-one')})" in msg
    assert f"t-two (expected at {weights.default_path('t-two')})" in msg
    assert msg.count("hsm-bench download-weights") == 1 and "`hsm-bench download-weights t-one t-two`" in msg
    assert "--weights NAME=PATH" in msg and "t-there" not in msg
    (tmp_path / "one.bin").write_bytes(b"1")
    with weights.overrides({"t-one": tmp_path / "one.bin"}):
        with pytest.raises(weights.WeightsMissingError, match="^1 weights missing: t-two "):
            weights.require(["t-one", "t-two"])
    weights.require(["t-there"])
    weights.require([])
    with pytest.raises(weights.WeightsError, match="Did you mean"):
        weights.require(["t-thre"])


def _hf_snapshot(cache: Path, repo: str, files: dict[str, str]) -> Path:
    """A copy of ``repo`` in the Hugging Face cache layout (refs/main -> snapshots/<commit>)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    snap = root / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    return snap


def test_hub_repositories_resolve_from_a_complete_hf_cache_copy(spec_for, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HSM_BENCH_HOME", str(tmp_path / "home"))
    spec_for(name="t-repo", source="hf://own/repo.v1", filename="repo.v1")
    spec_for(name="t-sharded", source="hf://own/sharded", filename="sharded")
    assert weights.spec("t-repo").is_repo and weights.missing(["t-repo"]) == ["t-repo"]
    snap = _hf_snapshot(tmp_path / "hf", "own/repo.v1", {"config.json": "{}"})
    assert weights.missing(["t-repo"]) == [] and weights.resolve("t-repo") == snap
    assert weights.resolved_path("t-repo") == snap
    # a partial copy (transformers fetched some files only) does not count
    index = json.dumps({"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}})
    part = _hf_snapshot(tmp_path / "hf", "own/sharded", {"config.json": "{}", "model.safetensors.index.json": index,
                                                         "model-1.safetensors": "x"})  # fmt: skip
    assert weights.missing(["t-sharded"]) == ["t-sharded"]
    with pytest.raises(weights.WeightsMissingError, match="download-weights t-sharded"):
        weights.resolve("t-sharded")
    (part / "model-2.safetensors").write_text("x")
    assert weights.resolve("t-sharded") == part
    # the default folder wins over the cache; an incomplete one is named as such
    own = weights.default_path("t-repo")
    own.mkdir(parents=True)
    assert weights.resolve("t-repo") == snap
    (own / "config.json").write_text("{}")
    assert weights.resolve("t-repo") == own
    (own / "config.json").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(weights.WeightsMissingError, match="incomplete"):
        weights.resolve("t-repo")


def test_folder_digest_and_file_digest(tmp_path):
    (tmp_path / "m").mkdir()
    assert weights.path_sha256(tmp_path / "m") is None and weights.path_sha256(tmp_path / "none") is None
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"w")
    f = tmp_path / "m" / "model.safetensors"
    assert weights.path_sha256(f) == hashlib.sha256(b"w").hexdigest() == weights.file_sha256(f)
    expected = hashlib.sha256(f"model.safetensors:{hashlib.sha256(b'w').hexdigest()}\n".encode()).hexdigest()
    assert weights.path_sha256(tmp_path / "m") == expected
    (tmp_path / "m" / "config.json").write_text('{"a": 1}')  # not a weight file: same digest
    assert weights.path_sha256(tmp_path / "m") == expected


def test_download_resumes_verifies_and_pins(server, spec_for):
    root, url = server
    blob = bytes(range(256)) * 4000
    (root / "ckpt.pth").write_bytes(blob)
    spec_for(name="t-http", source=f"{url}/ckpt.pth", filename="ckpt.pth", md5=hashlib.md5(blob).hexdigest())
    dest = weights.default_path("t-http")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.with_name("ckpt.pth.part").write_bytes(blob[:1000])  # an interrupted earlier download
    assert main(["download-weights", "t-http"]) == 0
    assert dest.read_bytes() == blob and _RangeHandler.requests == ["bytes=1000-"]
    lock = json.loads(weights._lock_path().read_text())
    assert lock["t-http"]["sha256"] == hashlib.sha256(blob).hexdigest()
    # the pinned hash now guards the file
    dest.write_bytes(blob[::-1])
    with pytest.raises(weights.WeightsMismatchError):
        weights.resolve("t-http")


def test_download_checksum_mismatch_fails(server, spec_for, capsys):
    root, url = server
    (root / "bad.pth").write_bytes(b"abc")
    (root / "good.pth").write_bytes(b"good")
    spec_for(name="t-bad", source=f"{url}/bad.pth", filename="bad.pth", sha256="0" * 64)
    spec_for(name="t-good", source=f"{url}/good.pth", filename="good.pth")
    assert main(["download-weights", "t-bad"]) == 2  # nothing fetched
    assert "sha256" in capsys.readouterr().err
    assert main(["download-weights", "t-good", "t-bad"]) == 1  # some fetched, some failed
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "hsm-bench download-weights: 1 of 2 failed: t-bad"
    assert weights.default_path("t-good").read_bytes() == b"good"


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """A weights home with something in it already (a download must leave it as it was)."""
    home = tmp_path / "home"
    monkeypatch.setenv("HSM_BENCH_HOME", str(home))
    weights.home().mkdir(parents=True)
    (weights.home() / "weights.lock.json").write_text("{}\n")
    (weights.home() / "other" / "x.bin").parent.mkdir()
    (weights.home() / "other" / "x.bin").write_bytes(b"x")
    return home


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connection attempt made from Python, by address (urllib, httpx alike)."""
    seen: list[tuple] = []
    real = socket.socket.connect

    def connect(self, address):
        seen.append(tuple(address[:2]))
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def _failure_lines(err: str, names: list[str]) -> list[str]:
    """The stderr lines of a failed download-weights: one per file, then the summary."""
    lines = err.strip().splitlines()
    assert len(lines) == len(names) + 1
    assert lines[-1].startswith(f"hsm-bench download-weights: {len(names)} of {len(names)} failed")
    for line, name in zip(lines, names):
        assert line.startswith(f"hsm-bench download-weights: {name}: ")
    return lines[:-1]


def test_unreachable_http_hosts_fail_fast_once_per_host(spec_for, offline_home, connects, capsys):
    a, b = _closed_port(), _closed_port()
    spec_for(name="t-a1", source=f"http://127.0.0.1:{a}/one.bin", filename="one.bin")
    spec_for(name="t-a2", source=f"http://127.0.0.1:{a}/two.bin", filename="two.bin")
    spec_for(name="t-b1", source=f"http://127.0.0.1:{b}/three.bin", filename="three.bin")
    before = _tree(offline_home)
    assert download.download_weights(["t-a1", "t-a2", "t-b1"]) == 2  # nothing fetched
    lines = _failure_lines(capsys.readouterr().err, ["t-a1", "t-a2", "t-b1"])
    assert connects.count(("127.0.0.1", a)) == 1 and connects.count(("127.0.0.1", b)) == 1 and len(connects) == 2
    assert f"cannot reach 127.0.0.1:{a} from this machine (connection refused)" in lines[0]
    assert f"not tried: 127.0.0.1:{a} could not be reached" in lines[1]
    assert f"cannot reach 127.0.0.1:{b}" in lines[2]
    for line, name, file in zip(lines, ["t-a1", "t-a2", "t-b1"], ["one.bin", "two.bin", "three.bin"]):
        assert "on a connected machine and copy" in line and str(weights.home()) in line
        assert f"`hsm-bench download-weights {name}`" in line and str(weights.default_path(name)) in line
        assert line.endswith(file)
    assert _tree(offline_home) == before


class _Closer:
    """A listening socket that accepts and closes at once, counting connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_unreachable_hub_endpoint_fails_fast_once(spec_for, offline_home, connects, capsys, monkeypatch):
    pytest.importorskip("huggingface_hub")
    closer = _Closer()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closer.port}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        spec_for(name="t-hub-file", source="hf://own/repo/model.pt", filename="model.pt")
        spec_for(name="t-hub-repo", source="hf://own/textmodel", filename="textmodel")
        before = _tree(offline_home)
        assert download.download_weights(["t-hub-file", "t-hub-repo"]) == 2  # nothing fetched
        err = capsys.readouterr().err
    finally:
        closer.close()
    lines = _failure_lines(err, ["t-hub-file", "t-hub-repo"])
    assert closer.accepted == 1 and connects == [("127.0.0.1", closer.port)]
    assert "cannot reach 127.0.0.1" in lines[0] and "closed without an HTTP answer" in lines[0]
    assert "not tried" in lines[1] and f"put the folder at {weights.default_path('t-hub-repo')}" in lines[1]
    assert _tree(offline_home) == before


def test_hub_offline_setting_is_honoured_without_connecting(spec_for, offline_home, connects, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec_for(name="t-hub-off", source="hf://own/repo/model.pt", filename="model.pt")
    assert download.download_weights(["t-hub-off"]) == 2  # nothing fetched
    (line,) = _failure_lines(capsys.readouterr().err, ["t-hub-off"])
    assert "HF_HUB_OFFLINE" in line and connects == []


class _NotFound(http.server.BaseHTTPRequestHandler):
    """A host that answers, but has none of the files (a Hub-like 404)."""

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


def test_a_failed_hub_download_leaves_nothing_behind(spec_for, offline_home, capsys, monkeypatch):
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import (
        constants,  # a submodule: not an attribute until imported
    )

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{httpd.server_port}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # fixed when the library was imported
        spec_for(name="t-hub-404", source="hf://own/repo/model.pt", filename="model.pt")
        before = _tree(offline_home)
        assert download.download_weights(["t-hub-404"]) == 2  # nothing fetched
    finally:
        httpd.shutdown()
    (line,) = _failure_lines(capsys.readouterr().err, ["t-hub-404"])
    assert "cannot fetch hf://own/repo/model.pt" in line
    assert _tree(offline_home) == before


def test_an_interrupted_http_download_keeps_only_its_partial_file(spec_for, offline_home, capsys):
    """The server promises more bytes than it sends: the .part stays for a resume, nothing else."""

    class Short(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"y" * 400)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        spec_for(name="t-short", source=f"http://127.0.0.1:{httpd.server_port}/s.bin", filename="s.bin")
        assert download.download_weights(["t-short"]) == 2  # nothing fetched
    finally:
        httpd.shutdown()
    (line,) = _failure_lines(capsys.readouterr().err, ["t-short"])
    part = weights.default_path("t-short").with_name("s.bin.part")
    assert f"partial download kept at {part}" in line and part.read_bytes() == b"y" * 400
    assert sorted(p.name for p in part.parent.iterdir()) == ["s.bin.part"]


def test_names_from_metrics_and_systems():
    assert download.names_for(metrics="kl") == ["panns-cnn14-16k"]
    assert "msclap-2023" in download.names_for(metrics="clap")
    assert download.names_for(system="oracle_irm") == []
    with pytest.raises(weights.WeightsError, match="Did you mean"):
        download.names_for(["panns-cnn14-16"])


def test_ls_weights_lists_state(capsys, tmp_path):
    assert main(["ls", "weights"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "panns-cnn14-16k" in row)
    assert "missing" in line
    (tmp_path / "c.pth").write_bytes(b"x")
    with weights.overrides({"panns-cnn14-16k": tmp_path / "c.pth"}):
        assert weights.resolved_path("panns-cnn14-16k") == tmp_path / "c.pth"
        assert main(["ls", "weights"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "panns-cnn14-16k" in row)
    assert "present" in line


def test_browser_only_hosts_get_a_manual_download_message(spec_for, capsys, connects):
    spec_for(name="t-drive", source="https://drive.google.com/file/d/XYZ/view", filename="model.pt",
             manual="Google Drive")  # fmt: skip
    assert main(["download-weights", "t-drive"]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("hsm-bench download-weights: t-drive: test file is only published on Google Drive")
    assert f"put it at {weights.default_path('t-drive')}" in line and "--weights t-drive=" in line
    assert connects == []  # nothing is tried
    assert not weights.default_path("t-drive").parent.exists()
