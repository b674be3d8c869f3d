"""``hsm-bench download-metadata``: the AudioSet ontology and class index, on a connected machine.

hsm-bench ships a copy of both (``testsets/data``); this fetches the current files into
``$HSM_BENCH_HOME/metadata`` for ``--ontology PATH``. Offline it fails with a clear message.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

FILES = {
    "ontology.json": "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json",
    "class_labels_indices.csv": "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv",
}


def download_metadata(out: str | None = None, force: bool = False, timeout: float = 20.0) -> int:
    from hsm_bench.paths import default_paths

    folder = Path(out).expanduser() if out else Path(default_paths()["home"]) / "metadata"
    folder.mkdir(parents=True, exist_ok=True)
    for name, url in FILES.items():
        dest = folder / name
        if dest.exists() and not force:
            print(f"{dest} exists (use --force to fetch again)")
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            print(
                f"hsm-bench download-metadata: cannot reach {url} ({exc}). On a machine without internet, "
                f"copy {name} from a connected machine to {dest}, or keep using the copy shipped with hsm-bench.",
                file=sys.stderr,
            )
            return 1
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
        print(f"{name}: {len(data):,} bytes -> {dest}")
    print(f"use it with: hsm-bench build-testset NAME --ontology {folder / 'ontology.json'} ...")
    return 0
