"""Markdown for reports and the Prefect UI: the project's one table renderer and embedded PNGs."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd


def markdown_table(table: pd.DataFrame, index: bool = False, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table (pandas' to_markdown needs tabulate; this does not)."""
    df = table.reset_index() if index else table

    def cell(v: object) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def png_markdown(path: Path, alt: str) -> str:
    """A markdown image with the PNG embedded, so the Prefect UI shows it with no file server."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"
