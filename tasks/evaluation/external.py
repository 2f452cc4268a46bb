"""Scoring the champion on anyone's recordings (`voicecycle evaluate`): the manifest goes
through the ingestion contracts (unusable rows quarantined, never scored) into a dataset
version of its own, and the champion transcribes it as the service would: the registered
weights (int8 as saved), its decoder and lexicon, and the newest hot-word list of the version.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from data_contracts.hot_words import latest_list
from data_contracts.scoping import Scope
from models.recognizer import Recognizer
from tasks.evaluation.slices import per_utterance, slice_table
from tasks.inference import transcribe_manifest
from tasks.ingestion import IngestResult, load_dataset
from tasks.manifests import ManifestKind
from tasks.registry import CHAMPION, alias_version, configure_mlflow, download_recognizer
from tasks.scope_overrides import with_manifest

# slices that mean something on external recordings (speaker, source, length)
EXTERNAL_KINDS: tuple[str, ...] = ("source", "voice", "synthesizer", "duration_bucket")


class NoChampion(RuntimeError):
    """The registry holds no champion to score."""


class NothingToScore(ValueError):
    """Every row of the manifest was quarantined: there is nothing to score."""


@dataclass(frozen=True)
class Champion:
    """The model as served: its registry version, the recogniser, the hot words it hears."""

    version: str
    recognizer: Recognizer
    hot_words: str | None  # the list's label, None: none


@task(name="evaluation-scope")
def evaluation_scope(
    scope: Scope, manifest: Path, kind: ManifestKind | None, data_root: Path | None
) -> Scope:
    """The scope with the manifest as its only source, versioned under evaluations_dir.

    Every usable row is scored (no quarantine limit); the versions stay apart from the
    training datasets, which the simulator and retraining read.
    """
    scoped = with_manifest(scope, Path(manifest), kind, data_root, "evaluate")
    state = scoped.state.model_copy(
        update={"datasets_dir": scoped.state.path("evaluations_dir") / "datasets"}
    )
    rules = scoped.data_rules.model_copy(update={"max_quarantine_share": 1.0})
    return scoped.model_copy(update={"state": state, "data_rules": rules})


@task(name="load-champion", retries=1, retry_delay_seconds=2)
def load_champion(scope: Scope, dest: Path) -> Champion:
    """The champion of the scope's registry with its newest hot-word list, as the service has."""
    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    name = scope.registry.model_name
    version = alias_version(name, CHAMPION)
    if version is None:
        raise NoChampion(
            f"model {name!r} has no {CHAMPION!r} in the registry at "
            f"{scope.state.url('mlflow_tracking_uri')}; train one first (voicecycle run)"
        )
    recognizer = Recognizer.load(download_recognizer(name, version, dest))
    listed = latest_list(scope.state.path("hot_words_dir"), name, version)
    if listed and listed.phrases:
        recognizer = recognizer.with_hot_words(listed.phrases)
    return Champion(version, recognizer, listed.label if listed else None)


# The champion (a loaded recogniser) cannot be hashed into a cache key, nor is a result
# worth caching: an evaluation always scores the model as it is now.
@task(name="score-dataset", cache_policy=NO_CACHE)
def score_dataset(champion: Champion, result: IngestResult) -> pd.DataFrame:
    """Transcribe every accepted clip; per-utterance errors and slice columns."""
    if result.dataset_dir is None or not result.accepted:
        raise NothingToScore(
            f"no row of the manifest can be scored ({len(result.quarantined)} quarantined); "
            + "; ".join(f"row {q['row']}: {q['reason']}" for q in result.quarantined[:3])
        )
    manifest = load_dataset(result.dataset_dir)
    out = transcribe_manifest(champion.recognizer, manifest, result.dataset_dir, progress=False)
    frame = out.rename(columns={"transcript": "reference"}).assign(
        condition="clean", snr_db=float("nan")
    )
    return per_utterance(frame)


def evaluation_summary(
    per: pd.DataFrame, result: IngestResult, champion: Champion, manifest: Path
) -> dict[str, Any]:
    """What `voicecycle evaluate --json` prints: wer, cer, n, quarantined, slices, lineage."""
    table = slice_table(per, EXTERNAL_KINDS)
    overall = table.iloc[0]
    return {
        "manifest": str(manifest),
        "wer": round(float(overall["wer"]), 4),
        "cer": round(float(overall["cer"]), 4),
        "n": int(overall["n"]),
        "quarantined": len(result.quarantined),
        "quarantined_rows": result.quarantined,
        "model_version": champion.version,
        "hot_words": champion.hot_words,
        "dataset_version": result.dataset_version,
        "slices": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            for row in table.iloc[1:].to_dict("records")
        ],
    }


def evaluation_html(summary: dict[str, Any], per: pd.DataFrame) -> str:
    """The HTML report of one evaluation: overall, slices, quarantine, every utterance."""
    esc = html.escape
    fmt = "{:.3f}".format
    slices = pd.DataFrame(summary["slices"], columns=["slice", "value", "n", "wer", "cer"])
    quarantined = pd.DataFrame(
        summary["quarantined_rows"], columns=["row", "utterance_id", "audio_path", "reason"]
    )
    worst = per.sort_values("utt_wer", ascending=False, kind="stable")[
        ["utterance_id", "voice", "reference", "hypothesis", "utt_wer", "duration_s"]
    ]
    body = [
        f"<h1>Evaluation of model version {esc(summary['model_version'])}</h1>",
        f"<p>Manifest {esc(summary['manifest'])} (dataset version "
        f"{esc(str(summary['dataset_version']))}); hot words {esc(str(summary['hot_words']))}</p>",
        f"<p><b>WER {summary['wer']:.3f}</b>, CER {summary['cer']:.3f} on {summary['n']} clips; "
        f"{summary['quarantined']} rows quarantined (not scored)</p>",
        "<h2>Slices</h2>",
        slices.to_html(index=False, float_format=fmt),
        "<h2>Quarantined rows</h2>",
        quarantined.to_html(index=False),
        "<h2>Utterances, worst first</h2>",
        worst.to_html(index=False, float_format=fmt),
    ]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


@task(name="write-evaluation-report", cache_policy=NO_CACHE)
def write_evaluation(
    per: pd.DataFrame, result: IngestResult, champion: Champion, manifest: Path, out_dir: Path
) -> dict[str, Any]:
    """Write report.html, summary.json and predictions.csv into out_dir; the summary."""
    summary = evaluation_summary(per, result, champion, manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.html"
    report.write_text(evaluation_html(summary, per), encoding="utf-8")
    summary["report"] = str(report)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    columns = ["utterance_id", "voice", "reference", "hypothesis", "confidence", "utt_wer"]
    per[columns].to_csv(out_dir / "predictions.csv", index=False)
    return summary
