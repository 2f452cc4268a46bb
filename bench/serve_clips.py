"""The serving benchmark's model and clips: the workspace's champion (or a random-init
recogniser that runs as a trained one would) and a fixed set of 3-s voice-search WAVs.
bench/serve.py measures with them."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_contracts.scoping import Scope
from models.audio import SAMPLE_RATE

CLIP_SECONDS = 3.0
N_CLIPS = 16
CLIP_SEED = 17
FALLBACK_TEXTS = (
    "weather in paris",
    "what time does the market close",
    "directions to the nearest gas station",
    "play some jazz music",
    "call mom",
)


def champion(scope: Scope, dest: Path) -> tuple[Path, dict[str, Any]] | None:
    """The champion's recogniser folder and lineage, if the workspace's MLflow has one."""
    uri = scope.state.url("mlflow_tracking_uri")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # no tracking store: do not create one just to find it empty
    try:
        from tasks.registry import CHAMPION, alias_version, configure_mlflow, download_recognizer

        configure_mlflow(uri, scope.registry.experiment, scope.state.path("mlflow_artifacts"))
        version = alias_version(scope.registry.model_name, CHAMPION)
        if version is None:
            return None
        folder = download_recognizer(scope.registry.model_name, version, dest)
    except Exception as exc:  # a broken registry: benchmark the random-init model instead
        print(f"serve bench: no usable champion ({exc}); using a random-init model")
        return None
    return folder, {
        "registry_version": version,
        "model_name": scope.registry.model_name,
        "source": f"champion v{version}",
    }


def random_recognizer(dest: Path, texts: Sequence[str], int8: bool) -> tuple[Path, dict[str, Any]]:
    """A random-init recogniser that runs as a trained one would (`int8`: the scope's
    training.int8_inference)."""
    import torch

    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.decoder import BeamDecoder, WordLM
    from models.recognizer import Recognizer

    torch.manual_seed(0)
    decoder = BeamDecoder(WordLM.from_transcripts(texts))
    Recognizer(CTCAcousticModel(AcousticModelConfig()), decoder, int8=int8).save(dest)
    return dest, {"registry_version": "bench", "source": "random-init"}


def _fit(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Centre `audio` in n samples (cut or padded with a faint noise floor)."""
    if audio.size >= n:
        start = (audio.size - n) // 2
        return audio[start : start + n]
    out = (rng.standard_normal(n) * 1e-4).astype(np.float32)
    start = (n - audio.size) // 2
    out[start : start + audio.size] += audio
    return out


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_clips(seed: int, n: int = N_CLIPS) -> tuple[list[bytes], list[str], str]:
    """n 3-s WAVs (16 kHz mono PCM-16), their transcripts, and what they are."""
    rng = np.random.default_rng(seed)
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    try:
        from tasks.simulation import SCENARIOS
        from tasks.simulation import make_clips as traffic_clips
        from tasks.synthesis import list_voices

        clips = traffic_clips(SCENARIOS["stable"], n, list_voices(seed=seed, n=4), seed=seed)
        waves = [sf.read(io.BytesIO(c.wav_bytes), dtype="float32")[0] for c in clips]
        texts = [c.reference for c in clips]
        kind = "synthesised speech"
    except Exception as exc:  # no speech synthesiser here: speech-shaped noise
        print(f"serve bench: speech synthesis unavailable ({exc}); using shaped noise")
        t = np.arange(samples) / SAMPLE_RATE
        envelope = 0.1 * (1 + np.sin(2 * np.pi * 4.0 * t))
        waves = [(rng.standard_normal(samples) * envelope).astype(np.float32) for _ in range(n)]
        texts = list(FALLBACK_TEXTS)
        kind = "speech-shaped noise"
    return [_wav(_fit(w, samples, rng)) for w in waves], texts, kind
