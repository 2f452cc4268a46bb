"""The train benchmark's learning curve: read from a real MLflow run's metric history, and
what it says limits the model."""

from __future__ import annotations

from pathlib import Path

import mlflow

from bench.learning_curve import curve_figures, gain_last_quarter, limits, plot_curves

FALLING = {"step": [200, 400, 600, 800], "dev_wer_greedy": [0.9, 0.6, 0.5, 0.4]}
FLAT = {"step": [200, 400, 600, 800], "dev_wer_greedy": [0.9, 0.5, 0.41, 0.405]}


def test_the_curve_and_its_limits_come_from_the_run_history(tmp_path: Path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("curve"))
    for step, wer, loss in ((400, 0.6, 1.5), (200, 0.9, 2.5), (600, 0.5, 1.0), (800, 0.4, 0.7)):
        client.log_metric(run.info.run_id, "dev_wer_greedy", wer, step=step)
        client.log_metric(run.info.run_id, "train_loss", loss, step=step)
        client.log_metric(run.info.run_id, "lr", 1e-3, step=step)
    figures = curve_figures(
        client, run.info.run_id, {"train_wer": 0.01, "dev_wer": 0.09}, 0.04, "quality_"
    )
    assert figures["quality_learning_curve"]["step"] == [200, 400, 600, 800]  # sorted by step
    assert figures["quality_learning_curve"]["train_loss"] == [2.5, 1.5, 1.0, 0.7]
    assert figures["quality_dev_wer_greedy_gain_last_quarter"] == 0.2  # 0.5 -> 0.4
    causes = [line.split(":")[0] for line in figures["quality_limits"]]
    assert causes == ["training time", "data", "acoustic model"]
    png = plot_curves(figures, tmp_path / "curves.png")
    assert png is not None and png.stat().st_size > 5000


def test_a_flat_curve_is_not_time_limited_and_a_poor_fit_is_capacity() -> None:
    assert gain_last_quarter(FLAT) == round((0.41 - 0.405) / 0.41, 4)
    found = limits(FLAT, train_wer=0.08, dev_wer=0.1, target_wer=0.04)
    assert [line.split(":")[0] for line in found] == ["capacity", "acoustic model"]
    assert gain_last_quarter({"step": [200], "dev_wer_greedy": [0.5]}) is None
    assert plot_curves({}, Path("unused.png")) is None


def test_the_quality_profile_trains_longer_on_more_varied_data(tmp_path: Path) -> None:
    from bench.train import QUALITY_GENERAL_UTTERANCES, QUALITY_MINUTES, profile_scope
    from data_contracts.scoping import Scope

    scope = Scope()
    default = profile_scope(scope, "default", tmp_path / "d")
    quality = profile_scope(scope, "quality", tmp_path / "q")
    assert default.training == scope.training and default.sources == scope.sources
    assert default.state.workspace == tmp_path / "d"
    assert (
        quality.training.profile == "quality"
        and quality.training.max_minutes == QUALITY_MINUTES == 60.0
    )
    synthetic = [s.synthetic for s in quality.sources if s.synthetic is not None]
    assert [s.general_utterances for s in synthetic] == [QUALITY_GENERAL_UTTERANCES]
