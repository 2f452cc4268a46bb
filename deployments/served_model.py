"""The model a service process serves, pulled from the BentoML store by tag, and its reloads.

A reload also picks up the newest hot-word list of the served version
(data_contracts/hot_words.py, under `state.hot_words_dir`): new names the decoder hears
without a new model version.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np
from bentoml.exceptions import NotFound

from data_contracts.hot_words import HotWordList, HotWordListError, latest_list
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
    model_name: str = ""  # the BentoML (and registry) model name
    hot_words: HotWordList | None = None  # the mined list the decoder hears, if any

    @property
    def hot_words_version(self) -> str | None:
        """`<model_version>.<list version>` of the hot-word list in force (None: none)."""
        return self.hot_words.label if self.hot_words else None


def warm_up(recognizer: Recognizer) -> None:
    """One pass so the first real request does not pay for lazy initialisation."""
    recognizer.transcribe([np.full(SAMPLE_RATE // 2, 1e-3, dtype=np.float32)])


def load_served_model(tag: str) -> ServedModel:
    """Resolve `tag` in the local BentoML store and load the Recognizer in it."""
    from models.recognizer import Recognizer  # torch: imported only when a model is loaded

    stored = bentoml.models.get(tag)  # local store only; raises NotFound
    metadata = dict(stored.info.metadata)
    recognizer = Recognizer.load(Path(stored.path))
    warm_up(recognizer)
    version = str(metadata.get("registry_version") or stored.tag.version)
    return ServedModel(recognizer, str(stored.tag), version, metadata, model_name=stored.tag.name)


def with_hot_words(
    served: ServedModel, base: Recognizer, listed: HotWordList | None
) -> ServedModel:
    """`served` decoding with the list's names added to `base` (the model as stored)."""
    recognizer = (
        base.with_hot_words(listed.phrases, listed.context, listed.decoder)
        if listed and listed.phrases
        else base
    )
    if recognizer is not base:
        warm_up(recognizer)
    return dataclasses.replace(served, recognizer=recognizer, hot_words=listed)


class ModelSlot:
    """The model served now; `reload` swaps in what the tag resolves to, when that changed.

    The new recogniser is loaded completely before the reference is replaced, so requests
    in flight finish on the model they started with. A model that fails to load is logged
    and skipped by later reloads (the current one keeps serving) unless `retry_failed`.
    With `hot_words_dir`, each reload also swaps in the newest hot-word list of the served
    version when it changed; an unreadable list is logged and the current one kept.
    """

    def __init__(self, tag: str, hot_words_dir: Path | None = None) -> None:
        self.tag = tag
        self.hot_words_dir = hot_words_dir
        self.current: ServedModel | None = None
        self._base: Recognizer | None = None  # the current model without mined hot words
        self._lock = threading.Lock()
        self._failed_tag: str | None = None
        self._failed_list: str | None = None

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
                return self._reload_hot_words(previous)
            if resolved == self._failed_tag and not retry_failed:
                return self._reload_hot_words(previous) if previous else False
            try:
                served = load_served_model(resolved)
            except Exception:
                self._failed_tag = resolved
                raise
            self._failed_tag = None
            self._base = served.recognizer
            self.current = served
            self._reload_hot_words(served)
        logger.info(
            "serving %s (version %s)%s",
            served.tag,
            served.version,
            f", replacing {previous.tag}" if previous else "",
        )
        return True

    def _reload_hot_words(self, served: ServedModel) -> bool:
        """Swap in the served version's newest hot-word list if it changed (lock held)."""
        if self.hot_words_dir is None or self._base is None:
            return False
        name = served.model_name or served.tag.split(":")[0]
        try:
            listed = latest_list(self.hot_words_dir, name, served.version)
            if (listed.label if listed else None) == served.hot_words_version:
                return False
            swapped = with_hot_words(served, self._base, listed)
        except (HotWordListError, ValueError) as exc:  # unreadable list, or a greedy decoder
            if str(exc) != self._failed_list:  # say it once, not at every poll
                logger.warning("%s; still serving hot words %s", exc, served.hot_words_version)
                self._failed_list = str(exc)
            return False
        self._failed_list = None
        self.current = swapped
        logger.info(
            "serving %s with hot words %s (%d phrases)",
            served.tag,
            self.current.hot_words_version,
            len(listed.phrases) if listed else 0,
        )
        return True
