"""The demo set's sound sources: determinism, shape, families, the SF2 renderer's pitch, speech."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from testsets.demo_sources import load_demo_sources
from testsets.demo_sources.instruments import soundfont
from testsets.demo_sources.speech import synthesize, synthesize_batch

HASH_CODE = (
    "import hashlib; from testsets.demo_sources import load_demo_sources as l; "
    "print(hashlib.sha1(b''.join(s.audio.tobytes() for s in l())).hexdigest())"
)


@pytest.fixture(scope="module")
def sources():
    return load_demo_sources()


def _digest(sources) -> str:
    return hashlib.sha1(b"".join(s.audio.tobytes() for s in sources)).hexdigest()


def test_deterministic_within_and_across_processes(sources):
    again = load_demo_sources()
    assert _digest(again) == _digest(sources)
    out = subprocess.run([sys.executable, "-c", HASH_CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(sources)


def test_every_source_is_usable(sources):
    assert len({s.key for s in sources}) == len(sources)
    for s in sources:
        a = s.audio
        assert a.dtype == np.float32 and a.ndim == 1 and len(a) >= 160000, s.key
        assert np.isfinite(a).all() and 0 < np.abs(a).max() <= 0.99, s.key
        edges = np.diff(np.r_[0, (a == 0).astype(np.int8), 0])
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        assert runs.max(initial=0) < 160, f"{s.key} has digital silence"
        assert len(set(s.captions)) >= 2 and all(c.strip() for c in s.captions), s.key
        assert s.licence and s.origin


FAMILIES = {  # family -> (number of sources, its classes), as docs/architecture.md 5a counts them
    "animal": (20, {"cat", "cow", "dog", "duck", "frog", "horse", "owl", "pig", "rooster", "sheep"}),
    "instrument": (30, {"accordion", "acoustic guitar", "cello", "clarinet", "flute", "saxophone", "trumpet", "tuba",
                        "violin", "xylophone"}),
    "speech": (8, {"speech"}),
    "procedural": (18, {"alarm", "clock", "engine", "rain", "siren", "wind"}),
}  # fmt: skip


def test_families_and_classes(sources):
    got = {fam: (sum(s.family == fam for s in sources), {s.label for s in sources if s.family == fam}) for fam in FAMILIES}
    assert got == FAMILIES
    assert len(sources) == 76 and len({s.label for s in sources}) == 27


def test_soundfont_preset_names_come_from_the_file():
    sf = soundfont()
    assert [sf.preset(p).name for p in (40, 73, 42)] == ["Violin", "Flute TB", "Cello"]


def _f0(x: np.ndarray, rate: int) -> float:
    """Harmonic-product-spectrum pitch estimate (independent of the renderer)."""
    seg = x[int(0.1 * rate) : int(0.1 * rate) + 16384] * np.hanning(16384)
    spec = np.abs(np.fft.rfft(seg, 8 * 16384))
    freqs = np.fft.rfftfreq(8 * 16384, 1 / rate)
    n = len(spec) // 3
    hps = spec[:n] * spec[::2][:n] * spec[::3][:n]
    band = (freqs[:n] > 60) & (freqs[:n] < 2000)
    return float(freqs[:n][band][np.argmax(hps[band])])


@pytest.mark.parametrize("program", [73, 40, 42, 24])
@pytest.mark.parametrize("key,hz", [(69, 440.0), (57, 220.0)])
def test_rendered_notes_have_the_right_pitch(program, key, hz):
    note = soundfont().render_note(program, key, 100, 1.2, 32000)
    assert _f0(note, 32000) == pytest.approx(hz, rel=0.02)


def test_speech_is_speech():
    audio, rate = synthesize("Numbers are the product, so check them twice.", "en-us")
    assert len(audio) / rate > 0.5 and np.abs(audio).max() > 0.05
    spec = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    assert spec[freqs < 4000].sum() / spec.sum() > 0.8
    with pytest.raises(RuntimeError, match="no voice"):
        synthesize("hello", "xx-nonexistent")


def test_speech_batches_are_deterministic():
    reqs = [("One two three.", "en+f4"), ("Four five six.", "en+Annie"), ("One two three.", "en-us")]
    a, rate = synthesize_batch(reqs)
    b, _ = synthesize_batch(reqs)
    assert rate == 22050 and all(np.array_equal(x, y) for x, y in zip(a, b))
