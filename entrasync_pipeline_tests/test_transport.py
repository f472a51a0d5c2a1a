"""Transport against real loopback sockets: what counts as "the server certainly did not act".

A create may be resent only when the request cannot have reached the server: a refused connection
never opened, so it is safe to repeat; a reset or a read timeout happened after the request was
written, so the server may have acted and the failure is ambiguous (``apply`` must look before it
tries again). A retryable status the transport gives up on is handed back as the final response,
for the client to turn into its own error. No mocks: each case is a real socket on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from entrasync_pipeline.settings import HttpSettings
from entrasync_pipeline.transport import NoResponse, Transport

HTTP = HttpSettings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05, connect_timeout_s=2.0, read_timeout_s=0.5)

Behaviour = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> bytes:
    """The request head and its Content-Length body, so the client has finished writing."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


@contextmanager
def _server(behaviour: Behaviour) -> Iterator[tuple[str, list[bytes]]]:
    """A one-request-per-connection HTTP server on 127.0.0.1; yields its URL and the request heads."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                seen.append(_read_request(conn))
                behaviour(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _reset(conn: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _reset_before_answering(conn: socket.socket) -> None:
    _reset(conn)


def _reset_mid_body(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"val')
    time.sleep(0.2)  # the client has read the head and waits for the rest
    _reset(conn)


def _never_answer(conn: socket.socket) -> None:
    conn.recv(1)  # returns once the client gives up and closes


def _answer(status: str, headers: str = "") -> Behaviour:
    def answer(conn: socket.socket) -> None:
        body = b'{"error":"busy"}'
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{headers}\r\n".encode()
            + body
        )

    return answer


@pytest.fixture
def transport() -> Iterator[Transport]:
    transport = Transport(HTTP, None, "test")
    yield transport
    transport.close()


# --- no response: refused is safe to resend, everything after the request was written is ambiguous ---


def test_a_refused_connection_is_not_ambiguous_and_even_a_create_is_resent(transport: Transport) -> None:
    # Bound but not listening: the port is ours, and the kernel refuses every connection to it.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed_port.getsockname()[1]}/users"
        with pytest.raises(NoResponse) as info:
            transport.send("POST", url, route="/users", idempotent=False, json_body={"email": "a@example.org"})
    assert info.value.kind == "connection" and info.value.ambiguous is False
    assert transport.retries == HTTP.max_attempts - 1


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (_reset_before_answering, "connection"),
        (_reset_mid_body, "incomplete-body"),
        (_never_answer, "read-timeout"),
    ],
    ids=["reset-before-answer", "reset-mid-body", "read-timeout"],
)
def test_a_failure_after_the_request_was_written_is_ambiguous_and_a_create_is_not_resent(
    transport: Transport, behaviour: Behaviour, kind: str
) -> None:
    with _server(behaviour) as (url, seen), pytest.raises(NoResponse) as info:
        transport.send("POST", f"{url}/users", route="/users", idempotent=False, json_body={"email": "a@example.org"})
    assert info.value.kind == kind and info.value.ambiguous is True
    assert len(seen) == 1 and seen[0].startswith(b"POST /users ")


def test_a_read_is_retried_after_a_reset(transport: Transport) -> None:
    with _server(_reset_before_answering) as (url, seen), pytest.raises(NoResponse) as info:
        transport.send("GET", f"{url}/users", route="/users", idempotent=True)
    assert info.value.ambiguous and len(seen) == HTTP.max_attempts


# --- a retryable status the transport gives up on comes back as the final response -------------------------


def test_a_status_still_retryable_after_the_last_attempt_is_returned(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    with _server(_answer("503 Service Unavailable")) as (url, seen), caplog.at_level(logging.INFO):
        response = transport.send("GET", f"{url}/users", route="/users", idempotent=True)
    assert response.status == 503 and response.json() == {"error": "busy"}
    assert len(seen) == HTTP.max_attempts and transport.retries == HTTP.max_attempts - 1
    giving_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert len(giving_up) == 1 and giving_up[0].levelno == logging.WARNING


def test_a_retry_after_beyond_the_bound_is_returned_without_waiting(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        _server(_answer("429 Too Many Requests", "Retry-After: 3600\r\n")) as (url, seen),
        caplog.at_level(logging.INFO),
    ):
        started = time.monotonic()
        response = transport.send("GET", f"{url}/users", route="/users", idempotent=True)
    assert response.status == 429 and response.headers["retry-after"] == "3600"
    assert len(seen) == 1 and transport.throttled == 1 and time.monotonic() - started < 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "max_retry_after_s" in warnings[0].getMessage()


def test_a_server_error_on_a_create_is_returned_after_one_attempt(transport: Transport) -> None:
    with _server(_answer("503 Service Unavailable")) as (url, seen):
        response = transport.send("POST", f"{url}/users", route="/users", idempotent=False, json_body={})
    assert response.status == 503 and len(seen) == 1 and transport.retries == 0
