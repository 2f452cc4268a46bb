"""Figures as results: a JSON file (with the machine it was measured on) and a printed table.
The story writes its figures this way; the benchmarks in bench/ do too."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from models.cores import available_cores


def write_results(out_dir: Path, name: str, figures: dict[str, Any]) -> Path:
    """Save figures (with machine info) as out_dir/name.json and print them as a table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": available_cores(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **figures,
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    width = max(len(k) for k in figures)
    print(f"\n{name} benchmark ({path})")
    print("-" * (width + 22))
    for key, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    return path
