"""Reading and writing audio with soundfile (wav, flac, ogg and mp3 through libsndfile).

All audio inside the harness is float32. Files we write are 32-bit float WAV so that a
system output or a mixture round-trips bit-exactly (no clipping, no requantisation):
scores computed from disk then equal scores computed in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from hsm_bench.audio.resample import resample


# The file types every reader of audio folders accepts (libsndfile decodes them all).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


class AudioReadError(RuntimeError):
    """A file that cannot be decoded, or decodes to something unusable."""


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
    channel: int | None = None,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32.

    Returns ``(audio, rate)``; ``audio`` is ``[T]`` when ``mono`` or a channel is picked,
    else ``[C, T]``. ``mono`` averages channels; ``channel`` picks one (as audioldm-eval's
    loaders do with channel 0). With ``sample_rate`` the audio is resampled with the
    harness resampler.
    """
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types; the reason is what matters
        raise AudioReadError(f"cannot decode {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioReadError(f"{path} holds no samples")
    data = data.T  # [C, T]
    if channel is not None:
        if channel >= data.shape[0]:
            raise AudioReadError(f"{path} has {data.shape[0]} channel(s), channel {channel} requested")
        data = data[channel]
    elif mono:
        data = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    if sample_rate is not None and rate != sample_rate:
        data = resample(data, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write WAV atomically (temporary file + rename), ``audio`` as [T] or [C, T].

    ``FLOAT`` (default, used for system outputs) round-trips float32 exactly; test sets use
    ``PCM_16`` like the datasets they come from, after checking the peak stays below 1.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.T
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), audio, int(sample_rate), subtype=subtype, format="WAV")
    os.replace(tmp, path)
