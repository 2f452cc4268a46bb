"""The MLflow registry for real (SQLite under tmp_path): round trip, gate, promotion, rollback."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from data_contracts.scoping import Targets
from models.ctc import AcousticModelConfig, CTCAcousticModel
from models.decoder import BeamDecoder, WordLM
from models.recognizer import Recognizer

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from tasks.registry import configure_mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_mlflow(uri, "test", tmp_path / "artifacts")
    return uri


def _recognizer(tmp_path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = CTCAcousticModel(AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=1))
    lm = WordLM.from_transcripts(["play jazz", "call mom", "weather in paris"])
    out = tmp_path / f"rec-{seed}"
    Recognizer(model.eval(), BeamDecoder(lm)).save(out)
    return out


def _register(tmp_path: Path, seed: int) -> str:
    import mlflow

    from tasks.registry import register_model

    run = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name("test").experiment_id)
    return register_model.fn(
        run.info.run_id, _recognizer(tmp_path, seed), "asr", {"k": "v"}
    ).version


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 8000, 24000)]


def test_registered_model_transcribes_exactly_like_the_trained_one(
    mlflow_store: str, tmp_path: Path
) -> None:
    import mlflow

    from tasks.registry import download_recognizer

    version = _register(tmp_path, seed=1)
    original = Recognizer.load(tmp_path / "rec-1").transcribe(_clips())
    loaded = Recognizer.load(download_recognizer("asr", version, tmp_path / "dl"))
    assert loaded.transcribe(_clips()) == original

    pyfunc = mlflow.pyfunc.load_model(f"models:/asr/{version}")
    encoded = []
    for clip in _clips():
        buf = io.BytesIO()
        sf.write(buf, clip, 16000, format="WAV", subtype="FLOAT")
        encoded.append(base64.b64encode(buf.getvalue()).decode())
    out = pyfunc.predict(pd.DataFrame({"audio_base64": encoded}))
    assert list(out["transcript"]) == [t.text for t in original]


def _slices(wer_clean: float, wer_car: float) -> pd.DataFrame:
    rows = [
        ("overall", "all", 200, (wer_clean + wer_car) / 2),
        ("condition", "clean", 100, wer_clean),
        ("condition", "car", 100, wer_car),
    ]
    return pd.DataFrame(
        [{"slice": s, "value": v, "n": n, "wer": w, "cer": w / 2} for s, v, n, w in rows]
    )


def test_gate_promotes_better_refuses_worse_and_rollback_restores(
    mlflow_store: str, tmp_path: Path
) -> None:
    from tasks.error_analysis import decide_promotion
    from tasks.registry import CHAMPION, alias_version, promote, rollback

    targets = Targets(wer_clean=0.3, wer_car=0.4, cer_clean=0.3, cer_car=0.3)
    v1 = _register(tmp_path, 1)
    first = decide_promotion.fn(_slices(0.2, 0.3), None, targets, 0.05, bootstrap=False)
    assert first.promote
    promote.fn("asr", v1, " ".join(first.reasons))
    assert alias_version("asr", CHAMPION) == v1

    v2 = _register(tmp_path, 2)  # worse than the champion: refused, champion untouched
    worse = decide_promotion.fn(
        _slices(0.25, 0.38), _slices(0.2, 0.3), targets, 0.05, bootstrap=True
    )
    assert not worse.promote
    assert any("champion" in r for r in worse.reasons)
    assert alias_version("asr", CHAMPION) == v1

    v3 = _register(tmp_path, 3)  # better: promoted
    better = decide_promotion.fn(
        _slices(0.1, 0.2), _slices(0.2, 0.3), targets, 0.05, bootstrap=True
    )
    assert better.promote
    promote.fn("asr", v3, " ".join(better.reasons))
    assert alias_version("asr", CHAMPION) == v3
    assert v2 not in (alias_version("asr", CHAMPION),)

    assert rollback("asr") == (v3, v1)
    assert alias_version("asr", CHAMPION) == v1
    with pytest.raises(RuntimeError, match="no earlier champion"):
        rollback("asr")


def test_bootstrap_makes_a_first_champion_and_says_why(mlflow_store: str) -> None:
    from tasks.error_analysis import decide_promotion

    decision = decide_promotion.fn(_slices(0.9, 0.95), None, Targets(), 0.05, bootstrap=True)
    assert decision.promote
    assert decision.reasons[0].startswith("bootstrap")
    assert any("wer_clean" in r for r in decision.reasons)


def test_a_better_model_replaces_a_champion_that_also_misses_targets() -> None:
    from tasks.error_analysis import decide_promotion

    strict = Targets(wer_clean=0.05, wer_car=0.05, cer_clean=0.05, cer_car=0.05)
    better = decide_promotion.fn(_slices(0.2, 0.3), _slices(0.4, 0.5), strict, 0.05, bootstrap=True)
    assert better.promote and "also misses targets" in better.reasons[0]
    worse = decide_promotion.fn(_slices(0.45, 0.5), _slices(0.4, 0.5), strict, 0.05, bootstrap=True)
    assert not worse.promote
    no_bootstrap = decide_promotion.fn(
        _slices(0.2, 0.3), _slices(0.4, 0.5), strict, 0.05, bootstrap=False
    )
    assert not no_bootstrap.promote
