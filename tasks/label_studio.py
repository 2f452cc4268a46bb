"""Label Studio's HTTP API, as far as the labelling loop needs it: create a project with the
audio-transcription template, import a batch's tasks, export the finished annotations, and
(what a person does in the UI, used by the simulated labeller) submit an annotation.

The address is `labelling.label_studio_url`; the API token comes from the file
`labelling.label_studio_token_file` or the environment variable `labelling.label_studio_token_env`
(a legacy token, sent as `Authorization: Token <token>`), never from the repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from prefect import task

from data_contracts.labels import LABEL_CONFIG, transcription_result
from data_contracts.scoping import Scope


class LabelStudioError(RuntimeError):
    """Label Studio refused a call or cannot be reached; the message says which and why."""


def label_studio_token(scope: Scope) -> str:
    """The API token: from the scope's token file, else its environment variable."""
    settings = scope.labelling
    if settings.label_studio_token_file is not None:
        path = settings.label_studio_token_file
        path = path if path.is_absolute() else scope.state.workspace / path
        if not path.is_file():
            raise LabelStudioError(f"labelling.label_studio_token_file: {path} does not exist")
        token = path.read_text().strip()
        if not token:
            raise LabelStudioError(f"labelling.label_studio_token_file: {path} is empty")
        return token
    name = settings.label_studio_token_env
    if name and os.environ.get(name, "").strip():
        return os.environ[name].strip()
    raise LabelStudioError(
        "labelling.label_studio_url is set but no API token was found: set "
        "labelling.label_studio_token_file, or the environment variable "
        f"{name or '(labelling.label_studio_token_env is not set)'}"
    )


class LabelStudio:
    """A thin client of one Label Studio server."""

    def __init__(self, url: str, token: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token}"},
            timeout=timeout_s,
        )

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio at {self.url} unreachable: {exc}") from None
        if resp.status_code >= 400:
            raise LabelStudioError(
                f"Label Studio {method} {path} answered {resp.status_code}: {resp.text[:300]}"
            )
        return resp.json() if resp.content else None

    def create_project(self, title: str, description: str = "") -> int:
        """A new project with the audio-transcription template; its id."""
        body = {"title": title[:50], "description": description, "label_config": LABEL_CONFIG}
        return int(self._call("POST", "/api/projects", json=body)["id"])

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Import tasks (with their predictions); how many Label Studio took."""
        done = self._call("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int(done.get("task_count", len(tasks))) if isinstance(done, dict) else len(tasks)

    def export(self, project_id: int) -> list[Any]:
        """The project's JSON export: every task with its annotations."""
        exported = self._call(
            "GET",
            f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
        )
        if not isinstance(exported, list):
            raise LabelStudioError(f"Label Studio export of project {project_id} is not a list")
        return exported

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """The project's tasks (id and data), as the labelling UI lists them."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            got = self._call(
                "GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 100}
            )
            items = got.get("tasks", []) if isinstance(got, dict) else got
            found.extend(items)
            total = got.get("total", len(found)) if isinstance(got, dict) else len(found)
            if not items or len(found) >= total:
                return found
            page += 1

    def annotate(self, task_id: int, text: str) -> int:
        """Submit a transcription for a task, as a person does in the UI; the annotation id."""
        body = {"result": transcription_result(text), "was_cancelled": False}
        return int(self._call("POST", f"/api/tasks/{task_id}/annotations", json=body)["id"])

    def skip(self, task_id: int) -> int:
        """Skip a task (the UI's Skip button: a cancelled annotation)."""
        body = {"result": [], "was_cancelled": True}
        return int(self._call("POST", f"/api/tasks/{task_id}/annotations", json=body)["id"])


def client(scope: Scope) -> LabelStudio:
    """The scope's Label Studio (labelling.label_studio_url must be set)."""
    url = scope.labelling.label_studio_url
    if not url:
        raise LabelStudioError("labelling.label_studio_url is not set")
    return LabelStudio(url, label_studio_token(scope))


@task(name="push-batch-to-label-studio", retries=2, retry_delay_seconds=5)
def push_batch(scope: Scope, batch_id: str, tasks_file: Path) -> int:
    """Create the batch's Label Studio project and import its tasks; the project id."""
    import json

    tasks = json.loads(tasks_file.read_text())
    with client(scope) as ls:
        project = ls.create_project(f"voicecycle {batch_id}", f"labelling batch {batch_id}")
        ls.import_tasks(project, tasks)
    return project


@task(name="pull-label-studio-export", retries=2, retry_delay_seconds=5)
def pull_export(scope: Scope, project_ids: list[int]) -> list[Any]:
    """The JSON export of each project, concatenated."""
    exported: list[Any] = []
    with client(scope) as ls:
        for project in project_ids:
            exported.extend(ls.export(project))
    return exported
