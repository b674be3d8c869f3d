"""MUSIC (Sound-of-Pixels) zero-shot set: 500 mixtures of 10-s segments of the 46 test videos.

The 46 videos are CLIPSep's MUSIC solo test list, which AudioSep's MUSIC benchmark also uses
(shipped in ``testsets/data/music_solo_test.csv``; 10 classes occur, no clarinet). Layout
read (``--source DIR``): audio extracted per class folder, ``<class>/<youtube id>.<ext>``
anywhere under DIR (e.g. CLIPSep's ``data/MUSIC/solo/audio/``). Videos not found are listed.

Each video is cut into consecutive non-overlapping 10-s segments (a trailing remainder is
dropped); a pair is two segments of different instruments (the peers' rule: violin and cello
are different classes even though both are bowed strings); SNR uniform in [-5, 5] dB;
queries are the instrument name. Ontology nodes are recorded for every segment: tuba ->
"Brass instrument", erhu -> "Bowed string instrument", xylophone -> "Marimba, xylophone".
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from hsm_bench.audio.io import AUDIO_EXTENSIONS
from testsets.base import CANONICAL_RATE
from testsets.ontology import DATA, Ontology
from testsets.pools import PairBuilder, PoolClip, ScanReport, header_length

TEST_LIST = DATA / "music_solo_test.csv"
ONTOLOGY_NODES = {
    "accordion": "Accordion", "acoustic_guitar": "Acoustic guitar", "cello": "Cello", "clarinet": "Clarinet",
    "erhu": "Bowed string instrument", "flute": "Flute", "saxophone": "Saxophone", "trumpet": "Trumpet",
    "tuba": "Brass instrument", "violin": "Violin, fiddle", "xylophone": "Marimba, xylophone",
}  # fmt: skip


def test_videos() -> list[tuple[str, str]]:
    with open(TEST_LIST, newline="", encoding="utf-8") as f:
        return [(r["class"], r["youtube_id"]) for r in csv.DictReader(f)]


class MusicBuilder(PairBuilder):
    name: ClassVar[str] = "music"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 500
    snr_range: ClassVar[tuple[float, float]] = (-5.0, 5.0)
    window_rule: ClassVar[str] = "fixed"
    class_rule_text: ClassVar[str] = "the two segments come from different instrument classes"

    def share_class(self, t: PoolClip, i: PoolClip, closed) -> bool:
        return t.extra["instrument"] == i.extra["instrument"]

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        root = self._require_source()
        files: dict[tuple[str, str], Path] = {}
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                files.setdefault((p.parent.name, p.stem), p)
        seg = int(10 * CANONICAL_RATE)
        report, pool = ScanReport(), []
        for cls, ytid in test_videos():
            path = files.get((cls, ytid))
            if path is None:
                report.missing.append(f"{cls}/{ytid}")
                continue
            length = header_length(path, report, f"{cls}/{path.name}")
            if length is None:
                continue
            report.found += 1
            if length < seg:
                report.too_short.append(f"{cls}/{ytid}")
            mid = ontology.mid(ONTOLOGY_NODES[cls])
            for k in range(length // seg):
                pool.append(
                    PoolClip(key=f"music/{cls}/{ytid}/{k}", dataset="music", path=str(path.relative_to(root)),
                             labels=frozenset({mid}), captions=(), label_text=cls.replace("_", " "), length=length,
                             segment=(k * seg, seg), extra={"instrument": cls, "segment": k})  # fmt: skip
                )
        return pool, report

    def sources_card(self) -> dict:
        return {
            "dataset": "MUSIC solo, the 46 test videos of CLIPSep / AudioSep",
            "videos_listed": len(test_videos()),
            "segments": "consecutive 10-s segments per video",
            "licence": "MUSIC lists YouTube ids (audio not redistributable); test list from CLIPSep (MIT)",
        }
