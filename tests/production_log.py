"""A hand-built production prediction log for the labelling tests: `n` consented requests
(but the fourth), each with a short silent clip on disk, as the service's log reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

CONFIDENCES = (0.9, 0.2, 0.5, 0.7, 0.1)  # request i has CONFIDENCES[i % 5]


def production_log(folder: Path, n: int) -> pd.DataFrame:
    """Rows r0..r<n-1>: transcript "play jazz <i>", model version "3", r3 without consent;
    their audio under <folder>/prediction_audio."""
    audio = folder / "prediction_audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = audio / f"r{i}.wav"
        sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
        rows.append(
            {
                "request_id": f"r{i}",
                "ts": datetime.now(UTC),
                "model_version": "3",
                "transcript": f"play jazz {i}",
                "confidence": CONFIDENCES[i % 5],
                "consent": i != 3,
                "audio_path": str(path),
            }
        )
    return pd.DataFrame(rows)
