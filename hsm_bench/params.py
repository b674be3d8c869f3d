"""Checking what a user configured before anything runs: parameters against the real
signature of the class that takes them, and the runtime options.

Every problem is a :class:`~hsm_bench.errors.ConfigError` naming the key as the user wrote
it (``system.params.beta``), what is expected, and close matches for misspelt names, so a
typo fails at once instead of deep inside a model or, worse, being ignored.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from hsm_bench.errors import ConfigError


def parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """Named parameters of ``cls.__init__`` and whether it also takes arbitrary keywords.

    A system or metric that keeps the interface's ``__init__(**params)`` takes no parameters:
    the base class only stores what it is given, so a key there would be silently ignored.
    """
    if getattr(cls.__init__, "__module__", "").startswith("hsm_bench.api."):
        return {}, False
    sig = inspect.signature(cls.__init__)
    named = {
        n: p for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }  # fmt: skip
    open_ended = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return named, open_ended


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _kind(default: Any) -> tuple[str, type | tuple[type, ...]] | None:
    """What a value must be, judged from the parameter's default (None: anything)."""
    if isinstance(default, bool):
        return "true or false", bool
    if isinstance(default, int):
        return "an integer", int
    if isinstance(default, float):
        return "a number", (int, float)
    if isinstance(default, str):
        return "a string", str
    return None


def check_params(cls: type, params: dict[str, Any], where: str, owner: str) -> None:
    """Unknown keys (with did-you-mean against the real parameters) and values whose type
    contradicts the parameter's default, e.g. ``system.params.beta=abc`` for a float."""
    named, open_ended = parameters(cls)
    if not open_ended:
        for key in params:
            if key not in named:
                known = ", ".join(named) or "none"
                raise ConfigError(
                    f"{where}.{key}: {owner} has no parameter {key!r}.{did_you_mean(key, list(named))} "
                    f"Its parameters: {known}."
                )
    for key, value in params.items():
        p = named.get(key)
        if p is None or p.default is inspect.Parameter.empty or value is None:
            continue
        expected = _kind(p.default)
        if expected is None:
            continue
        text, types = expected
        ok = isinstance(value, types) and not (isinstance(value, bool) and types in (int, (int, float)))
        if not ok:
            raise ConfigError(f"{where}.{key}={value!r}: {owner} expects {text} (default {p.default!r})")


def check_device(device: Any) -> str:
    """A torch device string this machine can use, or a ConfigError saying what to use instead."""
    import torch

    name = str(device)
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"runtime.device={name!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"runtime.device={name}: this torch ({torch.__version__}) sees no CUDA device; "
                "use runtime.device=cpu, or install a CUDA build of torch on a GPU machine"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device={name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"runtime.device={name}: MPS is not available here; use runtime.device=cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"runtime.device={name}: hsm-bench runs on cpu, cuda or mps")
    return name


def check_positive_int(value: Any, key: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}: expected a positive integer{' or null' if allow_none else ''}")
    return int(value)


def check_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected true or false")
    return value


def check_choice(value: Any, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: choose from {', '.join(choices)}.{did_you_mean(str(value), list(choices))}")
    return value
