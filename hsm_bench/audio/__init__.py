"""Audio I/O, the harness's single resampler, and chunking."""

from hsm_bench.audio.io import AudioReadError, read_audio, write_audio
from hsm_bench.audio.resample import resample

__all__ = ["AudioReadError", "read_audio", "write_audio", "resample"]
