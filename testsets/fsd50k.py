"""FSD50K eval split: 500 mixtures of eval clips of at least ``min_duration_s`` (default 5 s).

Layout read (``--source DIR``, the extracted Zenodo archives): ``FSD50K.ground_truth/eval.csv``
(``fname,labels,mids``; mids already smeared to ancestors), the header-less
``FSD50K.ground_truth/vocabulary.csv`` (``index,label,mid``) and ``FSD50K.eval_audio/<fname>.wav``.
The paper says 5-30 s while the official durations are 0.3-30 s: the minimum duration is a
recorded parameter (``--set min_duration_s=0.3`` keeps every clip).

Window: the shorter source's full length, capped at 30 s. Classes: the clip's mids.
Queries are labels: the most specific labels' ontology names joined with "and".
"""

from __future__ import annotations

import csv
from typing import ClassVar

from hsm_bench.errors import ConfigError
from testsets.base import CANONICAL_RATE
from testsets.ontology import Ontology, OntologyError
from testsets.pools import PairBuilder, PoolClip, ScanReport, find_file, header_length, index_audio, read_list_csv


def label_text(ontology: Ontology, mids) -> str:
    names = [ontology.name(m) for m in ontology.most_specific(sorted(mids))]
    return " and ".join(n.split(",")[0].strip().lower() for n in names)


class FSD50KBuilder(PairBuilder):
    name: ClassVar[str] = "fsd50k"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 500
    window_rule: ClassVar[str] = "shorter_source"
    window_s: ClassVar[float] = 30.0

    @property
    def min_duration_s(self) -> float:
        value = self.params.get("min_duration_s", 5.0)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--set min_duration_s={value!r}: expected a number of seconds, e.g. 5") from None

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        root = self._require_source()
        what = "the FSD50K ground truth FSD50K.ground_truth/eval.csv (fname,labels,mids)"
        gt = find_file(root, "eval.csv", what)
        vocab_path = gt.parent / "vocabulary.csv"
        vocab = {}
        if vocab_path.exists():
            with open(vocab_path, newline="", encoding="utf-8") as f:
                vocab = {r[2]: r[1] for r in csv.reader(f) if len(r) >= 3}  # no header row
        files = index_audio(root)
        report, pool = ScanReport(), []
        min_len = int(self.min_duration_s * CANONICAL_RATE)
        rows = read_list_csv(gt, ("fname", "mids"), what)
        for row in rows:
            fname = row["fname"].strip()
            path = files.get(f"{fname}.wav")
            if path is None:
                report.missing.append(fname)
                continue
            length = header_length(path, report, f"{fname}.wav")
            if length is None:
                continue
            report.found += 1
            if length < min_len:
                report.too_short.append(fname)
                continue
            mids = set()
            for m in (row["mids"] or "").split(","):
                m = m.strip()
                try:
                    mids.add(ontology.mid(m) if m else None)
                except OntologyError:
                    if m in vocab:
                        mids.add(ontology.mid(vocab[m]))
            mids.discard(None)
            if not mids:
                report.untagged.append(fname)
                continue
            text = label_text(ontology, mids)
            pool.append(PoolClip(key=f"fsd50k/{fname}", dataset="fsd50k", path=str(path.relative_to(root)),
                                 labels=frozenset(mids), captions=(), label_text=text, length=length))  # fmt: skip
        self._n_listed = len(rows)
        return pool, report

    def sources_card(self) -> dict:
        return {
            "dataset": "FSD50K v1.0 eval split",
            "listed_clips": getattr(self, "_n_listed", None),
            "min_duration_s": self.min_duration_s,
            "classes_from": "eval.csv mids",
            "licence": "dataset CC BY 4.0; each clip CC0 / CC BY / CC BY-NC / Sampling+ (FSD50K.metadata)",
        }
