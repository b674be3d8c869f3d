"""Clotho v2 evaluation split: 500 mixtures of the 1,045 evaluation clips (15-30 s).

Layout read (``--source DIR``): ``clotho_captions_evaluation.csv`` anywhere under DIR
(``file_name,caption_1..caption_5``; file names hold spaces and commas, so the CSV is parsed
properly, never split on commas), the optional ``clotho_metadata_evaluation.csv`` (read as
ISO-8859-1, as the dataset ships it; its per-file licences go into the card), and the WAV
files anywhere under DIR (``evaluation/``, ``clotho_audio_files/evaluation/``, ...).

Window: the shorter source's full length, capped at 30 s: the shorter clip plays whole, the
longer is cropped at a uniform offset (both are 15-30 s, so items are 15-30 s long).
Classes: the caption tagger over the five captions.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import ClassVar

from testsets.ontology import Ontology
from testsets.pools import PairBuilder, PoolClip, ScanReport, find_file, header_length, index_audio, read_list_csv
from testsets.tags import TAGGER_VERSION, tagger_for


class ClothoBuilder(PairBuilder):
    name: ClassVar[str] = "clotho"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 500
    window_rule: ClassVar[str] = "shorter_source"
    window_s: ClassVar[float] = 30.0

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        root = self._require_source()
        what = "Clotho's evaluation captions clotho_captions_evaluation.csv (file_name,caption_1..5)"
        captions_csv = find_file(root, "clotho_captions_evaluation.csv", what)
        rows = read_list_csv(captions_csv, ("file_name", "caption_1"), what, encoding="utf-8-sig")
        self._licences = self._read_licences(root)
        files = index_audio(root)
        tagger = tagger_for(str(self.ontology_path) if self.ontology_path else None)
        report, pool = ScanReport(), []
        for row in rows:
            name = row["file_name"].strip()
            captions = tuple(row[f"caption_{k}"].strip() for k in range(1, 6) if (row.get(f"caption_{k}") or "").strip())
            path = files.get(name)
            if path is None:
                report.missing.append(name)
                continue
            length = header_length(path, report, name)
            if length is None:
                continue
            report.found += 1
            mids = tagger.tag_all(list(captions))
            if not mids:
                report.untagged.append(name)
                continue
            pool.append(PoolClip(key=f"clotho/{name}", dataset="clotho", path=str(path.relative_to(root)),
                                 labels=frozenset(mids), captions=captions, label_text="", length=length))  # fmt: skip
        self._n_listed = len(rows)
        return pool, report

    @staticmethod
    def _read_licences(root: Path) -> dict[str, int]:
        found = sorted(root.rglob("clotho_metadata_evaluation.csv"))
        if not found:
            return {}
        with open(found[0], newline="", encoding="iso-8859-1") as f:
            sample = f.read(4096)
            f.seek(0)
            delimiter = ";" if sample.count(";") > sample.count(",") else ","
            return dict(Counter(r.get("license", "").strip() or "unknown" for r in csv.DictReader(f, delimiter=delimiter)))

    def sources_card(self) -> dict:
        return {
            "dataset": "Clotho v2.1 evaluation split",
            "listed_clips": getattr(self, "_n_listed", None),
            "classes_from": f"caption tagger v{TAGGER_VERSION}",
            "licence": "audio and metadata: each file's Freesound licence (counts below); captions: Tampere University, non-commercial",
            "file_licences": getattr(self, "_licences", {}),
        }
