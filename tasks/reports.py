"""Reports on data stages: what ingestion accepted and why rows were quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.artifacts import publish_markdown, publish_table
from tasks.ingestion import IngestResult, load_dataset
from tasks.markdown import markdown_table, png_markdown


def quarantine_reason_counts(quarantined: list[dict[str, object]]) -> pd.DataFrame:
    """Quarantine reasons grouped by their kind (the text before any detail)."""
    if not quarantined:
        return pd.DataFrame(columns=["reason", "rows"])
    kinds = [str(q["reason"]).split(":")[0].split(" (")[0] for q in quarantined]
    counts = pd.Series(kinds).value_counts()
    return pd.DataFrame({"reason": counts.index, "rows": counts.to_numpy()})


def plot_distributions(manifest: pd.DataFrame, out_path: Path) -> Path:
    """Histograms of duration, level and estimated SNR, and clips per split and intent."""
    from matplotlib.figure import Figure  # lazy, and no pyplot: no global backend switch

    fig = Figure(figsize=(16, 3.4))
    axes = fig.subplots(1, 4)
    axes[0].hist(manifest["duration_s"].astype(float), bins=30, color="#4477aa")
    axes[0].set(title="Duration", xlabel="seconds", ylabel="clips")
    axes[1].hist(manifest["snr_db_estimate"].astype(float), bins=30, color="#66ccee")
    axes[1].set(title="Estimated SNR (before augmentation)", xlabel="dB")
    manifest["split"].value_counts().plot.bar(ax=axes[2], color="#228833")
    axes[2].set(title="Clips per split", xlabel="")
    manifest["intent"].value_counts().plot.barh(ax=axes[3], color="#ccbb44")
    axes[3].set(title="Clips per intent", xlabel="clips")
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    return out_path


@task(name="publish-ingestion-report")
def publish_ingestion_report(
    result: IngestResult, reports_dir: Path, summary_path: Path | None = None
) -> None:
    """Summary, counts, quarantine reasons and distributions as Prefect artifacts (and JSON)."""
    if summary_path is not None:
        summary_path.write_text(json.dumps(result.summary(), indent=2, default=str))
    reasons = quarantine_reason_counts(result.quarantined)
    status = "accepted" if result.dataset_version else "REJECTED"
    lines = [
        f"# Ingestion {status}",
        "",
        f"- dataset version: `{result.dataset_version}`"
        + (" (new)" if result.created else " (already stored, unchanged)"),
        f"- rows: {result.total}, accepted: {result.accepted}, "
        f"quarantined: {len(result.quarantined)} ({result.quarantined_share:.1%})",
    ]
    if result.rejection:
        lines += ["", f"**Rejected:** {result.rejection}"]
    if result.dataset_dir is not None:
        manifest = load_dataset(result.dataset_dir)
        counts = manifest.groupby("split").agg(
            clips=("utterance_id", "size"),
            voices=("voice", "nunique"),
            hours=("duration_s", lambda s: round(float(s.astype(float).sum()) / 3600, 3)),
        )
        lines += ["", "## Splits (by voice)", "", markdown_table(counts, index=True)]
        reports_dir.mkdir(parents=True, exist_ok=True)
        png = plot_distributions(manifest, reports_dir / f"{result.dataset_version}-data.png")
        lines += ["", "## Distributions", "", png_markdown(png, "data distributions")]
    if len(reasons):
        lines += ["", "## Quarantine reasons", "", markdown_table(reasons)]
    publish_markdown("ingestion-summary", "\n".join(lines), "What ingestion accepted")
    if result.quarantined:
        publish_table(
            "quarantined-rows",
            pd.DataFrame(result.quarantined[:500]),
            "Quarantined rows with their reasons (first 500)",
        )
