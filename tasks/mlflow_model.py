"""The recogniser as an MLflow pyfunc, logged as *code* (MLflow's models-from-code).

tasks.registry logs this file by path; MLflow copies it into the model's artifacts and runs
it when the model is loaded, so nothing is pickled: `Recognizer.load` reads a state_dict
with `torch.load(weights_only=True)` and a JSON config. Input: a DataFrame with a column
`audio_base64` (a WAV/FLAC/OGG file, base64), decoded and checked by models.audio as the
service does. Output: `transcript` and `confidence`.

The `set_model` call at the bottom is how models-from-code names its model; only MLflow
runs this file (nothing imports it).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

# The pyfunc is for batch scoring of whole recordings, not the voice-search request path
# (which has its own limit in the scope): allow long files.
MAX_DURATION_S = 600.0


class RecognizerPyfunc(PythonModel):
    """A thin pyfunc around models.recognizer.Recognizer."""

    def load_context(self, context: Any) -> None:
        from models.recognizer import Recognizer

        self.recognizer = Recognizer.load(Path(context.artifacts["recognizer"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from models.audio import decode_audio

        waves = [
            decode_audio(base64.b64decode(encoded), MAX_DURATION_S).samples
            for encoded in model_input["audio_base64"]
        ]
        out = self.recognizer.transcribe(waves)
        return pd.DataFrame(
            {"transcript": [t.text for t in out], "confidence": [t.confidence for t in out]}
        )


mlflow.models.set_model(RecognizerPyfunc())
