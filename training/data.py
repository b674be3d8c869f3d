"""Training examples for HSM-TSS: what a batch holds, a tiny synthetic source, and the loader
that feeds the trainer from it or from the on-the-fly mixtures of :mod:`training.mixtures`.

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
over a pool of :mod:`training.sources` from ``data.params`` (the clip pools of the test-set
builders, mixed with the test-set rules). Either is read by position (:class:`Positions`):
ranks and DataLoader workers take disjoint, fixed parts, and a resumed run continues where the
interrupted one stopped.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, IterableDataset

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
        self.n_samples = round(self.seconds * SAMPLE_RATE)

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


class Positions(IterableDataset):
    """Examples by global position, so that the data a step sees depends only on the step.

    ``source.example(position)`` gives one example. Rank ``rank`` of ``world`` trains on the global
    batches ``g = b * world + rank`` (``b`` = 0, 1, ... its own batch count), each made of the
    positions ``g * batch_size ... + batch_size - 1``; DataLoader worker ``w`` of ``W`` yields that
    rank's batches ``start + w, start + w + W, ...``, which the DataLoader's round-robin over its
    workers puts back in order. ``start`` (batches already trained, from the step count) makes a
    resumed run read exactly what the uninterrupted one would have; the sequence does not depend
    on the number of workers."""

    def __init__(self, source, batch_size: int, rank: int = 0, world: int = 1, start: int = 0):
        super().__init__()
        self.source, self.batch_size, self.rank, self.world, self.start = source, batch_size, rank, world, start

    def __iter__(self):
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        w, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        b = self.start + w
        while True:
            g = b * self.world + self.rank
            for i in range(self.batch_size):
                yield self.source.example(g * self.batch_size + i)
            b += n_workers


class _Cycle:
    """A map-style dataset read by position, round and round."""

    def __init__(self, dataset):
        self.dataset = dataset

    def example(self, position: int) -> dict:
        return self.dataset[position % len(self.dataset)]


class _Worker0:
    """``training.mixtures.MixtureStream`` by position: its worker-0 stream (positions never repeat)."""

    def __init__(self, stream):
        self.stream = stream

    def example(self, position: int) -> dict:
        return self.stream.example(position, 0)


POOLS = ("demo", "folder", "manifest")


def _mixtures(params: dict, seed: int):
    """``(MixtureStream, collate, description)`` from ``data.params``: ``pool`` (demo | folder |
    manifest) with ``pool_args`` for :mod:`training.sources`, ``disjoint_from`` (a built test set
    the pool must not share clips with) and ``force``; other keys go to ``MixtureStream``."""
    from hsm_bench.errors import ConfigError

    try:
        from training import mixtures, sources
    except ImportError:
        raise ConfigError("data.kind=mixtures needs training/mixtures.py, which this install does not have; "
                          "use data.kind=synthetic for a smoke run") from None  # fmt: skip
    params = dict(params)
    pool_kind = params.pop("pool", "demo")
    pool_args = dict(params.pop("pool_args", None) or {})
    disjoint_from, force = params.pop("disjoint_from", None), bool(params.pop("force", False))
    if pool_kind not in POOLS:
        raise ConfigError(f"data.params.pool={pool_kind!r}: one of {', '.join(POOLS)}")
    make = getattr(sources, f"pool_from_{pool_kind}")
    try:
        pool = make(**pool_args)
    except TypeError as exc:
        raise ConfigError(f"data.params.pool_args for pool={pool_kind}: {exc}") from None
    shared = sources.check_disjoint(pool, disjoint_from, force=force) if disjoint_from else []
    try:
        stream = mixtures.MixtureStream(pool, **{"seed": seed, **params})
    except TypeError as exc:
        raise ConfigError(f"data.params for data.kind=mixtures: {exc}") from None
    info = {"kind": "mixtures", "pool": pool_kind, "pool_args": pool_args, "n_clips": len(pool),
            "disjoint_from": disjoint_from, "shared_with_testset": len(shared), **params,
            "seed": int(stream.seed)}  # fmt: skip
    return _Worker0(stream), mixtures.collate, info


def build_source(kind: str, params: dict, seed: int = 0):
    """``(source with .example(position), collate_fn, description)`` for ``data.kind``/``data.params``."""
    from hsm_bench.errors import ConfigError

    params = dict(params or {})
    if kind == "synthetic":
        try:
            ds = SyntheticMixtures(**{"seed": seed, **params})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.params for data.kind=synthetic: {exc} (keys: n_items, seconds, seed)") from None
        return _Cycle(ds), collate, ds.describe()
    if kind == "mixtures":
        return _mixtures(params, seed)
    raise ConfigError(f"data.kind={kind!r}: one of synthetic, mixtures")


def data_module(kind: str, params: dict, seed: int, batch_size: int, num_workers: int = 0):
    """A LightningDataModule whose loader follows the trainer's rank, world size and step
    (:class:`Positions`), and the data's description."""
    import lightning as L
    from torch.utils.data import DataLoader

    source, collate_fn, info = build_source(kind, params, seed)

    class TrainData(L.LightningDataModule):
        def train_dataloader(self):
            t = self.trainer
            start = int(t.global_step) * int(t.accumulate_grad_batches)  # restored before the loader is made
            ds = Positions(source, batch_size, rank=int(t.global_rank), world=int(t.world_size), start=start)
            return DataLoader(ds, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers,
                              persistent_workers=num_workers > 0)  # fmt: skip

    return TrainData(), info
