"""Rendering an error analysis: the markdown summary, the PNG plots and the HTML report."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from tasks.evaluation.analysis import DIAGNOSED_SPLITS, ErrorAnalysis
from tasks.evaluation.slices import SLICE_KINDS, SNR_BUCKETS
from tasks.markdown import markdown_table


def summary_markdown(analysis: ErrorAnalysis) -> str:
    """Concise markdown summary: headline numbers, verdict, worst slices, actions."""
    peer = "n/a" if analysis.peer_wer is None else f"{analysis.peer_wer:.3f}"
    splits = pd.DataFrame(
        [
            {"split": s, "n": int(m["n"]), "WER": m["wer"], "CER": m["cer"]}
            for s, m in analysis.overall.items()
        ],
        columns=["split", "n", "WER", "CER"],
    )
    lines = [
        f"## Error analysis ({analysis.split} split)",
        "",
        f"**Verdict:** {', '.join(analysis.diagnosis.verdict)} — target WER "
        f"{analysis.target_wer:.3f}, peer WER {peer}",
        "",
        markdown_table(splits),
        "",
        analysis.diagnosis.explanation,
        "",
        "**Worst slices**",
        "",
        markdown_table(analysis.worst_slices()),
    ]
    if analysis.held_out is not None:
        engines = analysis.held_out[analysis.held_out["slice"] == "synthesizer_condition"]
        lines += ["", "**Never-heard synthesizers** (cross_synth split)", ""]
        lines.append(markdown_table(engines.reset_index(drop=True)))
    if not analysis.confusions.empty:
        top = ", ".join(
            f"`{r.ref_word}→{r.hyp_word}` ×{r.count}"
            for r in analysis.confusions.head(5).itertuples()
        )
        lines += ["", f"**Top confusions:** {top}"]
    lines += ["", "**Next actions**", ""]
    lines += [f"- {a}" for a in analysis.recommendations.get("actions", [])]
    changes = analysis.recommendations.get("changes", {})
    if changes:
        lines += ["", "**Policy changes**", ""]
        lines += [f"- `{k}`: {c['from']} → {c['to']}" for k, c in changes.items()]
    return "\n".join(lines) + "\n"


def _plot_wer_by_slice(slices: pd.DataFrame, target_wer: float, path: Path) -> Path:
    """Horizontal WER bars, one panel per slice kind, with overall and target lines."""
    from matplotlib.figure import Figure  # lazy: no plotting work at import; Agg canvas, no pyplot

    kinds = [k for k in SLICE_KINDS if (slices["slice"] == k).any()] or ["overall"]
    overall = slices.loc[slices["slice"] == "overall", "wer"]
    overall_wer = float(overall.iloc[0]) if len(overall) else math.nan
    ncols = min(3, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    sizes = [int((slices["slice"] == k).sum()) for k in kinds]
    heights = [max(2.0, 0.3 * max(sizes[r * ncols : (r + 1) * ncols]) + 1.0) for r in range(nrows)]
    fig = Figure(figsize=(5 * ncols, sum(heights)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    xmax = (
        max([target_wer, overall_wer if math.isfinite(overall_wer) else 0, *slices["wer"]]) * 1.15
    )
    for ax, kind in zip(axes.flat, kinds, strict=False):
        rows = slices[slices["slice"] == kind]
        labels = [f"{v} (n={n})" for v, n in zip(rows["value"], rows["n"], strict=True)]
        ax.barh(labels, rows["wer"], color="tab:blue")
        ax.invert_yaxis()
        if math.isfinite(overall_wer):
            ax.axvline(
                overall_wer, color="black", linestyle="--", label=f"overall {overall_wer:.3f}"
            )
        ax.axvline(target_wer, color="red", label=f"target {target_wer:.3f}")
        ax.set_xlim(0, xmax or 1.0)
        ax.set_title(kind)
        ax.set_xlabel("WER")
        ax.tick_params(axis="y", labelsize=8)
    axes.flat[0].legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=90)
    return path


def _plot_wer_vs_snr(slices: pd.DataFrame, target_wer: float, path: Path) -> Path:
    """WER per SNR bucket for car audio, with clean WER and target as reference lines."""
    from matplotlib.figure import Figure

    snr = slices[slices["slice"] == "snr_bucket"].set_index("value")
    buckets = [b for b in SNR_BUCKETS if b in snr.index and b != "clean"]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    if buckets:
        ax.plot(buckets, snr.loc[buckets, "wer"], marker="o", label="car")
    else:
        ax.text(
            0.5, 0.5, "no car audio in this split", ha="center", va="center", transform=ax.transAxes
        )
    if "clean" in snr.index:
        ax.axhline(float(snr.loc["clean", "wer"]), color="green", linestyle="--", label="clean")
    ax.axhline(target_wer, color="red", label=f"target {target_wer:.3f}")
    ax.set_xlabel("SNR bucket")
    ax.set_ylabel("WER")
    ax.set_ylim(bottom=0)
    ax.set_title("WER vs SNR (car audio)")
    ax.legend()
    fig.savefig(path, dpi=90)
    return path


def _plot_bias_variance(
    overall: Mapping[str, Mapping[str, float]],
    target_wer: float,
    peer_wer: float | None,
    path: Path,
) -> Path:
    """Train/dev/test WER bars with target and peer lines: the bias/variance picture."""
    from matplotlib.figure import Figure

    splits = [s for s in DIAGNOSED_SPLITS if s in overall]
    values = [overall[s]["wer"] for s in splits]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(splits, values, color=["tab:blue", "tab:orange", "tab:purple"][: len(splits)])
    ax.bar_label(bars, fmt="%.3f")
    ax.axhline(target_wer, color="red", label=f"target {target_wer:.3f}")
    if peer_wer is not None:
        ax.axhline(peer_wer, color="gray", linestyle="--", label=f"peer {peer_wer:.3f}")
    ax.set_ylabel("WER")
    ax.set_ylim(0, max([target_wer, peer_wer or 0.0, *values]) * 1.2 or 1.0)
    wers = {s: overall[s]["wer"] for s in splits}
    if {"train", "dev", "test"} <= set(wers):
        ax.set_title(
            f"avoidable bias {wers['train'] - target_wer:+.3f} | "
            f"variance {wers['dev'] - wers['train']:+.3f} | "
            f"mismatch {wers['test'] - wers['dev']:+.3f}"
        )
    ax.legend()
    fig.savefig(path, dpi=90)
    return path


def write_html_report(analysis: ErrorAnalysis, out_dir: Path) -> Path:
    """Write error_analysis.html plus its PNG plots into out_dir; return the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "WER by slice": _plot_wer_by_slice(
            analysis.slices, analysis.target_wer, out_dir / "wer_by_slice.png"
        ),
        "WER vs SNR": _plot_wer_vs_snr(
            analysis.slices, analysis.target_wer, out_dir / "wer_vs_snr.png"
        ),
        "Bias / variance": _plot_bias_variance(
            analysis.overall, analysis.target_wer, analysis.peer_wer, out_dir / "bias_variance.png"
        ),
    }
    esc = html.escape
    overall = pd.DataFrame(
        [{"split": s, **m} for s, m in analysis.overall.items()],
        columns=["split", "n", "wer", "cer"],
    )
    rec = analysis.recommendations
    fmt = "{:.3f}".format
    body = [
        f"<h1>Error analysis ({esc(analysis.split)} split)</h1>",
        f"<p><b>Verdict:</b> {esc(', '.join(analysis.diagnosis.verdict))}</p>",
        f"<p>{esc(analysis.diagnosis.explanation)}</p>",
        overall.to_html(index=False, float_format=fmt),
        "<h2>Next actions</h2><ul>",
        *(f"<li>{esc(a)}</li>" for a in rec.get("actions", [])),
        "</ul><h2>Reasons</h2><ul>",
        *(f"<li>{esc(r)}</li>" for r in rec.get("reasons", [])),
        "</ul><h2>Next augmentation policy</h2>",
        f"<pre>{esc(json.dumps(rec.get('policy', {}), indent=2, default=str))}</pre>",
        *(
            f'<h2>{esc(title)}</h2><img src="{esc(p.name)}" alt="{esc(title)}">'
            for title, p in plots.items()
        ),
        "<h2>Slice metrics</h2>",
        analysis.slices.to_html(index=False, float_format=fmt),
        *(
            []
            if analysis.held_out is None
            else [
                "<h2>Never-heard synthesizers (cross_synth split)</h2>",
                analysis.held_out.to_html(index=False, float_format=fmt),
            ]
        ),
        "<h2>Top confusions</h2>",
        analysis.confusions.to_html(index=False),
        "<h2>Worst utterances</h2>",
        analysis.worst.to_html(index=False, float_format=fmt),
    ]
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Error analysis</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = out_dir / "error_analysis.html"
    path.write_text(page, encoding="utf-8")
    return path
