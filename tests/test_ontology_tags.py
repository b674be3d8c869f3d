"""Ontology closure, the stop-list and the caption tagger, on hand-checked cases."""

from __future__ import annotations

import pytest

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
    assert {"Animal", "Music", "Sounds of things", "Musical instrument", "Human voice"} <= names(O.stop_list)


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
    "caption,expected,absent",
    [
        ("A man speaks as birds chirp and dogs bark", {"Male speech, man speaking", "Bark", "Chirp, tweet", "Dog"}, {"Meow"}),
        ("Thunder and a gentle rain", {"Thunder", "Rain"}, {"Speech"}),
        ("An emergency siren wailing", {"Siren"}, {"Bark"}),
        ("A machine running smoothly", set(), {"Run"}),  # "run" is ignored as too ambiguous
        ("A baby cries loudly", {"Baby cry, infant cry"}, set()),
    ],
)
def test_tagger_cases(caption, expected, absent):
    got = names(CaptionTagger(O).tag(caption))
    assert expected <= got and not (absent & got), got


def test_missing_ontology_and_no_embedding_matcher(tmp_path):
    with pytest.raises(OntologyError, match="download-metadata"):
        Ontology(tmp_path / "nope.json")
    with pytest.raises(NotImplementedError, match="embedding"):
        embedding_matcher()
