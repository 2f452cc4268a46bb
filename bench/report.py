"""Writing benchmark figures: a JSON file and a printed table (the writer the story uses too)."""

from __future__ import annotations

from tasks.results import write_results

__all__ = ["write_results"]
