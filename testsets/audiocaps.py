"""AudioCaps test set: 500 ten-second mixtures of the AudioCaps test clips found on disk.

Layout read (``--source DIR``): ``test.csv`` anywhere under DIR (the official
``audiocap_id,youtube_id,start_time,caption`` file, five rows per clip) and the audio files
anywhere under DIR, named in any of the common ways: ``Y{ytid}.wav`` (AudioSet style,
AudioSep, WavCaps), ``{ytid}.wav``, ``{ytid}_{start}.{wav,flac}`` (aac-datasets) or
``{audiocap_id}.{ext}`` (audiocaps-download, one file per caption row). Clips not found are
listed in the card as missing; the build goes on.

Classes: AudioSet segment labels when ``--set segments_csv=PATH`` gives a segments file in
AudioSet's format (``# ...`` comment lines, then ``YTID, start_seconds, end_seconds,
"mid,mid"``), otherwise the caption tagger over all five captions (:mod:`testsets.tags`).
Clips with no class at all cannot be checked against the rule and are left out (listed).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from hsm_bench.audio.io import AUDIO_EXTENSIONS
from hsm_bench.errors import BuildError
from testsets.ontology import Ontology
from testsets.pools import PairBuilder, PoolClip, ScanReport, find_file, header_length, read_list_csv
from testsets.tags import TAGGER_VERSION, tagger_for

LICENCE = "AudioCaps captions: MIT (cdjkim/audiocaps), academic use; audio: YouTube (not redistributable)"


def read_segments_csv(path: Path) -> dict[str, set[str]]:
    """AudioSet segments CSV -> {youtube id: mids}."""
    if not path.is_file():
        raise BuildError(f"--set segments_csv={path}: no such file (expected an AudioSet segments CSV: "
                         "YTID, start_seconds, end_seconds, \"mid,mid\")")  # fmt: skip
    out: dict[str, set[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader((line for line in f if not line.startswith("#")), skipinitialspace=True):
                if len(row) >= 4:
                    out.setdefault(row[0].strip(), set()).update(m.strip() for m in row[3].split(",") if m.strip())
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BuildError(f"--set segments_csv={path} is not an AudioSet segments CSV ({exc})") from exc
    return out


class AudioCapsBuilder(PairBuilder):
    name: ClassVar[str] = "audiocaps"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 500
    window_rule: ClassVar[str] = "fixed"

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        root = self._require_source()
        what = "the AudioCaps test list test.csv (audiocap_id,youtube_id,start_time,caption)"
        csv_path = find_file(root, "test.csv", what)
        clips: dict[str, dict] = {}
        for row in read_list_csv(csv_path, ("audiocap_id", "youtube_id", "start_time", "caption"), what):
            c = clips.setdefault(row["youtube_id"], {"start": row["start_time"], "ids": [], "captions": []})
            c["ids"].append(row["audiocap_id"])
            c["captions"].append((row["caption"] or "").strip())
        files: dict[str, Path] = {}
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                files.setdefault(p.stem, p)
        segments = read_segments_csv(Path(self.params["segments_csv"]).expanduser()) if self.params.get("segments_csv") else None
        tagger = tagger_for(str(self.ontology_path) if self.ontology_path else None)
        report, pool = ScanReport(), []
        for ytid in sorted(clips):
            c = clips[ytid]
            start = str(c["start"]).split(".")[0]
            names = [f"Y{ytid}", ytid, f"{ytid}_{start}", f"Y{ytid}_{start}", *c["ids"]]
            path = next((files[n] for n in names if n in files), None)
            if path is None:
                report.missing.append(ytid)
                continue
            length = header_length(path, report, path.name)
            if length is None:
                continue
            report.found += 1
            if segments is not None:
                mids = {m for m in segments.get(ytid, set()) if m in ontology.nodes}
            else:
                mids = tagger.tag_all(c["captions"])
            if not mids:
                report.untagged.append(ytid)
                continue
            pool.append(
                PoolClip(key=f"audiocaps/{ytid}", dataset="audiocaps", path=str(path.relative_to(root)),
                         labels=frozenset(mids), captions=tuple(c["captions"]), label_text="", length=length)  # fmt: skip
            )
        self._n_listed = len(clips)
        return pool, report

    def sources_card(self) -> dict:
        return {
            "dataset": "AudioCaps test (v1 / v2 test.csv)",
            "listed_clips": getattr(self, "_n_listed", None),
            "classes_from": "AudioSet segments CSV" if self.params.get("segments_csv") else f"caption tagger v{TAGGER_VERSION}",
            "licence": LICENCE,
        }
