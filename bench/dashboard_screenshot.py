"""Screenshot the Evidently dashboard of a workspace (after `voicecycle story`, say).

    .venv/bin/python -m bench.dashboard_screenshot --scope scope.yaml --out dashboard.png

Starts its own `evidently ui` on a free 127.0.0.1 port over the scope's
`state.evidently_workspace` (a UI already running there is left alone), opens project
"voicecycle" in headless Debian Chromium, waits until every panel has drawn one point per
snapshot that carries its figure, saves the PNG, stops the UI and prints the checks it shows
(time, serving version, drift share, confidence, out-of-lexicon share, labelled WER).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd


def expected_points(checks: pd.DataFrame) -> dict[str, int]:
    """Panel title -> the points it must draw: one per snapshot that has its figure."""
    from tasks.dashboard import FIGURES

    counts = {title: int(checks[col].notna().sum()) for col, (title, _) in FIGURES.items()}
    return {title: n for title, n in counts.items() if n}


def screenshot(
    workspace_dir: Path, out: Path, timeout_s: float = 120.0
) -> tuple[pd.DataFrame, dict[str, list[list[float]]]]:
    """Save the dashboard of the workspace as `out`; the checks it shows, and each panel's
    drawn points (SVG x, y: y grows downwards)."""
    from bench.browser import drawn_panels, evidently_ui, headless_chromium
    from tasks.dashboard import PROJECT, read_checks

    if not workspace_dir.is_dir():
        raise RuntimeError(f"no Evidently workspace at {workspace_dir}")
    checks = read_checks(workspace_dir)
    if checks.empty:
        raise RuntimeError(f"no drift checks in the Evidently workspace {workspace_dir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as scratch:
        tmp = Path(scratch)
        with (
            evidently_ui(workspace_dir, tmp / "ui.log", PROJECT) as (url, project),
            headless_chromium(tmp) as driver,
        ):
            driver.get(f"{url}/projects/{project}")
            panels = drawn_panels(driver, expected_points(checks), timeout_s)
            driver.save_screenshot(str(out))
    return checks, panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scope", type=Path, default=Path("scope.yaml"), help="scope file")
    parser.add_argument("--workspace", type=Path, help="override state.workspace")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"), help="PNG to write")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it")
    args = parser.parse_args(argv)

    from data_contracts.scoping import load_scope

    scope = load_scope(args.scope)
    if args.workspace is not None:
        scope = scope.with_workspace(args.workspace)
    workspace_dir = scope.state.path("evidently_workspace").resolve()
    try:
        checks, _ = screenshot(workspace_dir, args.out, args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"dashboard screenshot failed: {exc}", file=sys.stderr)
        return 1
    shown = checks.assign(when=checks["when"].map(lambda t: t.strftime("%H:%M:%S")))
    print(shown.round(3).to_string(index=False, na_rep="-"))
    print(f"\n{len(checks)} checks; dashboard saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
