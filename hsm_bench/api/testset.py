"""A built test set on disk: ``card.json`` + ``manifest.jsonl`` + ``audio/``.

Builders (``testsets/*``) write this layout; the harness only reads it. The layout and
the row fields are the contract of ``docs/architecture.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hsm_bench.errors import HsmBenchError
from hsm_bench.hashing import sha256_file

TASKS = ("extract", "remove")
REQUIRED_FIELDS = (
    "id", "mixture", "target", "interferer", "task", "caption", "instruction",
    "target_captions", "target_labels", "interferer_labels", "snr_db", "duration_s",
    "sample_rate", "source", "sha256",
)  # fmt: skip


class ManifestError(HsmBenchError, ValueError):
    """A manifest or card that does not follow the contract."""


@dataclass
class ManifestRow:
    id: str
    mixture: str
    target: str
    interferer: str
    task: str
    caption: str
    instruction: str
    target_captions: list[str]
    target_labels: list[str]
    interferer_labels: list[str]
    snr_db: float
    duration_s: float
    sample_rate: int
    source: dict[str, Any]
    sha256: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> "ManifestRow":
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        if missing:
            raise ManifestError(f"{where}: manifest row lacks {', '.join(missing)}")
        if d["task"] not in TASKS:
            raise ManifestError(f"{where}: task must be one of {TASKS}, got {d['task']!r}")
        known = {k: d[k] for k in REQUIRED_FIELDS}
        extra = {k: v for k, v in d.items() if k not in REQUIRED_FIELDS}
        return cls(**known, extra=extra)

    @property
    def query_style(self) -> str:
        """"caption" (a sentence) or "label" (a class name); manifests built before builders
        recorded it hold sentence captions except label-query sets, which must be rebuilt."""
        return str(self.extra.get("query_style", "caption"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


class TestSet:
    """Read access to a built test set folder."""

    __test__ = False  # not a pytest class

    def __init__(self, root: str | Path):
        self.root = Path(root)
        card_path = self.root / "card.json"
        manifest_path = self.root / "manifest.jsonl"
        if not card_path.is_file() or not manifest_path.is_file():
            raise ManifestError(
                f"{self.root} is not a built test set (needs card.json and manifest.jsonl); "
                "build one with `hsm-bench build-testset NAME`"
            )
        self.card: dict[str, Any] = json.loads(card_path.read_text())
        self.manifest_path = manifest_path
        self.manifest_sha256 = sha256_file(manifest_path)
        self._rows: list[ManifestRow] | None = None

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def sample_rate(self) -> int:
        return int(self.card["sample_rate"])

    @property
    def rows(self) -> list[ManifestRow]:
        if self._rows is None:
            rows = []
            with open(self.manifest_path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        rows.append(ManifestRow.from_dict(json.loads(line), f"{self.manifest_path}:{n}"))
            ids = [r.id for r in rows]
            if len(set(ids)) != len(ids):
                raise ManifestError(f"{self.manifest_path}: duplicate item ids")
            self._rows = rows
        return self._rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ManifestRow]:
        return iter(self.rows)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def validate(self, check_audio: bool = True) -> list[str]:
        """Problems found (empty list when the set is intact): card hash, row count, audio hashes."""
        problems = []
        if self.card.get("manifest_sha256") != self.manifest_sha256:
            problems.append(
                f"manifest.jsonl sha256 {self.manifest_sha256[:12]} differs from the card's "
                f"{str(self.card.get('manifest_sha256'))[:12]}"
            )
        try:
            rows = self.rows
        except ManifestError as exc:
            return problems + [str(exc)]
        if self.card.get("n_items") != len(rows):
            problems.append(f"card says {self.card.get('n_items')} items, manifest has {len(rows)}")
        if check_audio:
            for row in rows:
                for role in ("mixture", "target", "interferer"):
                    p = self.path(getattr(row, role))
                    if not p.is_file():
                        problems.append(f"{row.id}: missing {role} file {p}")
                    elif sha256_file(p) != row.sha256.get(role):
                        problems.append(f"{row.id}: {role} file {p.name} does not match its sha256")
        return problems
