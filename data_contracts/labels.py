"""The labelling contracts: Label Studio's tasks and JSON export, and the labels table.

A labelling batch goes out as Label Studio tasks for its audio-transcription template
(`LABEL_CONFIG`: `<Audio name="audio" value="$audio"/>` and a `<TextArea name="transcription"
toName="audio"/>`), each with the model's transcript as a pre-annotation (`predictions`, its
confidence as `score`). Label Studio's JSON export (a list of tasks, each with its
`annotations`) comes back; every exported task is checked on its own against `ExportedTask`
so one malformed task is quarantined with its reason instead of failing the file.
`LabelledRows` is what an import writes: a CSV manifest that ingestion reads like any other.
"""

from __future__ import annotations

from typing import Any

import pandera.pandas as pa
from pandera.typing import Series
from pydantic import BaseModel, ConfigDict, Field

FROM_NAME = "transcription"
TO_NAME = "audio"
LABEL_CONFIG = """<View>
  <Header value="Listen, then type exactly what was said (lower case, words only)"/>
  <Audio name="audio" value="$audio" zoom="true" hotkey="ctrl+enter"/>
  <TextArea name="transcription" toName="audio" rows="2" editable="true"
            maxSubmissions="1" required="true" showSubmitButton="false"/>
</View>"""

# the batch id and request id of a task: what ties an exported annotation to its stored audio
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
BATCH_ID_PATTERN = r"^batch-[A-Za-z0-9_.-]{1,64}$"


class _Open(BaseModel):
    """Label Studio adds fields over its versions; the ones read here are checked, the rest
    kept as they came."""

    model_config = ConfigDict(extra="allow")


class TaskData(_Open):
    """A task's `data`: what the template shows and what ties it back to the batch."""

    audio: str = Field(min_length=1)
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    batch: str = Field(pattern=BATCH_ID_PATTERN)
    model_transcript: str = ""
    confidence: float | None = Field(None, ge=0, le=1)


class TextAreaValue(_Open):
    text: list[str]


class ResultItem(_Open):
    """One region of an annotation; for the template, the transcription text area's."""

    from_name: str
    to_name: str
    type: str
    value: dict[str, Any]


class Annotation(_Open):
    id: int | str | None = None
    result: list[ResultItem] = []
    was_cancelled: bool = False
    completed_by: int | dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Prediction(_Open):
    model_version: str = ""
    score: float | None = Field(None, ge=0, le=1)
    result: list[ResultItem] = []


class ExportedTask(_Open):
    """One task of Label Studio's JSON export (also the shape of a task to import)."""

    id: int | None = None
    data: TaskData
    annotations: list[Annotation] = []
    predictions: list[Prediction | int] = []  # an export lists prediction ids


def transcription_result(text: str) -> list[dict[str, Any]]:
    """The `result` of an annotation or prediction that types `text` into the template."""
    return [
        {
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "textarea",
            "value": {"text": [text]},
        }
    ]


def annotation_text(annotation: Annotation) -> str | None:
    """The transcription typed in an annotation (text areas joined), or None if it has none."""
    texts: list[str] = []
    for item in annotation.result:
        if item.from_name != FROM_NAME or item.type.lower() != "textarea":
            continue
        value = TextAreaValue.model_validate(item.value)
        texts.extend(str(t) for t in value.text)
    return " ".join(t.strip() for t in texts if t.strip()) if texts else None


class LabelledRows(pa.DataFrameModel):
    """What one import writes (`labels-NNN.csv` in the batch folder): the CSV manifest that
    ingestion reads; audio paths relative to the batch folder."""

    utterance_id: Series[str] = pa.Field(unique=True, str_matches=REQUEST_ID_PATTERN)
    audio_path: Series[str] = pa.Field(str_matches=r"^audio/[^/]+\.wav$")
    transcript: Series[str] = pa.Field(str_length={"min_value": 1})
    voice: Series[str]
    synthesizer: Series[str]
    intent: Series[str]
    entities: Series[str]
    era: Series[str]

    class Config:
        strict = True
        coerce = True


class LabelQuarantine(pa.DataFrameModel):
    """The exported tasks an import could not use, with the reason."""

    task: Series[str]  # Label Studio's task id, or the position in the file
    request_id: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        coerce = True


LABELLED_COLUMNS: tuple[str, ...] = tuple(LabelledRows.to_schema().columns)
QUARANTINE_COLUMNS: tuple[str, ...] = tuple(LabelQuarantine.to_schema().columns)
