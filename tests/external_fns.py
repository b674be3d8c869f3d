"""Callables for the `external` system tests (``system.params.callable=tests.external_fns:NAME``)."""

import numpy as np


def quarter(waveform: np.ndarray, sample_rate: int, instruction: str, task: str) -> np.ndarray:
    assert waveform.dtype == np.float32 and waveform.ndim == 2 and task == "extract"  # removal=subtract
    return 0.25 * waveform
