"""Ontology closure, the stop-list and the caption tagger, on hand-checked cases."""

from __future__ import annotations

import pytest

from hsm_bench.errors import BuildError
from testsets.ontology import Ontology, OntologyError, load
from testsets.tags import CaptionTagger, embedding_matcher, stem

O = load()


def names(mids):
    return {O.name(m) for m in mids}


def test_closure_and_stop_list():
    assert names(O.closed([O.mid("Bark")])) == {"Bark", "Dog"}  # Animal, pets are generic roots
    assert O.disjoint([O.mid("Bark")], [O.mid("Meow")])
    assert not O.disjoint([O.mid("Bark")], [O.mid("Dog")])
    assert not O.disjoint([O.mid("Violin, fiddle")], [O.mid("Cello")])  # both bowed strings
    assert O.disjoint([O.mid("Violin, fiddle")], [O.mid("Trumpet")])
    assert names(O.stop_list) == STOP_LIST


# the broad groups and the shipped ontology's top two levels (testsets/ontology.py)
STOP_LIST = {
    "Acoustic environment", "Animal", "Channel, environment and background", "Deformable shell", "Digestive",
    "Domestic animals, pets", "Domestic sounds, home sounds", "Generic impact sounds", "Human group actions",
    "Human locomotion", "Human sounds", "Human voice", "Livestock, farm animals, working animals", "Mechanisms",
    "Miscellaneous sources", "Music", "Music genre", "Music mood", "Music role", "Musical concepts",
    "Musical instrument", "Natural sounds", "Onomatopoeia", "Other sourceless", "Otoacoustic emission",
    "Respiratory sounds", "Sound reproduction", "Sounds of things", "Source-ambiguous sounds",
    "Specific impact sounds", "Surface contact", "Tools", "Vehicle", "Wild animals",
}  # fmt: skip


def test_fsd50k_style_names_resolve():
    assert O.name(O.mid("Accelerating_and_revving_and_vroom")) == "Accelerating, revving, vroom"
    assert O.name(O.mid("Walk_and_footsteps")) == "Walk, footsteps"
    with pytest.raises(OntologyError, match="not an AudioSet"):
        O.mid("Definitely not a class")


def test_most_specific_drops_ancestors():
    assert names(O.most_specific([O.mid("Dog"), O.mid("Bark"), O.mid("Animal")])) == {"Bark"}


def test_stemmer():
    assert [stem(w) for w in ("barking", "barks", "bark", "cries", "running", "dogs", "sirens")] == [
        "bark", "bark", "bark", "cry", "run", "dog", "siren",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "caption,expected",
    [
        ("A man speaks as birds chirp and dogs bark",
         {"Male speech, man speaking", "Speech", "Bark", "Dog", "Canidae, dogs, wolves", "Chirp, tweet", "Bird"}),
        ("Thunder and a gentle rain", {"Thunder", "Rain"}),
        ("An emergency siren wailing", {"Siren", "Wail, moan"}),
        ("A machine running smoothly", set()),  # "run" is ignored as too ambiguous
        ("A baby cries loudly", {"Baby cry, infant cry", "Crying, sobbing"}),
    ],
)  # fmt: skip
def test_tagger_cases(caption, expected):
    assert names(CaptionTagger(O).tag(caption)) == expected


def test_missing_ontology_and_no_embedding_matcher(tmp_path):
    with pytest.raises(OntologyError) as err:
        Ontology(tmp_path / "nope.json")
    assert str(err.value) == (
        f"AudioSet ontology not found at {tmp_path / 'nope.json'}; run `hsm-bench download-metadata` on a "
        "connected machine or pass --ontology PATH to a copy of ontology.json"
    )
    assert isinstance(err.value, BuildError)  # reaches the user as one line
    with pytest.raises(NotImplementedError, match="embedding"):
        embedding_matcher()
