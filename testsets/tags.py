"""Caption -> AudioSet class tagger (deterministic, offline).

Used where a dataset has captions but no class labels (Clotho, AudioCaps without AudioSet
segment labels). A caption is lower-cased, split into words and crudely stemmed
("barking", "barks" -> "bark"; "cries" -> "cry"); every ontology node name and each of its
comma-separated synonyms ("Walk, footsteps" -> "walk", "footsteps") is stemmed the same way;
a node is tagged when one of its phrases occurs as consecutive words of the caption. A short
table (:data:`EXTRA_PHRASES`) adds everyday words the ontology names do not contain ("dog"
is a node, "dogs bark" matches; "man speaks" needs the table). Nodes under "Channel,
environment and background" describe recordings, not sources, and are not tagged.

Limits, stated plainly: no word-sense disambiguation ("a train of thought" tags Train), no
negation, and paraphrases outside the names and the table are missed. The paper used GPT-4
tags; this is the reproducible offline substitute, versioned by :data:`TAGGER_VERSION` and
recorded in every card. A text-embedding matcher is not bundled: asking for one raises.
"""

from __future__ import annotations

import re
from functools import lru_cache

from testsets.ontology import Ontology

TAGGER_VERSION = "1"

EXTRA_PHRASES: dict[str, str] = {
    "speak": "Speech", "talk": "Speech", "say": "Speech", "voice": "Speech", "narrat": "Narration, monologue",
    "man speak": "Male speech, man speaking", "man talk": "Male speech, man speaking",
    "woman speak": "Female speech, woman speaking", "woman talk": "Female speech, woman speaking",
    "people talk": "Conversation", "crowd": "Crowd", "laugh": "Laughter", "giggle": "Giggle",
    "baby cry": "Baby cry, infant cry", "cry": "Crying, sobbing", "sing": "Singing", "whistl": "Whistling",
    "clap": "Clapping", "applaus": "Applause", "footstep": "Walk, footsteps", "step": "Walk, footsteps",
    "cough": "Cough", "sneez": "Sneeze", "snor": "Snoring", "breath": "Breathing",
    "dog": "Dog", "bark": "Bark", "cat": "Cat", "meow": "Meow", "bird": "Bird", "chirp": "Chirp, tweet",
    "tweet": "Chirp, tweet", "rooster": "Chicken, rooster", "crow": "Crowing, cock-a-doodle-doo",
    "duck": "Duck", "quack": "Quack", "cow": "Cattle, bovinae", "moo": "Moo", "sheep": "Sheep",
    "bleat": "Bleat", "pig": "Pig", "oink": "Oink", "horse": "Horse", "neigh": "Neigh, whinny",
    "frog": "Frog", "croak": "Croak", "owl": "Owl", "hoot": "Hoot", "insect": "Insect", "bee": "Bee, wasp, etc.",
    "buzz": "Buzz", "car": "Car", "truck": "Truck", "bus": "Bus", "motorcycl": "Motorcycle", "train": "Train",
    "plane": "Aircraft", "airplan": "Aircraft", "jet": "Aircraft", "helicopter": "Helicopter", "boat": "Boat, Water vehicle",
    "engin": "Engine", "motor": "Engine", "horn": "Vehicle horn, car horn, honking", "siren": "Siren",
    "rain": "Rain", "thunder": "Thunder", "wind": "Wind", "water": "Water", "stream": "Stream", "wave": "Waves, surf",
    "fire": "Fire", "crackl": "Crackle", "gunshot": "Gunshot, gunfire", "gun": "Gunshot, gunfire",
    "explos": "Explosion", "hammer": "Hammer", "drill": "Drill", "saw": "Sawing", "vacuum": "Vacuum cleaner",
    "door": "Door", "knock": "Knock", "bell": "Bell", "clock": "Clock", "tick": "Tick", "typ": "Typing",
    "keyboard": "Computer keyboard", "phone": "Telephone", "ring": "Ringtone", "alarm": "Alarm",
    "beep": "Beep, bleep", "music": "Music", "guitar": "Guitar", "piano": "Piano", "drum": "Drum",
    "violin": "Violin, fiddle", "flute": "Flute", "trumpet": "Trumpet", "spray": "Spray", "splash": "Splash, splatter",
    "pour": "Pour", "drip": "Drip", "toilet": "Toilet flush", "sink": "Sink (filling or washing)",
    "faucet": "Water tap, faucet", "tap": "Water tap, faucet", "chew": "Chewing, mastication",
    "rustl": "Rustle", "scrap": "Scrape", "squeak": "Squeak", "click": "Clicking",
}  # fmt: skip

# node synonyms that are mostly other senses in captions ("a machine running", "flies by")
IGNORED_PHRASES = {("run",), ("fly",)}

_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A crude, deterministic English stemmer (enough to align captions and class names)."""
    w = word.lower()
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ying", "y")):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            return w[: -len(suffix)] + repl
    for suffix in ("ings", "ing", "ers", "er", "ed", "es", "s", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) >= 3 and w[-1] == w[-2] and w[-1] not in "lsz":  # running -> run
                w = w[:-1]
            return w
    return w


def words(text: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in _WORD.findall(text.lower()))


class CaptionTagger:
    def __init__(self, ontology: Ontology):
        self.ontology = ontology
        excluded = {m for m in ontology.nodes if ontology.mid("Channel, environment and background") in ontology.ancestors(m)}
        excluded.add(ontology.mid("Channel, environment and background"))
        self.phrases: dict[tuple[str, ...], set[str]] = {}
        for mid, name in ontology.names.items():
            if mid in excluded or "blacklist" in ontology.nodes[mid].get("restrictions", []):
                continue
            for synonym in name.split(","):
                key = words(synonym)
                if key and not (len(key) == 1 and len(key[0]) < 3):
                    self.phrases.setdefault(key, set()).add(mid)
        for phrase, node in EXTRA_PHRASES.items():
            self.phrases.setdefault(tuple(stem(w) for w in phrase.split()), set()).add(ontology.mid(node))
        for key in IGNORED_PHRASES:
            self.phrases.pop(key, None)
        self.max_len = max(len(k) for k in self.phrases)

    def tag(self, text: str) -> set[str]:
        w = words(text)
        found: set[str] = set()
        for n in range(1, self.max_len + 1):
            for i in range(len(w) - n + 1):
                found |= self.phrases.get(w[i : i + n], set())
        return found

    def tag_all(self, captions: list[str]) -> set[str]:
        out: set[str] = set()
        for c in captions:
            out |= self.tag(c)
        return out


@lru_cache(maxsize=4)
def tagger_for(ontology_path: str | None = None) -> CaptionTagger:
    from testsets.ontology import load

    return CaptionTagger(load(ontology_path))


def embedding_matcher(*_args, **_kwargs):
    raise NotImplementedError(
        "the text-embedding class matcher needs a sentence-embedding model that hsm-bench does not "
        "bundle; use the deterministic caption tagger (the default) or provide class labels "
        "(AudioSet segment CSV for AudioCaps)"
    )
