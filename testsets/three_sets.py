""""3 Sets": 1,000 ten-second mixtures from equal shares of the AudioCaps, Clotho and FSD50K pools.

Layout read: ``--source ROOT`` holding ``audiocaps/``, ``clotho/`` and ``fsd50k/``, each in
its own dataset layout (see those builders), or explicit folders with
``--set audiocaps_source=DIR --set clotho_source=DIR --set fsd50k_source=DIR``.

Pool composition (recorded in the card): ``per_pool`` clips (default 1,333, i.e. about
4,000 sources as in the paper) drawn without replacement from each dataset's usable clips
with a generator seeded by ``(seed, 1)``; a dataset with fewer clips contributes all of
them. The paper's 4,000 sources cannot all come from the AudioCaps test split (at most 975
clips): users who add validation clips point ``audiocaps_source`` to a folder holding them.
Pairs may cross datasets. Windows are 10 s. Queries: a caption for AudioCaps and Clotho
clips, labels for FSD50K clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from hsm_bench.errors import BuildError, ConfigError
from testsets.audiocaps import AudioCapsBuilder
from testsets.clotho import ClothoBuilder
from testsets.fsd50k import FSD50KBuilder
from testsets.ontology import Ontology
from testsets.pools import REPORT_LISTS, PairBuilder, PoolClip, ScanReport

PARTS = {"audiocaps": AudioCapsBuilder, "clotho": ClothoBuilder, "fsd50k": FSD50KBuilder}


class ThreeSetsBuilder(PairBuilder):
    name: ClassVar[str] = "three_sets"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 1000
    window_rule: ClassVar[str] = "fixed"

    def source_roots(self) -> dict[str, Path]:
        roots = {}
        for part in PARTS:
            given = self.params.get(f"{part}_source")
            roots[part] = Path(given).expanduser() if given else self._require_source() / part
        return roots

    def _part(self, part: str) -> PairBuilder:
        params = {k: v for k, v in self.params.items() if k == "min_duration_s" and part == "fsd50k"}
        if part == "audiocaps" and self.params.get("segments_csv"):
            params["segments_csv"] = self.params["segments_csv"]
        return PARTS[part](n_items=1, seed=self.seed, source=str(self.source_roots()[part]),
                           ontology=self.ontology_path, **params)  # fmt: skip

    def _check_parts(self) -> None:
        """One BuildError naming every missing part, before any part is scanned (scans are long)."""
        missing = [f"{part} at {root}" for part, root in self.source_roots().items() if not root.is_dir()]
        if missing:
            raise BuildError(
                f"three_sets needs all three datasets, each in its own layout; no folder for {'; '.join(missing)} "
                f"(put them under --source as {'/, '.join(PARTS)}/ or give --set PART_source=DIR)"
            )

    def scan(self, ontology: Ontology) -> tuple[list[PoolClip], ScanReport]:
        try:
            per_pool = int(self.params.get("per_pool", 1333))
        except (TypeError, ValueError):
            raise ConfigError(f"--set per_pool={self.params.get('per_pool')!r}: expected a whole number of clips") from None
        rng = np.random.default_rng([self.seed, 1])
        pool, report, self._composition = [], ScanReport(), {}
        self._check_parts()
        for part in PARTS:
            clips, rep = self._part(part).scan(ontology)
            take = sorted(rng.choice(len(clips), size=min(per_pool, len(clips)), replace=False).tolist()) if clips else []
            pool += [clips[k] for k in take]
            self._composition[part] = {"usable": len(clips), "drawn": len(take)}
            report.found += rep.found
            for key in REPORT_LISTS:
                getattr(report, key).extend(f"{part}: {x}" for x in getattr(rep, key))
        return pool, report

    def sources_card(self) -> dict:
        return {
            "dataset": "AudioCaps test + Clotho v2 evaluation + FSD50K eval",
            "per_pool": int(self.params.get("per_pool", 1333)),
            "composition": getattr(self, "_composition", {}),
            "licence": "see the audiocaps, clotho and fsd50k cards",
        }
