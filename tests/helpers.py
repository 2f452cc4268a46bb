"""Small helpers the command-driving tests share."""

from __future__ import annotations

import json
from typing import Any


def last_json(text: str) -> Any:
    """The JSON document a command printed last (flows may log and draw progress before)."""
    lines = text.splitlines()
    for start in reversed([i for i, line in enumerate(lines) if line in ("{", "[")]):
        try:
            return json.loads("\n".join(lines[start:]))
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"no JSON at the end of: {text[-2000:]}")
