"""Audio in numbers, without torch: the sample rate, one resampler, decoding, audio features.

Everything that turns bytes or foreign-rate audio into the recogniser's 16 kHz mono float32
goes through this module: the service, ingestion, the MLflow pyfunc and the simulator. It
imports no torch, so the request path's decoding and the contracts can use it cheaply.
"""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE = 16000  # the recogniser's input rate; the scope's audio.sample_rate must equal it


def resample(samples: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float audio from ``rate_in`` to ``rate_out`` Hz (soxr, high quality), as float32."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    mono = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or mono.size == 0:
        return mono
    return np.asarray(soxr.resample(mono, rate_in, rate_out, quality="HQ"), dtype=np.float32)
