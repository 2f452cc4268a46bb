"""`voicecycle evaluate`: the champion as served, scored on a tiny manifest of real clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.champions import register_champion
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def _manifest(tmp_path: Path) -> Path:
    """A CSV manifest of three spoken clips and one row whose audio is missing."""
    from tasks.synthesis import build_corpus, list_voices

    corpus = build_corpus(tmp_path / "clips", 3, 4, voices=list_voices(4, n=2))
    with (corpus / "manifest.csv").open() as f:
        rows = [
            {"audio_path": r["audio_path"], "transcript": r["transcript"], "speaker": r["voice"]}
            for r in csv.DictReader(f)
        ]
    rows.append({"audio_path": "audio/missing.wav", "transcript": "hello", "speaker": "x"})
    path = corpus / "external.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audio_path", "transcript", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_evaluate_scores_the_champion_on_usable_rows_only(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from flows.evaluate import evaluate
    from models.recognizer import Recognizer
    from tasks.evaluation import wer
    from tasks.inference import read_clip
    from tasks.ingestion import load_dataset

    scope = tiny_scope(tmp_path / "ws")
    folder = tmp_path / "rec"
    register_champion(scope, folder, ["play jazz music", "call mom"])
    manifest = _manifest(tmp_path)
    summary = evaluate(scope, manifest)

    assert summary["n"] == 3 and summary["quarantined"] == 1
    assert "missing.wav" in summary["quarantined_rows"][0]["audio_path"]
    assert summary["model_version"] == "1"
    # the same figures as the champion transcribing the ingested clips itself
    version_dir = scope.state.path("evaluations_dir") / "datasets" / summary["dataset_version"]
    rows = load_dataset(version_dir)
    hyps = Recognizer.load(folder).transcribe(
        [read_clip(version_dir / p) for p in rows["audio_path"]]
    )
    assert summary["wer"] == pytest.approx(
        wer(list(rows["transcript"]), [h.text for h in hyps]), abs=1e-4
    )
    assert 0 <= summary["cer"] <= summary["wer"] + 1
    kinds = {s["slice"] for s in summary["slices"]}
    assert {"voice", "duration_bucket", "source"} <= kinds
    report = Path(summary["report"])
    assert report.is_file() and "Quarantined rows" in report.read_text()
    saved = json.loads((report.parent / "summary.json").read_text())
    assert saved["wer"] == summary["wer"]
    # the training datasets (read by the simulator and retraining) are untouched
    assert not scope.state.path("datasets_dir").exists()
    # a scored evaluation logs no error (Prefect once failed to hash the loaded champion)
    logged = "".join(capfd.readouterr())
    assert "Traceback" not in logged and "ERROR" not in logged


def test_evaluate_command_names_a_missing_manifest(tmp_path: Path) -> None:
    from flows.cli import main

    code = main(
        ["evaluate", "--manifest", str(tmp_path / "nope.csv"), "--workspace", str(tmp_path)]
    )
    assert code == 2


def test_a_manifest_with_no_usable_row_is_an_expected_failure_naming_the_row(
    tmp_path: Path,
) -> None:
    """`voicecycle evaluate` exits 1 with one message (no traceback) naming the row at fault
    and the option that fixes it."""
    from flows.cli.failures import expected_exit
    from flows.evaluate import evaluate
    from tasks.evaluation.external import NothingToScore

    scope = tiny_scope(tmp_path / "ws")
    register_champion(scope, tmp_path / "rec", ["play jazz music", "call mom"])
    clips = _manifest(tmp_path).parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    manifest = outside / "external.csv"  # its data root is its folder: the clip lies outside
    wav = next((clips / "audio").glob("*.wav"))
    manifest.write_text(f"audio_path,transcript\n{wav},play jazz music\n")

    with pytest.raises(NothingToScore) as raised:
        evaluate(scope, manifest)

    message = str(raised.value)
    assert "no row of the manifest can be scored (1 quarantined)" in message
    assert "row 0: audio path" in message and "outside the data root" in message
    assert "voicecycle evaluate" in message and "--data-root" in message
    assert expected_exit(raised.value) == 1
    # with the data root given, the same row is scored
    summary = evaluate(scope, manifest, data_root=clips)
    assert summary["n"] == 1 and summary["quarantined"] == 0
