"""The offline ``demo`` test set: 200 ten-second mixtures built from sounds PyPI wheels ship.

Sources (:mod:`testsets.demo_sources`): CC0 animal recordings, General MIDI instrument
phrases rendered from the soundfont in ``pretty_midi``, espeak-ng speech and procedural
sounds, each with a class label and several captions.

Recipe (``numpy.random.default_rng(seed)``, one generator, drawn in this order per item):
target source uniformly; interferer uniformly among sources of another class and never
an already used (target, interferer) pair; a 10-s crop offset for each source uniformly
over its length (sources are >= 10 s); SNR uniform in [-15, 15] dB; task "extract" or
"remove" with probability 1/2; the caption (of the target for "extract", of the
interferer for "remove") and the instruction template. Mixing: DCASE 2024 task 9
arithmetic (:mod:`testsets.mixing`). Same seed -> same bytes.

After ``MAX_REDRAWS`` draws without an unused pair, the last target gets a uniform pick
among its unused partners, or is skipped (listed in the card, never a target again) when
it has none. A size larger than the number of distinct pairs fails before any file is
written.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from hsm_bench.errors import BuildError
from testsets.base import CANONICAL_RATE, CARD_LIST_LIMIT, Builder, ItemSpec, TestSetWriter
from testsets.instructions import instruction
from testsets.mixing import crop_or_pad

DURATION_S = 10.0
SNR_RANGE = (-15.0, 15.0)
MAX_REDRAWS = 2000  # per item; far above what a set of the default size ever needs


class DemoBuilder(Builder):
    name: ClassVar[str] = "demo"
    version: ClassVar[str] = "2"  # 2: rows record query_style
    default_n_items: ClassVar[int] = 200

    def build(self, out_dir: Path, progress: bool = True) -> Path:
        from testsets.demo_sources import SOURCES_VERSION, load_demo_sources

        sources = load_demo_sources(CANONICAL_RATE)
        labels = sorted({s.label for s in sources})
        n_pairs = sum(s.label != o.label for s in sources for o in sources)
        if self.n_items > n_pairs:
            raise BuildError(
                f"demo: could make {n_pairs} of {self.n_items} items: the catalogue's {len(sources)} sources in "
                f"{len(labels)} classes form {n_pairs} (target, interferer) pairs of different classes and no pair "
                f"is used twice; build fewer with --n-items {n_pairs}"
            )
        rng = np.random.default_rng(self.seed)
        n = int(DURATION_S * CANONICAL_RATE)
        used: set[tuple[str, str]] = set()
        # same order as ``sources`` so that, until a target is skipped, draws match builds
        # made before skipping existed (same bytes)
        targets = list(sources)
        skipped: list[str] = []
        writer = TestSetWriter(out_dir)
        try:
            for k in tqdm(range(self.n_items), desc="build demo", disable=not progress, unit="item"):
                t, i = draw_pair(sources, targets, used, rng, skipped)
                used.add((t.key, i.key))
                t_off = int(rng.integers(len(t.audio) - n + 1))
                i_off = int(rng.integers(len(i.audio) - n + 1))
                snr = float(rng.uniform(*SNR_RANGE))
                task = "extract" if rng.random() < 0.5 else "remove"
                described = t if task == "extract" else i
                caption = described.captions[int(rng.integers(len(described.captions)))]
                writer.add(
                    ItemSpec(
                        id=f"demo-{k:04d}",
                        task=task,
                        caption=caption,
                        instruction=instruction(task, caption, "caption", rng),
                        target=crop_or_pad(t.audio, n, t_off),
                        interferer=crop_or_pad(i.audio, n, i_off),
                        snr_db=snr,
                        target_captions=list(t.captions),
                        target_labels=[t.label],
                        interferer_labels=[i.label],
                        source={
                            "dataset": "demo",
                            "target": {"key": t.key, "offset": t_off, "origin": t.origin},
                            "interferer": {"key": i.key, "offset": i_off, "origin": i.origin},
                        },
                    )
                )
            card = self.base_card()
            card.update(
                sources={
                    "catalogue": "testsets.demo_sources",
                    "sources_version": SOURCES_VERSION,
                    "n_sources": len(sources),
                    "classes": {lab: sum(s.label == lab for s in sources) for lab in labels},
                    "licences": sorted({s.licence for s in sources}),
                    "skipped": {"count": len(skipped), "items": sorted(skipped)[:CARD_LIST_LIMIT]},
                },
                recipe={
                    "duration_s": DURATION_S,
                    "snr_db": {"distribution": "uniform", "range": list(SNR_RANGE)},
                    "class_rule": "target and interferer have different class labels",
                    "redraws": f"up to {MAX_REDRAWS} per item, then a uniform pick among the last target's unused "
                               "partners, or the target is skipped when it has none",
                    "crop": "uniform offset over the source (sources are >= 10 s)",
                    "mixing": "DCASE 2024 task 9 (whole-window power ratio, peak 0.9 protection)",
                    "tasks": "extract / remove with probability 1/2",
                },
            )
            return writer.finish(card)
        except BaseException:
            writer.abort()
            raise


def draw_pair(sources: list, targets: list, used: set[tuple[str, str]], rng: np.random.Generator,
              skipped: list[str]) -> tuple:  # fmt: skip
    """The next (target, interferer) of the recipe; skips targets whose partners are all used."""
    while targets:
        for _ in range(MAX_REDRAWS):
            t = targets[int(rng.integers(len(targets)))]
            others = [s for s in sources if s.label != t.label]
            i = others[int(rng.integers(len(others)))]
            if (t.key, i.key) not in used:
                return t, i
        free = [s for s in others if (t.key, s.key) not in used]
        if free:
            return t, free[int(rng.integers(len(free)))]
        targets.remove(t)
        skipped.append(f"{t.key}: all {len(others)} sources of another class are already paired with it")
    # unreachable while the size is checked against the number of pairs before building
    raise BuildError("demo: every (target, interferer) pair is used; build fewer items with --n-items")
