"""A light crowd of phones for the overload figures: one asyncio loop, one raw HTTP/1.1
connection per phone, one request encoded once and sent as bytes.

A thread per phone through httpx costs the client about as much CPU as the server spends on a
refusal, so on a machine the two share, a 256-phone crowd took a whole core of two and timed
its own queue rather than the service's. Here a phone's request is a write of ready bytes
and its answer a parse of one status line and a few headers: the client stays light enough
for the wall times to be the server's.

Only what the service sends is read: a status line, headers, and a body of Content-Length
bytes or chunked. A connection is kept for the next wave only after a 200 that does not say
`connection: close`; after a refusal (which may come before the server has read the upload)
it is closed and the next wave opens a new one, as a phone that got a 503 would.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Outcome:
    answer: Answer | None  # None: no HTTP answer (refused connection, reset, timeout)
    ms: float  # from the phone's first byte (or its connect) to the answer's last
    error: str | None = None


def upload_request(url: str, wav: bytes, path: str = "/transcribe") -> bytes:
    """POST `path` with `wav` as the multipart field `audio`, as a phone's HTTP library sends
    it (keep-alive)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="audio"; filename="q.wav"\r\n',
            b"Content-Type: audio/wav\r\n\r\n",
            wav,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return _request(url, "POST", path, body, f"multipart/form-data; boundary={boundary}")


def get_request(url: str, path: str) -> bytes:
    return _request(url, "GET", path, b"", None)


def _request(url: str, method: str, path: str, body: bytes, content_type: str | None) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: */*"]
    if content_type is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One HTTP/1.1 response: status line, headers, then a Content-Length or chunked body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(parts[1]), headers, body)


@dataclass
class _Phone:
    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def ask(self, request: bytes) -> Outcome:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(self._exchange(request), TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            error = f"{type(exc).__name__}: {exc}"
            return Outcome(None, (time.perf_counter() - started) * 1000, error)
        ms = (time.perf_counter() - started) * 1000
        if answer.status_code != 200 or answer.headers.get("connection", "") == "close":
            self.close()
        return Outcome(answer, ms)

    async def _exchange(self, request: bytes) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        # Not awaiting drain: a refusal can come while the upload is still being written
        self.writer.write(request)
        return await read_answer(self.reader)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


@dataclass
class Crowd:
    """`concurrency` phones against `url`; `waves` sends one request from each at once."""

    url: str
    concurrency: int
    phones: list[_Phone] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.phones = [_Phone(host, port) for _ in range(self.concurrency)]

    async def wave(self, request: bytes) -> list[Outcome]:
        return list(await asyncio.gather(*(phone.ask(request) for phone in self.phones)))

    def close(self) -> None:
        for phone in self.phones:
            phone.close()


def waves(url: str, request: bytes, concurrency: int, rounds: int = 1) -> list[Outcome]:
    """`rounds` waves of `concurrency` simultaneous requests (the second on the connections
    the first kept), every outcome in order."""

    async def run() -> list[Outcome]:
        crowd = Crowd(url, concurrency)
        try:
            outcomes: list[Outcome] = []
            for _ in range(rounds):
                outcomes += await crowd.wave(request)
            return outcomes
        finally:
            crowd.close()

    return asyncio.run(run())
