"""A workspace's voice catalogue, pinned: which engines its synthetic corpora speak with.

The scope asks for engines (`sources[].synthetic.engines`). The first corpus built in a
workspace resolves that request against this machine: an engine that is not installed is left
out, with one printed line saying what is missing. The result is pinned in the corpus root
(`catalogue-<engines>.json`), and every later corpus of the same request (a retrain's
re-spoken queries, the same corpus after an engine was installed or removed) uses the pinned
catalogue, never "whatever is installed right now": an existing corpus is reused as it is.
A corpus that must be rendered anew (a retrain's re-spoken queries) while an engine the pin
names has gone missing is rendered with that engine's voices capped at 0 clips (`engines_gone`;
"flite0" in its folder name, so it never passes for the full one), with one printed line, and
a retrain keeps running on a machine that lost an engine. Asking for other engines is another
pin, so a new catalogue gets a new corpus beside the old one; deleting a pin file (a few bytes,
no data) resolves its request afresh.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from tasks.synthesis.voices import ENGINES, missing_engines

logger = logging.getLogger(__name__)
PIN_FORMAT = 1


def pin_path(corpus_root: Path, requested: Sequence[str]) -> Path:
    """The pin file of one engine request."""
    ordered = [e for e in ENGINES if e in requested]
    return Path(corpus_root) / f"catalogue-{'+'.join(ordered)}.json"


def _read_pin(path: Path) -> tuple[str, ...]:
    """The engines a pin file holds, or ValueError naming the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        engines = tuple(str(e) for e in info["engines"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a voice-catalogue pin ({exc}); delete it to resolve the catalogue again"
        ) from None
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or "espeak" not in engines:
        raise ValueError(f"{path}: expected engines among {ENGINES} with espeak, got {engines}")
    return engines


def pinned_engines(corpus_root: Path, requested: Sequence[str]) -> tuple[str, ...]:
    """The engines of this workspace's catalogue for `requested`: pinned once, then kept."""
    unknown = sorted(set(requested) - set(ENGINES))
    if unknown or "espeak" not in requested:
        raise ValueError(f"expected engines among {ENGINES} including 'espeak', got {requested!r}")
    path = pin_path(corpus_root, requested)
    if path.is_file():
        engines = _read_pin(path)
        newly = sorted(set(requested) - set(engines) - set(missing_engines(requested)))
        if newly:
            print(
                f"voice catalogue: installed now: {', '.join(newly)}, but {path} pins this "
                "workspace's catalogue without it (existing corpora are reused as they are); "
                "delete that file to build a corpus with it beside the old one"
            )
        return engines
    missing = missing_engines(requested)
    engines = tuple(e for e in ENGINES if e in requested and e not in missing)
    if missing:
        print(
            f"voice catalogue: not installed, left out: {'; '.join(missing.values())} "
            f"(pinned in {path})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": PIN_FORMAT, "requested": list(requested), "engines": list(engines)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    try:  # first writer wins, atomically: a concurrent resolution reads the pin it wrote
        os.link(tmp, path)
    except FileExistsError:
        return _read_pin(path)
    finally:
        tmp.unlink()
    logger.info("voice catalogue pinned in %s: %s", path, ", ".join(engines))
    return engines


def engines_gone(engines: Sequence[str], corpus: str) -> list[str]:
    """The pinned `engines` this machine can no longer speak with (espeak is in the lock),
    with one printed line when a new corpus (`corpus`) is to be rendered without them."""
    missing = missing_engines([e for e in engines if e != "espeak"])
    if missing:
        print(
            f"voice catalogue: {corpus} is rendered with no clips of "
            f"{'; '.join(missing.values())}: pinned for this workspace but not installed now "
            "(existing corpora are reused as they are; install it again to speak new corpora "
            "with it)"
        )
    return list(missing)
