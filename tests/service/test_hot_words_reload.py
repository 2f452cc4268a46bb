"""The running decoder hears a new hot-word list at its next reload, without a new model
version; /metadata names the list in force."""

from __future__ import annotations

from pathlib import Path

import torch

from data_contracts.hot_words import HotWordList, list_dir, write_list
from deployments.served_model import ModelSlot
from tests.service.conftest import StoredModel

NAME = "voicecycle-asr-hot"


def _beam_model_tag(tmp_path: Path) -> str:
    from models.ctc import AcousticModelConfig, CTCAcousticModel
    from models.decoder import BeamDecoder, WordLM
    from models.recognizer import Recognizer
    from tasks.packaging import import_recognizer

    torch.manual_seed(0)
    lm = WordLM.from_transcripts(["who is sarah collins", "play music by blue harbor"])
    Recognizer(CTCAcousticModel(AcousticModelConfig()), BeamDecoder(lm)).save(tmp_path / "rec")
    metadata = {"registry_version": "4", "model_name": NAME}
    return import_recognizer(tmp_path / "rec", NAME, metadata, {"stage": "test"})


def test_a_new_list_is_heard_at_the_next_reload_and_a_broken_one_is_skipped(
    stored_model: StoredModel, tmp_path: Path
) -> None:
    tag = _beam_model_tag(tmp_path)
    root = tmp_path / "hot_words"
    slot = ModelSlot(tag, root)
    assert slot.reload() is True
    served = slot.current
    assert served is not None and served.version == "4" and served.hot_words_version is None
    assert slot.reload() is False  # nothing changed

    listed = HotWordList(
        model_name=NAME,
        model_version="4",
        version=1,
        phrases=["cordula farnsworth"],
        decoder={"beam_size": 40},
    )
    write_list(root, listed)
    assert slot.reload() is True
    served = slot.current
    assert served is not None and served.tag == tag  # same model, new list
    assert served.hot_words_version == "4.1"
    assert "cordula farnsworth" in served.recognizer.hot_words
    assert {"cordula", "farnsworth"} <= served.recognizer.lexicon
    assert served.recognizer.decoder.settings.beam_size == 40  # type: ignore[union-attr]
    assert slot.reload() is False

    (list_dir(root, NAME, "4") / "2.json").write_text("{not json")
    assert slot.reload() is False  # logged; the list in force keeps serving
    assert slot.current is not None and slot.current.hot_words_version == "4.1"

    from deployments.metadata_app import service_metadata
    from deployments.settings import current_settings

    meta = service_metadata(slot.current, current_settings(), {})
    assert meta["hot_words_version"] == "4.1" and meta["hot_words"] == ["cordula farnsworth"]
    assert meta["model_version"] == "4"
