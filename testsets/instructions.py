"""Text instructions given to systems: an operation ("extract" or "remove") plus a description.

Two styles: sentence captions (AudioCaps, Clotho, the demo set) and class labels (FSD50K,
MUSIC). The template is drawn with the builder's generator and recorded in the manifest
(``instruction``), so the exact text a system saw is always known. For "remove" rows the
description is of the interferer, and the reference audio is the sound that remains.
"""

from __future__ import annotations

import numpy as np

TEMPLATES = {
    ("extract", "caption"): (
        "Extract the sound described as: {d}",
        "Keep only this sound: {d}",
        "Separate this sound from the mixture: {d}",
    ),
    ("remove", "caption"): (
        "Remove the sound described as: {d}",
        "Remove this sound: {d}",
        "Take this sound out of the mixture: {d}",
    ),
    ("extract", "label"): (
        "Extract the sound of {d}.",
        "Separate the {d} sound.",
        "Keep only the {d}.",
    ),
    ("remove", "label"): (
        "Remove the sound of {d}.",
        "Remove the {d} sound.",
        "Get rid of the {d}.",
    ),
}


def instruction(task: str, description: str, style: str, rng: np.random.Generator) -> str:
    templates = TEMPLATES[(task, style)]
    d = description.strip()
    if style == "caption":
        d = d.rstrip(".") + "."
    return templates[int(rng.integers(len(templates)))].format(d=d)
