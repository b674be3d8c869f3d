"""The weights resolver and download-weights, against a local HTTP server (no real network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading

import pytest

from hsm_bench import download, weights
from hsm_bench.cli import main
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
    weights._overrides.clear()


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
    weights.set_override("t-sized", tmp_path / "w.bin")
    assert weights.resolve("t-sized") == tmp_path / "w.bin"
    (tmp_path / "w.bin").write_bytes(blob[:-1] + b"x")
    with pytest.raises(weights.WeightsMismatchError, match="sha256"):
        weights.resolve("t-sized")
    (tmp_path / "w.bin").write_bytes(blob[:10])
    with pytest.raises(weights.WeightsMismatchError, match="bytes"):
        weights.resolve("t-sized")


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
    spec_for(name="t-bad", source=f"{url}/bad.pth", filename="bad.pth", sha256="0" * 64)
    assert main(["download-weights", "t-bad"]) == 1
    assert "sha256" in capsys.readouterr().err


def test_unreachable_host_says_what_to_do(spec_for, capsys):
    spec_for(name="t-offline", source="http://127.0.0.1:9/none.bin", filename="none.bin")
    assert main(["download-weights", "t-offline"]) == 1
    err = capsys.readouterr().err
    assert "connected machine" in err and "none.bin" in err


def test_names_from_metrics_and_systems():
    assert download.names_for(metrics="kl") == ["panns-cnn14-16k"]
    assert "msclap-2023" in download.names_for(metrics="clap")
    assert download.names_for(system="oracle_irm") == []
    with pytest.raises(weights.WeightsError, match="Did you mean"):
        download.names_for(["panns-cnn14-16"])


def test_ls_weights_lists_state(capsys):
    assert main(["ls", "weights"]) == 0
    out = capsys.readouterr().out
    assert "panns-cnn14-16k" in out and "missing" in out
