"""Evaluation as pipeline steps: the fixed evaluation rows, error analysis, promotion, reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame
from prefect import task

from data_contracts.evaluation import Predictions, SliceMetrics
from data_contracts.scoping import AugmentationPolicy, Targets
from models.features import SAMPLE_RATE
from tasks.artifacts import publish_markdown, publish_table
from tasks.corpus import GENERAL_INTENT
from tasks.evaluation import (
    ErrorAnalysis,
    analyse,
    recommendations,
    slice_metrics,
    summary_markdown,
    write_html_report,
)
from tasks.gate import GateDecision, promotion_gate, serving_target_notes
from tasks.markdown import markdown_table, png_markdown

GATE_TARGETS = ("wer_clean", "wer_car", "cer_clean", "cer_car")
TRAIN_SAMPLE = 300  # train clips transcribed to measure train error (bias)


def evaluation_rows(manifest: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The fixed test/dev/cross-synth sets plus a seeded sample of train clips (of queries:
    general-English word runs, which no LM can help with, would misread the train error)."""
    held = manifest[manifest["split"] != "train"]
    train = manifest[(manifest["split"] == "train") & (manifest["intent"] != GENERAL_INTENT)]
    sample = train.sample(min(TRAIN_SAMPLE, len(train)), random_state=seed)
    return pd.concat([held, sample], ignore_index=True)


@task(name="error-analysis")
@pa.check_types(lazy=True)
def run_error_analysis(
    predictions: DataFrame[Predictions],
    targets: Targets,
    peer_wer: float | None,
    policy: AugmentationPolicy,
    out_dir: Path,
) -> tuple[ErrorAnalysis, Path]:
    """Slices, diagnosis, confusions and an HTML report; recommendations come from dev, not test.

    Tuning the next round's augmentation on the test set would overfit the very set the
    promotion gate judges on, so the machine-readable recommendations use the dev split.
    """
    analysis = analyse(predictions, targets.wer_clean, peer_wer, policy.tunable())
    dev = predictions[predictions["split"] == "dev"]
    if len(dev):
        analysis.recommendations = recommendations(
            slice_metrics(predictions, split="dev"), analysis.diagnosis, policy.tunable()
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    html = write_html_report(analysis, out_dir)
    analysis.slices.to_csv(out_dir / "slices.csv", index=False)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    (out_dir / "recommendations.json").write_text(
        json.dumps(analysis.recommendations, indent=2, default=str)
    )
    return analysis, html


@task(name="promotion-gate")
def decide_promotion(
    challenger: DataFrame[SliceMetrics],
    champion: DataFrame[SliceMetrics] | None,
    targets: Targets,
    slice_tolerance: float,
    bootstrap: bool,
    min_slice_n: int = 20,
) -> GateDecision:
    """The gate: targets met and no regression vs the champion on the same fixed test set.

    With `bootstrap` on, missing targets alone does not block a model when there is no
    champion (something must serve) or when the champion misses them too and the challenger
    is no worse than it anywhere; the reasons say so plainly. The decision's notes say where
    the scope's serving targets (latency, throughput) are checked: not here.
    """
    notes = serving_target_notes(targets)
    wanted = {k: getattr(targets, k) for k in GATE_TARGETS}
    decision = promotion_gate(
        challenger, champion, wanted, slice_tolerance, min_slice_n=min_slice_n
    )
    if decision.promote or not bootstrap:
        return dataclasses.replace(decision, notes=notes)
    if champion is None:
        return GateDecision(
            True,
            (
                "bootstrap: no champion existed, so the first model serves "
                "although it misses targets:",
                *decision.reasons,
            ),
            notes,
        )
    # A champion that misses the targets itself should not block a strictly better model.
    champion_on_targets = promotion_gate(
        champion, None, wanted, slice_tolerance, min_slice_n=min_slice_n
    )
    versus_champion = promotion_gate(
        challenger, champion, {}, slice_tolerance, min_slice_n=min_slice_n
    )
    if not champion_on_targets.promote and versus_champion.promote:
        return GateDecision(
            True,
            (
                "promoted: better than a champion that also misses targets",
                *versus_champion.reasons,
                *decision.reasons,
            ),
            notes,
        )
    return dataclasses.replace(decision, notes=notes)


def gate_report_markdown(
    analysis: ErrorAnalysis,
    decision: GateDecision,
    version: str,
    champion_before: str | None,
    pngs: list[Path],
) -> str:
    """The error analysis and the gate's decision (with what it did not decide) as markdown."""
    verdict = "PROMOTED to champion" if decision.promote else "NOT promoted"
    notes = [f"- {n}" for n in decision.notes]
    return "\n".join(
        [
            f"# Model version {version}: {verdict}",
            f"(champion before: {champion_before or 'none'})",
            "",
            "## Promotion gate",
            *(f"- {r}" for r in decision.reasons),
            *(["", "Not decided by the gate:", *notes] if notes else []),
            "",
            summary_markdown(analysis),
            "",
            *[png_markdown(p, p.stem) for p in pngs],
        ]
    )


@task(name="publish-error-analysis")
def publish_error_analysis(
    analysis: ErrorAnalysis,
    report_dir: Path,
    decision: GateDecision,
    version: str,
    champion_before: str | None,
) -> None:
    """Error analysis, plots and the gate's decision in the Prefect UI."""
    pngs = sorted(report_dir.glob("*.png"))
    md = gate_report_markdown(analysis, decision, version, champion_before, pngs)
    publish_markdown("error-analysis", md, "Error analysis and promotion decision")
    publish_table("slice-metrics", analysis.slices.round(4), "WER/CER per slice (test)")
    if not analysis.confusions.empty:
        publish_markdown(
            "top-confusions", markdown_table(analysis.confusions.head(20)), "Top word confusions"
        )


@task(name="build-drift-reference")
def build_drift_reference(
    predictions: pd.DataFrame, manifest: pd.DataFrame, data_dir: Path, out_path: Path
) -> Path:
    """The champion's held-out predictions with the audio features the service logs.

    Monitoring compares production windows with this table, so it is made from the same
    features (models.audio) on the held-out clean and in-car clips.
    """
    from models.audio import compute_audio_features
    from tasks.inference import read_clip

    held = predictions[predictions["split"].isin(["dev", "test"])]
    paths = manifest.set_index("utterance_id").loc[held["utterance_id"], "audio_path"]
    feats = [compute_audio_features(read_clip(data_dir / p), SAMPLE_RATE).as_dict() for p in paths]
    ref = pd.DataFrame(feats)
    ref["confidence"] = held["confidence"].to_numpy()
    ref["transcript"] = held["hypothesis"].fillna("").to_numpy()
    ref["n_words"] = ref["transcript"].str.split().str.len().fillna(0).astype(int)
    ref["condition"] = held["condition"].to_numpy()
    ref.to_csv(out_path, index=False)
    return out_path
