"""Report rendering: the one markdown-table renderer, quarantine counts and the data plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.markdown import markdown_table, png_markdown
from tasks.reports import plot_distributions, quarantine_reason_counts


@pytest.mark.parametrize(
    ("frame", "kwargs", "expected"),
    [
        (
            pd.DataFrame({"a": [1, 2], "b": [0.12345, np.float64(2)]}),
            {},
            ["| a | b |", "| --- | --- |", "| 1 | 0.123 |", "| 2 | 2.000 |"],
        ),
        (
            pd.DataFrame({"text": ["x|y", "two\nlines"]}),
            {},
            ["| text |", "| --- |", "| x\\|y |", "| two lines |"],
        ),
        (
            pd.DataFrame({"n": [3]}, index=pd.Index(["dev"], name="split")),
            {"index": True},
            ["| split | n |", "| --- | --- |", "| dev | 3 |"],
        ),
        (pd.DataFrame({"w": [0.5]}), {"floatfmt": ".1%"}, ["| w |", "| --- |", "| 50.0% |"]),
        (pd.DataFrame(columns=["a", "b"]), {}, ["| a | b |", "| --- | --- |"]),
    ],
)
def test_markdown_table(
    frame: pd.DataFrame, kwargs: dict[str, object], expected: list[str]
) -> None:
    assert markdown_table(frame, **kwargs).splitlines() == expected  # type: ignore[arg-type]


def test_quarantine_reasons_group_by_kind() -> None:
    rows = [
        {"reason": "too short: 0.1 s"},
        {"reason": "too short: 0.2 s"},
        {"reason": "clipping (3% of samples)"},
    ]
    counts = quarantine_reason_counts(rows)  # type: ignore[arg-type]
    assert dict(zip(counts["reason"], counts["rows"], strict=True)) == {
        "too short": 2,
        "clipping": 1,
    }
    assert list(quarantine_reason_counts([]).columns) == ["reason", "rows"]


def test_distribution_plot_is_a_png(tmp_path: Path) -> None:
    manifest = pd.DataFrame(
        {
            "duration_s": [1.0, 2.0, 3.0],
            "snr_db_estimate": [20.0, 25.0, 30.0],
            "split": ["train", "dev", "test"],
            "intent": ["call", "play", "call"],
        }
    )
    png = plot_distributions(manifest, tmp_path / "data.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(png, "data").startswith("![data](data:image/png;base64,iVBOR")
