"""The model a service process serves, pulled from the BentoML store by tag, and its reloads."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np
from bentoml.exceptions import NotFound

from models.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from models.recognizer import Recognizer

logger = logging.getLogger("voicecycle.service")


@dataclass(frozen=True)
class ServedModel:
    recognizer: Recognizer
    tag: str  # the BentoML tag, e.g. voicecycle-asr:3kz...
    version: str  # the registry version from the metadata (the tag's version if absent)
    metadata: dict[str, Any]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def load_served_model(tag: str) -> ServedModel:
    """Resolve `tag` in the local BentoML store and load the Recognizer in it."""
    from models.recognizer import Recognizer  # torch: imported only when a model is loaded

    stored = bentoml.models.get(tag)  # local store only; raises NotFound
    metadata = dict(stored.info.metadata)
    recognizer = Recognizer.load(Path(stored.path))
    # One pass so the first real request does not pay for lazy initialisation.
    recognizer.transcribe([np.full(SAMPLE_RATE // 2, 1e-3, dtype=np.float32)])
    version = str(metadata.get("registry_version") or stored.tag.version)
    return ServedModel(recognizer, str(stored.tag), version, metadata)


class ModelSlot:
    """The model served now; `reload` swaps in what the tag resolves to, when that changed.

    The new recogniser is loaded completely before the reference is replaced, so requests
    in flight finish on the model they started with. A model that fails to load is logged
    and skipped by later reloads (the current one keeps serving) unless `retry_failed`.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.current: ServedModel | None = None
        self._lock = threading.Lock()
        self._failed_tag: str | None = None

    def reload(self, retry_failed: bool = False) -> bool:
        """Load the model the tag resolves to now, if it differs; True if it was swapped in."""
        with self._lock:
            try:
                resolved = str(bentoml.models.get(self.tag).tag)
            except NotFound:
                if self.current is None:
                    logger.warning("no model %s in the BentoML store yet", self.tag)
                return False
            previous = self.current
            if previous is not None and previous.tag == resolved:
                return False
            if resolved == self._failed_tag and not retry_failed:
                return False
            try:
                served = load_served_model(resolved)
            except Exception:
                self._failed_tag = resolved
                raise
            self._failed_tag = None
            self.current = served
        logger.info(
            "serving %s (version %s)%s",
            served.tag,
            served.version,
            f", replacing {previous.tag}" if previous else "",
        )
        return True
