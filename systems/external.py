"""``external``: benchmark a model that has no hsm-bench class, through a Python callable or a
command line.

* Callable: ``system.params.callable=package.module:function``, called per item as
  ``function(waveform, sample_rate, instruction, task)`` with ``waveform`` a float32 numpy
  array ``[C, T]`` at ``system.params.sample_rate``; it returns the separated waveform
  (``[C, T]`` or ``[T]``, numpy or torch).
* Command, per item: ``system.params.command="python my_sep.py {input} {output} {instruction}"``.
  The harness writes the mixture to ``{input}`` (32-bit float WAV at ``sample_rate``) and
  reads ``{output}``. Placeholders: ``{input} {output} {instruction} {task} {caption} {id}
  {sample_rate}``; each is shell-quoted.
* Command, per batch: a template with ``{input_dir}`` (and ``{output_dir}``, ``{manifest}``)
  runs once per batch: ``{input_dir}/<id>.wav`` in, ``{output_dir}/<id>.wav`` out, and
  ``{manifest}`` a JSONL file with one ``{id, input, output, instruction, task, caption}``
  row per item.

A command that exits with a non-zero status, runs longer than ``timeout_s``, or leaves no
readable output is an error of that item, with the tail of its stderr; the harness retries a
failed batch item by item, so one bad item never takes the others down.

The model performs both tasks itself (it receives the instruction and ``task``); with
``removal="subtract"`` it is treated as extraction-only and the harness answers "remove"
items with mixture minus the extraction of the described sound. The run signature covers the
callable's module source or, for a command, the template and the sha1 of every file the
command names (``my_sep.py``), so editing the script starts a new run instead of mixing
outputs of two versions.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from hsm_bench.api.system import SeparationBatch, SeparationError, System
from hsm_bench.errors import ConfigError, SetupError

PER_ITEM_FIELDS = ("input", "output", "instruction", "task", "caption", "id", "sample_rate")
PER_BATCH_FIELDS = ("input_dir", "output_dir", "manifest", "sample_rate")
STDERR_TAIL = 400  # characters of a failed command's stderr kept in the item's error


def _fields(template: str) -> set[str]:
    import string

    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"system.params.command: {exc} (write literal braces as {{{{ and }}}})") from None


class External(System):
    name: ClassVar[str] = "external"
    needs_user_params: ClassVar[bool] = True

    def __init__(self, callable: str | None = None, command: str | None = None, sample_rate: int = 16000,
                 timeout_s: float = 600.0, removal: str = "native"):  # fmt: skip
        super().__init__(callable=callable, command=command, sample_rate=sample_rate, timeout_s=timeout_s,
                         removal=removal)  # fmt: skip
        if (callable is None) == (command is None):
            raise ConfigError(
                "system external needs exactly one of system.params.callable=module:function or "
                '--command "my_sep {input} {output} {instruction}"'
            )
        if removal not in ("native", "subtract"):
            raise ConfigError(f"system.params.removal={removal!r}: choose native or subtract")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ConfigError(f"system.params.sample_rate={sample_rate!r}: the model's rate in Hz, e.g. 16000")
        self.sample_rate = int(sample_rate)  # the harness resamples to and from this rate
        self.tasks = ("extract", "remove") if removal == "native" else ("extract",)
        self.timeout_s = float(timeout_s)
        self.callable_spec, self.command = callable, command
        self._fn: Callable | None = None
        if command is not None:
            used = _fields(command)
            unknown = used - set(PER_ITEM_FIELDS) - set(PER_BATCH_FIELDS)
            if unknown:
                raise ConfigError(f"system.params.command: unknown placeholder(s) {', '.join(sorted(unknown))}; "
                                  f"per item: {', '.join(PER_ITEM_FIELDS)}; per batch: {', '.join(PER_BATCH_FIELDS)}")  # fmt: skip
            self.per_batch = "input_dir" in used
            if self.per_batch and not {"output_dir", "manifest"} & used:
                raise ConfigError("system.params.command: a per-batch command ({input_dir}) needs {output_dir} or {manifest}")
            if not self.per_batch and not {"input", "output"} <= used:
                raise ConfigError("system.params.command: a per-item command needs {input} and {output} "
                                  "(or use {input_dir} {output_dir} for one call per batch)")  # fmt: skip

    # -- provenance ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        info = super().info()
        info["external"] = self._fingerprint()
        return info

    def _fingerprint(self) -> dict[str, Any]:
        if self.callable_spec is not None:
            module = self.callable_spec.partition(":")[0]
            try:
                source = inspect.getsource(importlib.import_module(module))
            except Exception as exc:  # noqa: BLE001 - not importable yet: load() says why
                return {"callable": self.callable_spec, "module_sha1": None, "note": f"not importable: {exc}"}
            return {"callable": self.callable_spec, "module_sha1": hashlib.sha1(source.encode()).hexdigest()[:12]}
        files = {}
        for token in shlex.split(self.command.format(**{f: "" for f in _fields(self.command)})):
            path = Path(token)
            if path.is_file():
                files[token] = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
        return {"command": self.command, "files_sha1": files}

    # -- loading ------------------------------------------------------------------------------------
    def load(self, device: str | torch.device = "cpu") -> None:
        super().load(device)
        if self.callable_spec is None:
            return
        module, _, attr = self.callable_spec.partition(":")
        if not module or not attr:
            raise ConfigError(f"system.params.callable={self.callable_spec!r}: write it as package.module:function")
        try:
            fn: Any = importlib.import_module(module)
            for part in attr.split("."):
                fn = getattr(fn, part)
        except Exception as exc:  # noqa: BLE001 - the user's module
            raise SetupError(f"cannot import system.params.callable={self.callable_spec}: {type(exc).__name__}: {exc}") from None
        if not callable(fn):
            raise SetupError(f"system.params.callable={self.callable_spec} is not callable")
        self._fn = fn

    # -- separation -----------------------------------------------------------------------------------
    def separate(self, batch: SeparationBatch) -> torch.Tensor:
        mix = batch.mixture.detach().cpu().numpy()
        if self._fn is not None:
            outs = [self._call(mix[k, :, : int(batch.lengths[k])], batch, k) for k in range(len(batch))]
        elif self.per_batch:
            outs = self._run_batch(mix, batch)
        else:
            outs = [self._run_item(mix[k, :, : int(batch.lengths[k])], batch, k) for k in range(len(batch))]
        n = max(o.shape[-1] for o in outs)
        out = np.zeros((len(outs), mix.shape[1], n), dtype=np.float32)
        for k, o in enumerate(outs):
            if o.shape[0] != mix.shape[1]:
                raise SeparationError(f"{batch.item_ids[k]}: output has {o.shape[0]} channel(s), input {mix.shape[1]}")
            out[k, :, : o.shape[-1]] = o
        return torch.from_numpy(out)

    def _call(self, wave: np.ndarray, batch: SeparationBatch, k: int) -> np.ndarray:
        result = self._fn(np.ascontiguousarray(wave), self.sample_rate, batch.instructions[k], batch.task[k])
        if isinstance(result, torch.Tensor):
            result = result.detach().cpu().numpy()
        return _as_channels(np.asarray(result, dtype=np.float32), f"{self.callable_spec} returned")

    def _values(self, batch: SeparationBatch, k: int) -> dict[str, str]:
        return {"instruction": batch.instructions[k], "task": batch.task[k], "caption": batch.caption[k],
                "id": batch.item_ids[k], "sample_rate": str(self.sample_rate)}  # fmt: skip

    def _run_item(self, wave: np.ndarray, batch: SeparationBatch, k: int) -> np.ndarray:
        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="hsm-bench-external-") as tmp:
            inp, out = Path(tmp) / "input.wav", Path(tmp) / "output.wav"
            sf.write(inp, wave.T, self.sample_rate, subtype="FLOAT")
            values = {**self._values(batch, k), "input": str(inp), "output": str(out)}
            self._execute(values, batch.item_ids[k])
            return self._read(out, batch.item_ids[k])

    def _run_batch(self, mix: np.ndarray, batch: SeparationBatch) -> list[np.ndarray]:
        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="hsm-bench-external-") as tmp:
            ind, outd = Path(tmp) / "input", Path(tmp) / "output"
            ind.mkdir()
            outd.mkdir()
            manifest = Path(tmp) / "manifest.jsonl"
            with open(manifest, "w", encoding="utf-8") as f:
                for k, item in enumerate(batch.item_ids):
                    sf.write(ind / f"{item}.wav", mix[k, :, : int(batch.lengths[k])].T, self.sample_rate, subtype="FLOAT")
                    row = {**self._values(batch, k), "input": str(ind / f"{item}.wav"), "output": str(outd / f"{item}.wav")}
                    row.pop("sample_rate")
                    f.write(json.dumps(row) + "\n")
            values = {"input_dir": str(ind), "output_dir": str(outd), "manifest": str(manifest),
                      "sample_rate": str(self.sample_rate)}  # fmt: skip
            self._execute(values, ", ".join(batch.item_ids))
            return [self._read(outd / f"{item}.wav", item) for item in batch.item_ids]

    def _execute(self, values: dict[str, str], what: str) -> None:
        line = self.command.format(**{k: shlex.quote(v) for k, v in values.items()})
        try:
            proc = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=self.timeout_s,
                                  env={**os.environ, "HSM_BENCH_SAMPLE_RATE": str(self.sample_rate)})  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SeparationError(f"command timed out after {self.timeout_s:g} s (system.params.timeout_s)") from None
        if proc.returncode != 0:
            raise SeparationError(f"command exited with status {proc.returncode}: {_tail(proc.stderr)}")

    def _read(self, path: Path, item: str) -> np.ndarray:
        import soundfile as sf

        if not path.is_file():
            raise SeparationError(f"the command wrote no output for {item} (expected {path.name})")
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - whatever the command wrote
            raise SeparationError(f"cannot read the command's output for {item}: {exc}") from None
        if rate != self.sample_rate:
            raise SeparationError(f"the output for {item} is {rate} Hz; system.params.sample_rate is {self.sample_rate}")
        return data.T


def _as_channels(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 1:
        return x[None]
    if x.ndim != 2:
        raise SeparationError(f"{what} an array of shape {x.shape}; expected [C, T] or [T]")
    return x


def _tail(stderr: str) -> str:
    text = " ".join((stderr or "").split())
    return ("..." + text[-STDERR_TAIL:]) if len(text) > STDERR_TAIL else (text or "(no stderr)")
