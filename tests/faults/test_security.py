"""Security checks kept as tests: the admin token, no pickle from the registry or the store,
servers on 127.0.0.1, upload limits before the body is read, paths that stay in their root."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import BaseModel

from bench.harness import ADMIN_TOKEN, Server
from bench.mutations import encode
from data_contracts.scoping import AudioScope, DataRules, Scope
from deployments import admission

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("models", "tasks", "deployments", "flows", "data_contracts")


def test_the_admin_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = admission.secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admission.secrets, "compare_digest", spy)
    assert admission.bearer_matches("Bearer s3cret", "s3cret")
    assert not admission.bearer_matches("Bearer s3creT", "s3cret")
    assert not admission.bearer_matches("Basic s3cret", "s3cret")
    assert compared == [(b"s3cret", b"s3cret"), (b"s3creT", b"s3cret")]
    # the service checks the token through bearer_matches only, never with ==
    service = (REPO / "deployments" / "service.py").read_text()
    assert "bearer_matches(" in service and "== token" not in service


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.append((ast.unparse(node.func), node))
    return found


def test_no_production_code_unpickles() -> None:
    unsafe = []
    for folder in PRODUCTION:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for name, call in _calls(tree):
                where = f"{path.relative_to(REPO)}:{call.lineno} {name}"
                if name.endswith(("pickle.load", "pickle.loads", "joblib.load", "dill.load")):
                    unsafe.append(where)
                if name.endswith("torch.load"):
                    weights_only = [k for k in call.keywords if k.arg == "weights_only"]
                    if not weights_only or ast.unparse(weights_only[0].value) != "True":
                        unsafe.append(where + " without weights_only=True")
                if name.endswith(("pyfunc.load_model", "pytorch.load_model", "picklable_model")):
                    unsafe.append(where)
    assert not unsafe, unsafe


class _Payload:
    """Unpickling this runs code: it would write a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def test_a_recogniser_whose_weights_are_a_pickle_bomb_is_refused(tmp_path: Path) -> None:
    import torch

    from models.recognizer import WEIGHTS_FILE, Recognizer
    from tests.service.conftest import save_random_recognizer

    saved = save_random_recognizer(tmp_path / "rec")
    marker = tmp_path / "marker"
    torch.save({"weights": _Payload(marker)}, saved / WEIGHTS_FILE)
    with pytest.raises(Exception) as refused:
        Recognizer.load(saved)
    assert not marker.exists(), "loading ran the pickle's code"
    assert "weights_only" in str(refused.value) or "Unsupported" in str(refused.value)


def _hosts(model: BaseModel, prefix: str = "") -> dict[str, object]:
    found: dict[str, object] = {}
    for name, value in model:
        if isinstance(value, BaseModel):
            found.update(_hosts(value, f"{prefix}{name}."))
        elif "host" in name:
            found[prefix + name] = value
    return found


def test_every_server_of_the_default_scope_binds_loopback() -> None:
    from deployments.local import service_command

    hosts = _hosts(Scope())
    assert hosts and set(hosts.values()) <= {"127.0.0.1", None}, hosts
    command = service_command(Scope(), REPO / "scope.yaml")
    assert command[command.index("--host") + 1] == "127.0.0.1"
    local = (REPO / "deployments" / "local.py").read_text()
    assert "0.0.0.0" not in local and "0.0.0.0" not in (REPO / "scope.yaml").read_text()


def _row(uid: str, audio_path: str) -> dict[str, str]:
    return {
        "utterance_id": uid,
        "audio_path": audio_path,
        "transcript": "play jazz",
        "voice": "v1",
        "synthesizer": "test",
        "intent": "music",
        "entities": "",
        "era": "launch",
        "source": "test",
    }


def test_manifest_paths_never_leave_their_root(tmp_path: Path) -> None:
    from tasks.ingestion import RowJob, process_row

    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (outside / "clip.wav").write_bytes(encode("WAV", "PCM_16", 16000, 1, 1.0))
    (root / "link.wav").symlink_to(outside / "clip.wav")  # a link out of the root
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    for uid, audio_path in [
        ("dotdot", "../secret/clip.wav"),
        ("absolute", str(outside / "clip.wav")),
        ("symlink", "link.wav"),
        ("symlinked-dir", "linked-dir/clip.wav"),
    ]:
        job = RowJob(0, _row(uid, audio_path), root / audio_path, root)
        row, reason = process_row(job, out, DataRules(), AudioScope())
        assert row is None and reason and "outside the data root" in reason, (uid, reason)
    assert not list(out.iterdir())


def test_imported_labels_never_leave_the_labelling_folder(tmp_path: Path) -> None:
    from tasks.labelling import parse_export

    (tmp_path / "secret").mkdir()
    labelling = tmp_path / "labelling"
    labelling.mkdir()
    annotation = {"result": [{"type": "textarea", "value": {"text": ["play jazz"]}}]}
    hostile = [
        {"id": 1, "data": {"audio": "x", "request_id": "../../secret", "batch": "b1"}},
        {"id": 2, "data": {"audio": "x", "request_id": "r1", "batch": "../secret"}},
        {"id": 3, "data": {"audio": "x", "request_id": "r1", "batch": "/etc"}},
    ]
    rows, quarantined = parse_export(
        [{**t, "annotations": [annotation]} for t in hostile], labelling
    )
    assert rows == {}
    assert [q["task"] for q in quarantined] == ["1", "2", "3"], quarantined


# -- against a real `bentoml serve` --------------------------------------------------------


def _listening(server: Server) -> list[tuple[str, int]]:
    tree = [psutil.Process(server.process.pid)]
    tree += tree[0].children(recursive=True)
    found = []
    for proc in tree:
        try:
            found += [
                (c.laddr.ip, c.laddr.port)
                for c in proc.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
def test_the_real_service_listens_on_loopback_only(fault_server: Server) -> None:
    listening = _listening(fault_server)
    assert listening, "found no listening socket of the service"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening


@pytest.mark.slow
def test_an_oversized_upload_is_refused_before_its_body_is_sent(fault_server: Server) -> None:
    host, port = fault_server.url.removeprefix("http://").split(":")
    declared = 500 * 1024 * 1024  # 500 MB declared; not one byte of it is sent
    head = (
        f"POST /transcribe HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=XX\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    # an answer at all proves it: the server would otherwise wait for 500 MB (recv times out)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["code"] == "upload_too_large"


@pytest.mark.slow
def test_a_wrong_admin_token_is_refused_by_the_real_service(fault_server: Server) -> None:
    import httpx

    wrong = httpx.post(
        f"{fault_server.url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}
    )
    assert wrong.status_code == 403 and wrong.json()["code"] == "forbidden"
