"""`voicecycle evaluate`: the champion, as served, scored on a manifest of recordings."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    DEFAULT_SCOPE,
    ManifestFormat,
    ScopeFile,
    Workspace,
    app,
    load,
    prepare,
    print_json,
)


@app.command()
def evaluate(
    manifest: Annotated[Path, typer.Option(help="NeMo JSONL, Common Voice TSV or CSV manifest")],
    scope_file: ScopeFile = DEFAULT_SCOPE,
    workspace: Workspace = None,
    kind: Annotated[
        ManifestFormat | None, typer.Option(help="manifest format (default: from the extension)")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="folder all audio must lie under (default: manifest's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")] = False,
) -> None:
    """Score the champion, exactly as served, on a manifest: WER and CER overall and per
    slice, an HTML report; unusable rows are quarantined, not scored (exit 0: scored, 1: no
    row could be scored or no champion, 2: unusable input)."""
    scope = load(scope_file, workspace)
    if not manifest.is_file():
        print(f"manifest not found: {manifest}", file=sys.stderr)
        raise typer.Exit(2)
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        prepare(scope, quiet=as_json)
        from flows.evaluate import evaluate as evaluate_flow
        from tasks.evaluation.external import NoChampion, NothingToScore
        from tasks.manifests import ManifestError

        state = evaluate_flow(scope, manifest, kind, data_root, return_state=True)
        try:
            summary = state.result()
        except (ManifestError, FileNotFoundError) as exc:
            print(f"cannot evaluate {manifest}: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (NoChampion, NothingToScore) as exc:
            print(f"cannot evaluate {manifest}: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
    if as_json:
        print_json({k: v for k, v in summary.items() if k != "quarantined_rows"})
        return
    print(
        f"model version {summary['model_version']} on {summary['n']} clips: "
        f"WER {summary['wer']:.3f}, CER {summary['cer']:.3f} "
        f"({summary['quarantined']} rows quarantined, not scored)"
    )
    for row in summary["slices"]:
        print(f"  {row['slice']:<16} {row['value']:<32} n={row['n']:<5} WER {row['wer']:.3f}")
    print(f"report: {summary['report']}")
