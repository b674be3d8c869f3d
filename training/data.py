"""Training examples for HSM-TSS: what a batch holds, a tiny synthetic source, and the glue to
the on-the-fly mixtures of :mod:`training.mixtures`.

An example is a dict: ``mixture`` and ``target`` float32 ``[T]`` at 16 kHz, ``task``
("extract" or "remove"), ``caption`` (the description of the queried source) and
``instruction`` (the text a user would type). For "extract" the target is the queried source;
for "remove" it is the mixture without it, so ``mixture - target`` is then the queried source
(the Q-Audio stage uses that to pair audio with its caption). :func:`collate` pads a list of
examples to ``{"mixture" [B, T], "target" [B, T], "lengths" [B], "task", "caption",
"instruction"}``.

:class:`SyntheticMixtures` is a small, deterministic, in-memory set for tests and smoke runs
(harmonic tones and coloured noises named by captions the tiny test T5 knows); it is not
training data for a real model. ``data.kind=mixtures`` builds ``training.mixtures.MixtureStream``
from ``data.params`` (the clip pools of the test-set builders, mixed with the test-set rules).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

SAMPLE_RATE = 16000

# (caption, kind, parameter): tones have a fundamental, noises a spectral colour
SOURCES = (
    ("a bell rings", "tone", 660.0),
    ("piano playing", "tone", 262.0),
    ("birds chirping", "tone", 2400.0),
    ("a dog barking", "tone", 450.0),
    ("rain", "noise", 0.0),
    ("engine noise", "noise", 1.0),
    ("wind", "noise", 0.5),
)


def _source(kind: str, param: float, n: int, g: torch.Generator) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE
    if kind == "tone":
        phase = torch.rand(4, generator=g, dtype=torch.float64) * 2 * math.pi
        x = sum(torch.sin(2 * math.pi * param * k * t + phase[k - 1]) / k for k in range(1, 5))
        x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 1.5 * t))
    else:
        spec = torch.fft.rfft(torch.randn(n, generator=g, dtype=torch.float64))
        f = torch.clamp(torch.fft.rfftfreq(n, 1 / SAMPLE_RATE, dtype=torch.float64), min=20.0)
        x = torch.fft.irfft(spec / f**param, n)
    return (0.3 * x / x.abs().max().clamp(min=1e-9)).float()


class SyntheticMixtures(Dataset):
    """``n_items`` two-source mixtures of ``seconds`` each, drawn from ``seed``; item ``i`` is the
    same whenever and wherever it is read. Tasks alternate extract / remove."""

    def __init__(self, n_items: int = 8, seconds: float = 1.0, seed: int = 0):
        if n_items < 1 or seconds <= 0:
            raise ValueError("n_items must be >= 1 and seconds > 0")
        self.n_items, self.seconds, self.seed = int(n_items), float(seconds), int(seed)
        self.n_samples = int(round(self.seconds * SAMPLE_RATE))

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n_items:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        a, b = torch.randperm(len(SOURCES), generator=g)[:2].tolist()
        query, other = _source(*SOURCES[a][1:], self.n_samples, g), _source(*SOURCES[b][1:], self.n_samples, g)
        mixture = query + other
        task = "extract" if i % 2 == 0 else "remove"
        caption = SOURCES[a][0]
        return {"mixture": mixture, "target": query if task == "extract" else other, "task": task,
                "caption": caption, "instruction": f"{task} {caption}"}  # fmt: skip

    def describe(self) -> dict:
        return {"kind": "synthetic", "n_items": self.n_items, "seconds": self.seconds, "seed": self.seed}


def collate(examples: list[dict]) -> dict:
    """Pad a list of examples (zeros at the end) to a batch with ``lengths``."""
    lengths = torch.tensor([int(e["mixture"].shape[-1]) for e in examples], dtype=torch.long)
    n = int(lengths.max())

    def stack(key):
        out = torch.zeros(len(examples), n, dtype=torch.float32)
        for k, e in enumerate(examples):
            x = torch.as_tensor(e[key], dtype=torch.float32)
            out[k, : x.shape[-1]] = x
        return out

    return {"mixture": stack("mixture"), "target": stack("target"), "lengths": lengths,
            "task": [e["task"] for e in examples], "caption": [e["caption"] for e in examples],
            "instruction": [e.get("instruction", "") for e in examples]}  # fmt: skip


def build_dataset(kind: str, params: dict, seed: int = 0):
    """``(dataset, collate_fn, description)`` for ``data.kind`` and ``data.params``."""
    from hsm_bench.errors import ConfigError

    params = dict(params or {})
    if kind == "synthetic":
        try:
            ds = SyntheticMixtures(**{"seed": seed, **params})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.params for data.kind=synthetic: {exc} (keys: n_items, seconds, seed)") from None
        return ds, collate, ds.describe()
    if kind == "mixtures":
        try:
            from training import mixtures
        except ImportError:
            raise ConfigError("data.kind=mixtures needs training/mixtures.py, which this install does not have; "
                              "use data.kind=synthetic for a smoke run") from None  # fmt: skip
        stream_cls = getattr(mixtures, "MixtureStream", None)
        if stream_cls is None:
            raise ConfigError("training.mixtures has no MixtureStream: update hsm-bench")
        try:
            ds = stream_cls(**{"seed": seed, **params})
        except TypeError as exc:
            raise ConfigError(f"data.params for data.kind=mixtures: {exc}") from None
        fn = getattr(mixtures, "collate", None) or getattr(ds, "collate", None) or collate
        describe = getattr(ds, "describe", None)
        return ds, fn, (describe() if callable(describe) else {"kind": "mixtures", **params, "seed": seed})
    raise ConfigError(f"data.kind={kind!r}: one of synthetic, mixtures")
