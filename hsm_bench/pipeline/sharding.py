"""Which items a shard works on, and whether every shard of a run is done.

``runtime.shard.index=I runtime.shard.count=N`` (``--shard I/N``) gives shard I the items at
positions I, I + N, I + 2N, ... of the manifest: a stable rule (the manifest is hashed into
the run folder's name, so every process of a run sees the same order) that spreads long and
short items evenly. Each shard appends to its own row files (see ``store/runstore.py``); the
shard that finds every item of the test set separated and scored writes ``corpus.json``, once.
"""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from hsm_bench.errors import ConfigError

T = TypeVar("T")


def check_shard(index: Any, count: Any) -> tuple[int, int]:
    for name, v in (("runtime.shard.index", index), ("runtime.shard.count", count)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name}={v!r}: expected an integer")
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"runtime.shard: index {index} of {count} shards; use 0 <= index < count (e.g. --shard 0/4)")
    return int(index), int(count)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as given to ``--shard``."""
    i, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return check_shard(int(i), int(n))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: write INDEX/COUNT, e.g. --shard 0/4") from None


def of_shard(items: Iterable[T], shard: tuple[int, int]) -> list[T]:
    """The items of ``shard`` (index, count), in manifest order."""
    index, count = shard
    return [x for k, x in enumerate(items) if k % count == index]
