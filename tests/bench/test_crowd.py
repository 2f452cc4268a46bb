"""The light overload crowd (bench/crowd.py) against a real socket server: what it sends,
what it reads back, and when it keeps or drops a connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bench.crowd import get_request, upload_request, waves


@contextmanager
def tiny_server(answers: list[bytes]) -> Iterator[tuple[str, list[bytes], list[int]]]:
    """An HTTP/1.1 server on 127.0.0.1 that reads each request whole (Content-Length) and
    replies with the next of `answers` (cycling). Yields its URL, the requests it read and
    the number of connections it accepted (one item per connection)."""
    seen: list[bytes] = []
    connections: list[int] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    url: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen.append(head + await reader.readexactly(length))
                answer = answers[(len(seen) - 1) % len(answers)]
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    stop = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        ready.set()
        await stop.wait()
        server.close()
        await server.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield url[0], seen, connections
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n"
    b'\r\n{"request_id":"a"}'
)
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nTransfer-Encoding: chunked\r\n"
    b'\r\n7\r\n{"code"\r\nC\r\n:"overload"}\r\n0\r\n\r\n'
)


def test_uploads_are_multipart_and_answers_are_parsed() -> None:
    wav = b"RIFF" + bytes(range(256)) * 40
    with tiny_server([OK]) as (url, seen, connections):
        outcomes = waves(url, upload_request(url, wav), concurrency=3, rounds=2)
    assert [o.answer.status_code for o in outcomes if o.answer] == [200] * 6
    assert all(o.answer and o.answer.json() == {"request_id": "a"} for o in outcomes)
    assert all(o.ms > 0 and o.error is None for o in outcomes)
    assert len(seen) == 6 and all(wav in request for request in seen)
    assert seen[0].startswith(b"POST /transcribe HTTP/1.1\r\n")
    assert b'name="audio"; filename="q.wav"' in seen[0]
    assert len(connections) == 3  # the second wave reused the first's connections


def test_a_refusal_is_read_chunked_and_its_connection_is_not_reused() -> None:
    with tiny_server([REFUSED]) as (url, seen, connections):
        outcomes = waves(url, get_request(url, "/healthz"), concurrency=2, rounds=2)
    assert all(o.answer and o.answer.status_code == 503 for o in outcomes)
    first = outcomes[0].answer
    assert first is not None
    assert first.headers["retry-after"] == "1" and first.json() == {"code": "overload"}
    assert seen[0].startswith(b"GET /healthz HTTP/1.1\r\n")
    assert len(connections) == 4  # a phone refused opens a new connection next time


def test_no_server_is_an_outcome_with_the_error_not_an_exception() -> None:
    with tiny_server([OK]) as (url, _, _):
        pass  # stopped: nothing listens on the port any more
    [outcome] = waves(url, get_request(url, "/healthz"), concurrency=1)
    assert outcome.answer is None and outcome.error and "Error" in outcome.error
