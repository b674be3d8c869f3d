"""Synthetic English speech: espeak-ng voices reading short sentences."""

from __future__ import annotations

import numpy as np

from hsm_bench.audio.resample import resample
from testsets.demo_sources.common import RATE, finish, seed_of
from testsets.demo_sources.speech import synthesize_batch

LICENCE = "GPL-3.0-or-later (espeak-ng via espeakng-loader); text written for hsm-bench"

SENTENCES = (
    "The train to the city leaves from platform four in ten minutes.",
    "Please remember to water the plants on the balcony before you go.",
    "We measured the signal twice and the numbers agreed to the last digit.",
    "A small boat drifted slowly across the quiet lake at dawn.",
    "Turn left after the bakery and walk until you see the old clock tower.",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    "Fresh bread, cheese and apples were laid out on the wooden table.",
    "If the light turns red, wait for the signal before crossing the road.",
)

VOICES = (
    ("en-us", ("a man speaks in a synthetic voice", "a robotic male voice reads sentences", "computer generated speech")),
    ("en+f4", ("a woman speaks in a synthetic voice", "a robotic female voice reads aloud", "synthesised female speech")),
    ("en+m3", ("a man talks in a flat synthetic voice", "text to speech of a male voice", "a computer voice speaking")),
    # variants with breath/flutter/roughness are not deterministic (see speech.py)
    ("en+Annie", ("a synthetic female voice speaks", "a woman's computer voice reading text", "robotic speech by a woman")),
)


def speech_sources(per_voice: int = 2) -> list[dict]:
    # every sentence in every voice once, in one deterministic synthesis run
    requests = [(text, voice) for voice, _ in VOICES for text in SENTENCES]
    audio, rate = synthesize_batch(requests)
    spoken = dict(zip(requests, audio))
    out = []
    for voice, captions in VOICES:
        for k in range(per_voice):
            key = f"speech/{voice}/{k}"
            rng = np.random.default_rng(seed_of(key))
            order = rng.permutation(len(SENTENCES))
            parts, total = [], 0.0
            for i in order:
                parts += [spoken[(SENTENCES[i], voice)], np.zeros(int(rng.uniform(0.2, 0.6) * rate), dtype=np.float32)]
                total += (len(parts[-2]) + len(parts[-1])) / rate
                if total > 10.5:
                    break
            speech = resample(np.concatenate(parts), rate, RATE)
            out.append(dict(key=key, label="speech", family="speech", captions=captions,
                            audio=finish(speech, seed_of(key) + 1),
                            origin=f"espeak-ng voice {voice}, sentences {order[:len(parts) // 2].tolist()}",
                            licence=LICENCE))  # fmt: skip
    return out
