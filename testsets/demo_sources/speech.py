"""Speech from espeak-ng, loaded from the ``espeakng-loader`` wheel and driven through ctypes.

The library is initialised once per process in synchronous mode; synthesised int16 chunks
arrive through a callback and are concatenated.

espeak-ng is not a pure function of (text, voice): the synthesiser keeps state from one
utterance to the next, and voice variants with "breath", "flutter" or "roughness" add noise
that differs from run to run. So the demo uses only variants without them, and
:func:`synthesize_batch` runs a whole list of utterances in a fresh subprocess: the same
list gives the same bytes every time.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_AUTO = 0
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_state: dict = {}


def _library():
    """(lib, sample_rate), initialising espeak-ng on first use."""
    if "lib" in _state:
        return _state["lib"], _state["rate"]
    try:
        import espeakng_loader
    except ImportError as exc:
        raise RuntimeError("speech for the demo set needs the `espeakng-loader` package (pip install espeakng-loader)") from exc
    try:
        lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
    except OSError as exc:
        raise RuntimeError(f"cannot load espeak-ng from espeakng-loader: {exc}") from exc
    data = str(espeakng_loader.get_data_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    # espeak wants the folder that *contains* espeak-ng-data, or the data folder itself
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
    if rate <= 0:
        raise RuntimeError(f"espeak-ng failed to initialise with data at {data}")
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]  # fmt: skip
    buffer: list[np.ndarray] = []

    def collect(wav, n, events):
        if n > 0 and wav:
            buffer.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    cb = _SYNTH_CALLBACK(collect)
    lib.espeak_SetSynthCallback(cb)
    _state.update(lib=lib, rate=rate, buffer=buffer, callback=cb)
    return lib, rate


def synthesize(text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """float32 mono speech for ``text`` and its sample rate (22050 Hz for espeak-ng)."""
    with _lock:
        lib, rate = _library()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        buf: list[np.ndarray] = _state["buffer"]
        buf.clear()
        data = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_AUTO, None, None)
        lib.espeak_Synchronize()
        if err != 0 or not buf:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r} (error {err})")
        audio = np.concatenate(buf).astype(np.float32) / 32768.0
    return audio, rate


def synthesize_batch(requests: list[tuple[str, str]]) -> tuple[list[np.ndarray], int]:
    """Speech for each (text, voice), synthesised in order in a fresh process (deterministic)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.npz"
        proc = subprocess.run(
            [sys.executable, "-m", "testsets.demo_sources.speech", str(out)],
            input=json.dumps(requests), capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"speech synthesis failed: {proc.stderr.strip().splitlines()[-1:]}")
        with np.load(out) as data:
            return [data[f"a{k}"] for k in range(len(requests))], int(data["rate"])


if __name__ == "__main__":  # the worker of synthesize_batch
    reqs = json.loads(sys.stdin.read())
    arrays = {}
    rate = 0
    for k, (text, voice) in enumerate(reqs):
        arrays[f"a{k}"], rate = synthesize(text, voice)
    np.savez(sys.argv[1], rate=rate, **arrays)
