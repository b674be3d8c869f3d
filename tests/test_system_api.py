"""The System interface's provenance: the code hash covers the helper modules a system uses."""

from __future__ import annotations

import importlib
import sys
import textwrap


def test_code_hash_covers_lazily_imported_helper_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "mysys"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text("SCALE = 0.5\n")
    (pkg / "model.py").write_text(textwrap.dedent('''
        from hsm_bench.api.system import System

        class Half(System):
            name = "half"

            def load(self, device="cpu"):
                from mysys.net import SCALE  # imported lazily, as systems import their networks
                self.scale = SCALE
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))

    def code_hash() -> str:
        for name in ("mysys.model", "mysys.net", "mysys"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return importlib.import_module("mysys.model").Half().code_sha1()

    first = code_hash()
    assert code_hash() == first  # stable
    (pkg / "net.py").write_text("SCALE = 0.25\n")  # only the helper changes
    assert code_hash() != first
