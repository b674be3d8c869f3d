"""The AudioSet ontology: names, ancestor closure and the "no shared sound class" rule.

Two sources share a class when their label sets, closed under ancestors, intersect outside
a stop-list of generic grouping nodes. Without the stop-list every pair of animal sounds
would share "Animal" and every pair of instruments "Music", and the rule could not be met;
with it, "Bark" and "Meow" may be mixed, while two "Dog" clips (or "Bark" and "Dog") may not.

Stop-list (:data:`STOP_LIST`): the seven roots; their children that the ontology marks
abstract or blacklisted (pure groupings such as "Human voice", "Music genre", "Onomatopoeia");
and the broad groups "Domestic animals, pets", "Livestock, farm animals, working animals",
"Wild animals", "Musical instrument", "Vehicle", "Mechanisms" and "Tools", whose members
are clearly different sound sources. Builders may extend it (MUSIC adds the instrument
families so that only the instrument itself decides).

The ontology shipped in ``testsets/data`` is read by default; ``--ontology PATH`` (or
``hsm-bench download-metadata``) gives another copy in the official format.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from hsm_bench.errors import BuildError

DATA = Path(__file__).parent / "data"
DEFAULT_PATH = DATA / "audioset_ontology.min.json"

BROAD_GROUPS = (
    "Domestic animals, pets", "Livestock, farm animals, working animals", "Wild animals",
    "Musical instrument", "Vehicle", "Mechanisms", "Tools",
)  # fmt: skip


class OntologyError(BuildError, ValueError):
    """A missing or malformed ontology file, or a name that is not one of its nodes."""


class Ontology:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else DEFAULT_PATH
        if not self.path.is_file():
            raise OntologyError(
                f"AudioSet ontology not found at {self.path}; run `hsm-bench download-metadata` on a "
                "connected machine or pass --ontology PATH to a copy of ontology.json"
            )
        try:
            nodes = json.loads(self.path.read_text(encoding="utf-8"))
            self.nodes = {n["id"]: n for n in nodes}
            self.names = {mid: n["name"] for mid, n in self.nodes.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise OntologyError(f"{self.path} is not an AudioSet ontology.json: {exc}") from exc
        self.parents: dict[str, set[str]] = {mid: set() for mid in self.nodes}
        for mid, node in self.nodes.items():
            for child in node.get("child_ids", []):
                self.parents.setdefault(child, set()).add(mid)
        self.by_name = {n["name"].lower(): mid for mid, n in self.nodes.items()}
        self.stop_list = frozenset(self._default_stop_list())

    def _default_stop_list(self) -> set[str]:
        roots = {mid for mid, ps in self.parents.items() if not ps}
        stop = set(roots)
        for r in roots:
            for c in self.nodes[r].get("child_ids", []):
                if self.nodes[c].get("restrictions"):
                    stop.add(c)
        stop |= {self.mid(name) for name in BROAD_GROUPS}
        return stop

    def mid(self, name_or_mid: str) -> str:
        """The mid of a node given its mid, its name, or an FSD50K-style label (underscores)."""
        if name_or_mid in self.nodes:
            return name_or_mid
        key = name_or_mid.replace("_", " ").lower().strip()
        if key in self.by_name:
            return self.by_name[key]
        # FSD50K writes "Accelerating_and_revving_and_vroom" for "Accelerating, revving, vroom"
        squashed = {self._squash(n): m for n, m in self.by_name.items()}
        if self._squash(key) in squashed:
            return squashed[self._squash(key)]
        raise OntologyError(f"{name_or_mid!r} is not an AudioSet ontology node")

    @staticmethod
    def _squash(name: str) -> str:
        return "".join(ch for ch in name.replace(" and ", " ") if ch.isalnum())

    def name(self, mid: str) -> str:
        return self.names[mid]

    @lru_cache(maxsize=None)
    def ancestors(self, mid: str) -> frozenset[str]:
        out: set[str] = set()
        for p in self.parents.get(mid, ()):
            out.add(p)
            out |= self.ancestors(p)
        return frozenset(out)

    def closed(self, mids, extra_stop: frozenset[str] = frozenset()) -> frozenset[str]:
        """Labels plus all their ancestors, minus the stop-list."""
        out: set[str] = set()
        for m in mids:
            out.add(m)
            out |= self.ancestors(m)
        return frozenset(out - self.stop_list - extra_stop)

    def disjoint(self, a, b, extra_stop: frozenset[str] = frozenset()) -> bool:
        return not (self.closed(a, extra_stop) & self.closed(b, extra_stop))

    def most_specific(self, mids) -> list[str]:
        """The labels that are not ancestors of other labels in the set (for label queries)."""
        mids = list(dict.fromkeys(mids))
        covered = set().union(*(self.ancestors(m) for m in mids)) if mids else set()
        return [m for m in mids if m not in covered]


@lru_cache(maxsize=4)
def load(path: str | None = None) -> Ontology:
    return Ontology(path)
