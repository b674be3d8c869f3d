"""General MIDI instrument phrases rendered from the TimGM6mb soundfont that pretty_midi ships.

Each phrase is a seeded random walk on a pentatonic scale inside the instrument's usual
range, rendered at 32 kHz with :mod:`testsets.demo_sources.sf2` (less aliasing from the
pitch shifting) and brought to 16 kHz with the harness resampler.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from hsm_bench.audio.resample import resample
from testsets.demo_sources.common import RATE, finish, seed_of
from testsets.demo_sources.sf2 import SoundFont

LICENCE = "GPL-2.0 (TimGM6mb soundfont shipped by pretty_midi)"
RENDER_RATE = 32000
PENTATONIC = (0, 2, 4, 7, 9)

# label: (GM program, lowest MIDI key, highest, seconds per beat, captions)
INSTRUMENTS = {
    "accordion": (21, 55, 79, 0.45, ("an accordion plays a folk tune", "accordion music with a melody", "someone playing the accordion")),
    "acoustic guitar": (24, 45, 72, 0.35, ("an acoustic guitar is plucked", "a nylon string guitar plays notes", "solo acoustic guitar melody")),
    "cello": (42, 36, 60, 0.6, ("a cello plays a slow melody", "bowed cello notes", "solo cello in a low register")),
    "clarinet": (71, 52, 76, 0.45, ("a clarinet plays a melody", "woodwind notes from a clarinet", "a clarinet solo")),
    "flute": (73, 65, 89, 0.4, ("a flute plays a light melody", "airy flute notes", "solo flute music")),
    "saxophone": (65, 50, 74, 0.45, ("a saxophone plays a jazzy line", "alto saxophone notes", "a sax solo")),
    "trumpet": (56, 55, 79, 0.4, ("a trumpet plays a bright melody", "brass notes from a trumpet", "a solo trumpet")),
    "violin": (40, 57, 84, 0.45, ("a violin plays a melody", "bowed violin notes", "solo violin music")),
    "xylophone": (13, 65, 89, 0.25, ("a xylophone is struck in a quick pattern", "wooden mallet notes of a xylophone", "xylophone melody")),
    "tuba": (58, 31, 55, 0.6, ("a tuba plays low notes", "deep brass notes from a tuba", "a tuba bass line")),
}


@lru_cache(maxsize=1)
def soundfont() -> SoundFont:
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo set needs `pretty_midi` for its General MIDI soundfont (pip install pretty_midi)")
    path = Path(list(spec.submodule_search_locations)[0]) / "TimGM6mb.sf2"
    if not path.exists():
        raise RuntimeError(f"pretty_midi no longer ships {path.name} at {path}")
    return SoundFont(path)


def phrase(program: int, low: int, high: int, beat: float, rng: np.random.Generator, seconds: float = 10.5) -> np.ndarray:
    scale = [k for k in range(low, high + 1) if (k % 12) in PENTATONIC]
    idx = int(rng.integers(len(scale) // 3, 2 * len(scale) // 3))
    out = np.zeros(int((seconds + 4) * RENDER_RATE))
    t = float(rng.uniform(0.0, 0.3))
    while t < seconds:
        dur = beat * float(rng.choice([1, 1, 2, 0.5, 1.5]))
        note = soundfont().render_note(program, scale[idx], int(rng.integers(70, 120)), dur * 0.95, RENDER_RATE)
        start = int(t * RENDER_RATE)
        seg = note[: len(out) - start]
        out[start : start + len(seg)] += seg
        t += dur
        idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
    return out[: int((seconds + 0.5) * RENDER_RATE)]


def instrument_sources(variants: int = 3) -> list[dict]:
    out = []
    for label, (program, low, high, beat, captions) in INSTRUMENTS.items():
        preset = soundfont().preset(program).name
        for v in range(variants):
            key = f"instrument/{label}/{v}"
            rng = np.random.default_rng(seed_of(key))
            audio = resample(phrase(program, low, high, beat, rng), RENDER_RATE, RATE)
            out.append(
                dict(key=key, label=label, family="instrument", captions=captions,
                     audio=finish(audio, seed_of(key) + 1),
                     origin=f"TimGM6mb.sf2 program {program} ({preset}), melody seed {v}", licence=LICENCE)  # fmt: skip
            )
    return out
