"""The System interface: what a separation model must provide to be benchmarked."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


@dataclass
class SeparationBatch:
    """One batch handed to :meth:`System.separate`.

    ``mixture`` is ``[B, C, T]`` float32 at the system's ``sample_rate``, zero-padded to the
    longest item; ``lengths`` holds each item's valid samples. ``instructions`` is the full
    text instruction (for instruction-following systems such as HSM-TSS); ``caption`` the
    description of the sound to extract or remove and ``query_style`` how it is phrased
    ("caption": a sentence, "label": a class name), for query-based baselines that build
    their own query text. ``target`` and ``interferer`` are set only for systems with
    ``requires_target`` (the oracles). A system whose ``tasks`` lack "remove" only ever
    sees ``task == "extract"``: the harness turns its extraction into the removal.
    """

    item_ids: list[str]
    mixture: torch.Tensor
    lengths: torch.Tensor
    instructions: list[str]
    task: list[str]
    caption: list[str]
    query_style: list[str] = field(default_factory=list)
    target: torch.Tensor | None = None
    interferer: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.query_style:  # batches built by hand (notebooks, benchmarks): sentence captions
            self.query_style = ["caption"] * len(self.item_ids)

    def __len__(self) -> int:
        return len(self.item_ids)


class SeparationError(Exception):
    """An item a system could not separate; its message becomes the item's error reason as is
    (for reasons the system can state, e.g. an external command's exit status and stderr)."""


class System:
    """Base class of every separation system.

    Subclasses set the class attributes, keep ``__init__`` cheap (store parameters only),
    import heavy packages and load weights in :meth:`load`, and return ``[B, C, T]`` audio at
    ``sample_rate`` from :meth:`separate`. The harness resamples in and out, batches,
    pads, trims to the input length, checks the output and writes it.
    """

    name: ClassVar[str] = ""
    sample_rate: ClassVar[int] = 16000
    channels: ClassVar[int] = 1
    max_duration_s: ClassVar[float | None] = None
    requires_target: ClassVar[bool] = False
    # tasks the model performs itself; for an extraction-only model the harness answers a
    # "remove" item with mixture - extraction of the described sound, at the system's rate
    tasks: ClassVar[tuple[str, ...]] = ("extract", "remove")
    needs_user_params: ClassVar[bool] = False  # True: the config's defaults alone cannot build it
    version: ClassVar[str] = "1"  # bump when the system's code changes its output
    weights: ClassVar[tuple[str, ...]] = ()  # hsm_bench.weights names load() resolves

    def __init__(self, **params: Any):
        self.params = dict(params)
        self.device = torch.device("cpu")

    def load(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        raise NotImplementedError

    def take_artifacts(self, item_id: str) -> dict[str, Any]:
        """Per-item files the system made during :meth:`separate` (HSM-TSS's features for the
        report's Figs. 5 and 6), handed over once: ``{path under the run folder's features/:
        numpy array (.npy) or dict of arrays (.npz)}``. The harness writes them beside the
        outputs when the item's output is written, and discards them when the item fails.
        A long item separated window by window asks once, after its last window."""
        return {}

    def required_weights(self) -> list[str]:
        """Weights names this instance needs (checked, all at once, before a run starts)."""
        return list(self.weights)

    def checkpoint_sha256(self) -> str | None:
        """sha256 of the weights in use, or None for systems without weights."""
        return None

    def code_sha1(self) -> str:
        """Hash of the source of the system's module and of every module of the same package it
        uses (a network or STFT split into helper modules): a code change yields a new run."""
        h = hashlib.sha1()
        for module in _own_modules(inspect.getmodule(type(self))):
            try:
                src = inspect.getsource(module)
            except (OSError, TypeError):
                src = module.__name__
            h.update(f"{module.__name__}\n{src}\n".encode())
        return h.hexdigest()[:12]

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "version": self.version,
            "code_sha1": self.code_sha1(),
            "sample_rate": self.sample_rate,
            "remove": "native" if "remove" in self.tasks else "mixture minus extraction (harness)",
            "params": self.params,
            "checkpoint_sha256": self.checkpoint_sha256(),
        }


def _own_modules(root: Any) -> list[Any]:
    """``root`` and the modules of its top-level package that its source imports anywhere (also
    inside functions: systems import their networks lazily in ``load``), transitively, by name."""
    import ast
    import importlib

    if root is None:
        return []
    top = root.__name__.split(".")[0]
    seen: dict[str, Any] = {}
    todo = [root]
    while todo:
        module = todo.pop()
        if module.__name__ in seen:
            continue
        seen[module.__name__] = module
        try:
            tree = ast.parse(inspect.getsource(module))
        except (OSError, TypeError, SyntaxError):
            continue
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        for name in sorted(n for n in names if n.split(".")[0] == top and n not in seen):
            try:
                todo.append(importlib.import_module(name))
            except ImportError:
                continue
    return [seen[n] for n in sorted(seen)]
