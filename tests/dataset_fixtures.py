"""Small fixture trees in each dataset's real layout, generated for the tests.

Real metadata where it matters (AudioCaps test.csv rows, AudioSet ontology names and mids,
the MUSIC test list); synthetic audio (seeded tones and noises) at the rates and channel
counts users actually have, plus the usual accidents: odd file names, missing clips, a
stereo 44.1 kHz file, a corrupt file.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

DATA = Path(__file__).parent / "data"


def synth(key: str, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A distinct, non-silent clip per key: a few tones under a noise bed, amplitude-modulated."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = 0.05 * rng.standard_normal(n)
    for f in rng.uniform(100, min(4000, rate / 2.5), size=3):
        x += 0.2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t)
    x = (0.8 * x / np.abs(x).max()).astype(np.float32)
    return np.stack([x, np.roll(x, 7)], axis=1) if channels == 2 else x


def write(path: Path, key: str, seconds: float, rate: int = 44100, channels: int = 1, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth(key, seconds, rate, channels), rate, format=fmt)


def corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(4000))


def make_audiocaps(root: Path, n_clips: int = 24) -> dict:
    """test.csv + audio in mixed namings; returns what was planted."""
    with open(DATA / "audiocaps_test_subset.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clips: dict[str, list[dict]] = {}
    for r in rows:
        clips.setdefault(r["youtube_id"], []).append(r)
    ytids = list(clips)[:n_clips]
    (root / "dataset").mkdir(parents=True)
    with open(root / "dataset" / "test.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writeheader()
        for y in ytids:
            w.writerows(clips[y])
    planted = {"missing": ytids[-1], "corrupt": ytids[-2], "stereo": ytids[0]}
    for k, y in enumerate(ytids[:-1]):
        naming = k % 4
        if naming == 0:
            path = root / "waveforms" / f"Y{y}.wav"
        elif naming == 1:
            path = root / "waveforms" / f"{y}.wav"
        elif naming == 2:
            path = root / "audio_32000Hz" / "test" / f"{y}_{clips[y][0]['start_time']}.flac"
        else:
            path = root / "test" / f"{clips[y][1]['audiocap_id']}.wav"
        if y == planted["corrupt"]:
            corrupt(path)
            planted["corrupt_file"] = path.name
        else:
            rate = 44100 if y == planted["stereo"] else (32000 if naming == 2 else 16000)
            write(path, f"ac/{y}", 10.0 if k % 5 else 9.2, rate, 2 if y == planted["stereo"] else 1)
    return planted


CLOTHO_CAPTIONS = [
    ("Santa Motor.wav", ["A machine whines and squeals while rhythmically punching.", "An engine hums and a machine clanks.",
                         "A motor runs and something squeaks.", "Machinery squeals over a steady engine.", "A mechanical engine hums loudly."]),
    ("09-07-14_2338_Foz, fisherman next to the river.wav", ["Water flows in a river while birds chirp.", "A stream of water runs as birds tweet.",
                         "Birds chirp by a flowing river.", "Water trickles and a bird sings.", "A river flows gently with birds."]),
    ("rain on roof, heavy.wav", ["Heavy rain falls on a roof.", "Rain pours down onto a metal roof.", "Rain drums on the roof.",
                         "It is raining hard outside.", "Raindrops hit a roof steadily."]),
    ("dog barking at night.wav", ["A dog barks repeatedly in the distance.", "Dogs bark at night.", "A dog barking loudly.",
                         "Barking of a dog outside.", "A dog barks several times."]),
    ("people talking, cafe.wav", ["People talk in a busy cafe.", "A crowd of people talk and laugh.", "Men and women talking in a room.",
                         "People speak while dishes clink.", "A man speaks and people talk."]),
    ("church bell ringing.wav", ["A church bell rings slowly.", "Bells ring in a tower.", "A large bell chimes repeatedly.",
                         "The sound of a ringing bell.", "A bell tolls several times."]),
    ("car passing by.wav", ["A car drives past on a road.", "A vehicle passes by quickly.", "A car engine passes.",
                         "Cars pass on a wet street.", "A car goes by."]),
    ("footsteps on gravel.wav", ["Footsteps crunch on gravel.", "Someone walks on gravel.", "A person walks slowly on stones.",
                         "Footsteps on a gravel path.", "Walking on gravel."]),
    ("wind in trees.wav", ["Wind blows through the trees.", "Strong wind rustles leaves.", "The wind howls in the forest.",
                         "Gusts of wind blow.", "Wind blowing hard."]),
    ("typing keyboard.wav", ["Someone types on a keyboard.", "Typing on a computer keyboard.", "Keys clicking as a person types.",
                         "A keyboard is typed on quickly.", "Fast typing sounds."]),
    ("crackling fire.wav", ["A fire crackles.", "Wood burns and crackles in a fire.", "Crackling of a campfire.",
                         "A fireplace crackles.", "Fire crackling steadily."]),
    ("siren in city.wav", ["A siren wails in the city.", "An emergency siren passes.", "Police siren wailing.",
                         "A loud siren sounds.", "Sirens blare on a street."]),
    ("frogs croaking.wav", ["Frogs croak at night.", "Many frogs croaking.", "A chorus of frogs croaks.",
                         "Frogs calling in a pond.", "Croaking frogs."]),
    ("clock ticking.wav", ["A clock ticks steadily.", "Ticking of a clock.", "A mechanical clock ticks.",
                         "The tick of a clock.", "Clock ticking in a quiet room."]),
]  # fmt: skip


def make_clotho(root: Path) -> dict:
    (root / "clotho_csv_files").mkdir(parents=True)
    with open(root / "clotho_csv_files" / "clotho_captions_evaluation.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        for name, caps in CLOTHO_CAPTIONS:
            w.writerow([name, *caps])
    with open(root / "clotho_csv_files" / "clotho_metadata_evaluation.csv", "w", newline="", encoding="iso-8859-1") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license"])
        for k, (name, _) in enumerate(CLOTHO_CAPTIONS):
            lic = "http://creativecommons.org/publicdomain/zero/1.0/" if k % 2 else "http://creativecommons.org/licenses/by/3.0/"
            w.writerow([name, "café;ambiance;bruit", 1000 + k, "", "", "Jürgen", lic])
    planted = {"missing": CLOTHO_CAPTIONS[-1][0], "corrupt": CLOTHO_CAPTIONS[-2][0], "stereo": CLOTHO_CAPTIONS[0][0]}
    for k, (name, _) in enumerate(CLOTHO_CAPTIONS[:-1]):
        path = root / "clotho_audio_files" / "evaluation" / name
        if name == planted["corrupt"]:
            corrupt(path)
        else:
            write(path, f"clotho/{name}", 15.0 + (k * 7) % 16, 44100, 2 if name == planted["stereo"] else 1)
    return planted


FSD_LEAVES = ["Bark", "Meow", "Rain", "Siren", "Church bell", "Typing", "Crackle", "Croak", "Tick-tock", "Car passing by",
              "Walk, footsteps", "Applause", "Whistling", "Drill", "Knock"]  # fmt: skip


def _fsd_name(ontology, mid: str) -> str:
    return ontology.name(mid).replace(", ", "_and_").replace(" ", "_")


def _write_fsd_vocabulary(gt: Path, ontology, mids: list[str]) -> None:
    vocab = sorted({m for leaf in mids for m in (leaf, *ontology.ancestors(leaf))})
    with open(gt / "vocabulary.csv", "w", newline="") as f:  # no header, as the dataset ships it
        csv.writer(f).writerows([k, _fsd_name(ontology, m), m] for k, m in enumerate(vocab))


def make_fsd50k(root: Path, ontology, n_clips: int = 30) -> dict:
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    mids = [ontology.mid(n) for n in FSD_LEAVES]
    _write_fsd_vocabulary(gt, ontology, mids)
    fsd_name = lambda m: _fsd_name(ontology, m)  # noqa: E731
    planted = {"missing": "900029", "corrupt": "900028", "short": "900027", "stereo": "900000"}
    with open(gt / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        for k in range(n_clips):
            leaf = mids[k % len(mids)]
            smeared = [leaf, *sorted(ontology.ancestors(leaf))]
            w.writerow([str(900000 + k), ",".join(fsd_name(m) for m in smeared), ",".join(smeared)])
            path = root / "FSD50K.eval_audio" / f"{900000 + k}.wav"
            if str(900000 + k) == planted["missing"]:
                continue
            if str(900000 + k) == planted["corrupt"]:
                corrupt(path)
                continue
            seconds = 3.0 if str(900000 + k) == planted["short"] else 5.0 + (k * 3) % 12
            write(path, f"fsd/{k}", seconds, 44100, 2 if str(900000 + k) == planted["stereo"] else 1)
    return planted


def make_fsd50k_lopsided(root: Path, ontology, per_class: int = 3) -> dict:
    """An FSD50K eval tree where one clip can never be a target: it is both a dog bark and a
    meow, and every other clip is one or the other. The others pair across the two classes:
    exactly ``2 * per_class**2`` (target, interferer) pairs obey the class rule."""
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    bark, meow = ontology.mid("Bark"), ontology.mid("Meow")
    _write_fsd_vocabulary(gt, ontology, [bark, meow])
    smear = lambda leaves: sorted({m for leaf in leaves for m in (leaf, *ontology.ancestors(leaf))})  # noqa: E731
    clips = {"910000": smear([bark, meow])}
    clips.update({str(910001 + k): smear([bark]) for k in range(per_class)})
    clips.update({str(910001 + per_class + k): smear([meow]) for k in range(per_class)})
    with open(gt / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "mids"])
        for fname, mids in clips.items():
            w.writerow([fname, ",".join(_fsd_name(ontology, m) for m in mids), ",".join(mids)])
            write(root / "FSD50K.eval_audio" / f"{fname}.wav", f"lopsided/{fname}", 5.5, 16000)
    return {"lonely": "910000", "lonely_mids": clips["910000"], "clips": sorted(clips),
            "valid_pairs": 2 * per_class**2}


def make_music(root: Path, n_videos: int = 30) -> dict:
    with open(Path(__file__).parents[1] / "testsets" / "data" / "music_solo_test.csv", newline="") as f:
        videos = [(r["class"], r["youtube_id"]) for r in csv.DictReader(f)]
    present = videos[:n_videos]
    planted = {"missing": [f"{c}/{y}" for c, y in videos[n_videos:]], "stereo": f"{present[0][0]}/{present[0][1]}"}
    for k, (cls, ytid) in enumerate(present):
        stereo = k == 0
        write(root / "audio" / cls / f"{ytid}.wav", f"music/{ytid}", 20.0 + (k % 3) * 6, 44100 if stereo else 16000, 2 if stereo else 1)
    return planted


def make_three_sets(root: Path, ontology) -> None:
    make_audiocaps(root / "audiocaps")
    make_clotho(root / "clotho")
    make_fsd50k(root / "fsd50k", ontology)
