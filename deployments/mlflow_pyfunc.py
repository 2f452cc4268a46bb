"""The recogniser as an MLflow pyfunc, logged as *code* (MLflow's models-from-code).

Nothing is pickled: loading runs this file and `Recognizer.load`, which reads a state_dict
with `torch.load(weights_only=True)` and a JSON config. Input: a DataFrame with a column
`audio_base64` (a WAV/FLAC/OGG file, base64). Output: `transcript` and `confidence`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class RecognizerPyfunc(PythonModel):
    """A thin pyfunc around models.recognizer.Recognizer."""

    def load_context(self, context: Any) -> None:
        from pathlib import Path

        from models.recognizer import Recognizer

        self.recognizer = Recognizer.load(Path(context.artifacts["recognizer"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        import soundfile as sf
        from scipy.signal import resample_poly

        from models.features import SAMPLE_RATE

        waves = []
        for encoded in model_input["audio_base64"]:
            audio, sr = sf.read(
                io.BytesIO(base64.b64decode(encoded)), dtype="float32", always_2d=True
            )
            mono = audio.mean(axis=1)
            if sr != SAMPLE_RATE:
                from math import gcd

                g = gcd(sr, SAMPLE_RATE)
                mono = resample_poly(mono, SAMPLE_RATE // g, sr // g).astype(np.float32)
            waves.append(mono)
        out = self.recognizer.transcribe(waves)
        return pd.DataFrame(
            {"transcript": [t.text for t in out], "confidence": [t.confidence for t in out]}
        )


mlflow.models.set_model(RecognizerPyfunc())
