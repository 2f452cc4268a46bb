"""Publishing run results to the Prefect UI: markdown, tables and pictures."""

from __future__ import annotations

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

# the renderers live in tasks.markdown (no prefect); importers of tasks.artifacts keep working
from tasks.markdown import markdown_table, png_markdown

__all__ = ["markdown_table", "png_markdown", "publish_markdown", "publish_table"]


def publish_markdown(key: str, markdown: str, description: str | None = None) -> None:
    """A markdown artifact under a stable key (lowercase letters, digits and dashes)."""
    create_markdown_artifact(markdown=markdown, key=key, description=description)


def publish_table(key: str, table: pd.DataFrame, description: str | None = None) -> None:
    """A table artifact from a DataFrame (values made JSON-safe)."""
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    create_table_artifact(table=records, key=key, description=description)
