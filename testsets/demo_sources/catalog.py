"""The catalogue of demo sources: every family, in a stable order, deterministic bytes.

Families: CC0 animal recordings, General MIDI instrument phrases, espeak-ng speech and
procedural sounds. Every source is mono 16 kHz float32, at least 10 s long, carries a
-60 dBFS noise floor (no digital silence) and peaks at 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testsets.demo_sources.common import RATE

SOURCES_VERSION = "1"


@dataclass(frozen=True)
class DemoSource:
    key: str
    label: str
    family: str
    captions: tuple[str, ...]
    audio: np.ndarray
    origin: str
    licence: str


def load_demo_sources(sample_rate: int = RATE) -> list[DemoSource]:
    if sample_rate != RATE:
        raise ValueError(f"demo sources are made at {RATE} Hz")
    from testsets.demo_sources.animals import animal_sources
    from testsets.demo_sources.instruments import instrument_sources
    from testsets.demo_sources.procedural import procedural_sources
    from testsets.demo_sources.speech_sources import speech_sources

    rows = animal_sources() + instrument_sources() + speech_sources() + procedural_sources()
    return [DemoSource(**{**r, "captions": tuple(r["captions"])}) for r in rows]
