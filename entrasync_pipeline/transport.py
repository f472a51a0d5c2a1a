"""HTTP transport shared by the Graph and Zammad clients: TLS, timeouts and the one retry policy.

Retries live here and nowhere else (STYLE.md §2.4): 429, 500, 502, 503, 504, dropped
connections, timeouts and unreadable bodies are retried for idempotent requests only (reads and
PUT to a known id), with capped exponential backoff and jitter; a Retry-After (integer,
fractional seconds or HTTP-date) is always honoured in full, never shortened, because Graph keeps
counting usage while a client retries early (reference/microsoft-graph-and-msal.md §4.2). A
non-idempotent request (a create) is sent once; an ambiguous failure is reported as such so
``apply`` can look before it tries again. TLS is always verified; ``trust_env`` is off so
``REQUESTS_CA_BUNDLE`` cannot override the configured CA (reference §5.2).
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from entrasync_pipeline.settings import HttpSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class NoResponse(Exception):
    """No (complete) response arrived: connection refused or reset, timeout, TLS failure."""

    def __init__(self, kind: str, detail: str, ambiguous: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.ambiguous = kind, detail, ambiguous


class RetriesExhausted(Exception):
    """The last attempt still failed with a retryable status; ``response`` is that answer."""

    def __init__(self, response: "HttpResponse") -> None:
        super().__init__(f"HTTP {response.status} after retries")
        self.response = response


class RetryAfterTooLong(Exception):
    def __init__(self, response: "HttpResponse", seconds: float) -> None:
        super().__init__(f"server asked to wait {seconds:.0f}s")
        self.response, self.seconds = response, seconds


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    _parsed: Any = field(default=None, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        """Parse the body; raises ValueError for HTML pages and truncated JSON alike."""
        if self._parsed is None:
            if "json" not in self.content_type:
                raise ValueError(f"expected JSON, got {self.content_type or 'no content type'}")
            self._parsed = json.loads(self.body.decode("utf-8"))
        return self._parsed

    def text_excerpt(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace").replace("\n", " ").strip()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an integer, fractional or HTTP-date Retry-After; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class _Retry(Exception):
    """A retryable outcome; ``refused`` when the server certainly did not act (429, connection refused)."""

    def __init__(self, wait_s: float | None, reason: str, response: HttpResponse | None = None,
                 no_response: NoResponse | None = None, refused: bool = False) -> None:
        super().__init__(reason)
        self.wait_s, self.reason, self.response, self.no_response = wait_s, reason, response, no_response
        self.refused = refused


class Transport:
    """A verified, pooled HTTPS session with the retry policy; one per client."""

    def __init__(self, http: HttpSettings, ca_bundle: str | None, name: str, pool_size: int = 16,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.http, self.name = http, name
        self.session = requests.Session()
        self.session.verify = ca_bundle or True
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._local = threading.local()
        self.retries = 0
        self.throttled = 0

    def take_thread_throttles(self) -> int:
        """429s this thread met since the last call (lets ``apply`` adapt its concurrency)."""
        count = getattr(self._local, "throttled", 0)
        self._local.throttled = 0
        return count

    def close(self) -> None:
        self.session.close()

    def send(self, method: str, url: str, *, route: str, idempotent: bool,
             params: dict[str, Any] | None = None, json_body: Any = None, data: Any = None,
             headers: dict[str, str] | None = None, expect_json: bool = True) -> HttpResponse:
        """Send with retries; returns the final response.

        An idempotent request is retried on every retryable outcome. Any other request (a create)
        is retried only when the server certainly did not act on it: a 429 refusal or a refused
        connection. Everything else is left to the caller, who must look before sending again.
        """
        retrying = Retrying(stop=stop_after_attempt(self.http.max_attempts), wait=self._wait,
                            retry=retry_if_exception(lambda e: isinstance(e, _Retry) and (idempotent or e.refused)),
                            reraise=True,
                            sleep=self._sleep, before_sleep=self._before_sleep(method, route))
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, url, route, params, json_body, data, headers, expect_json)
        except _NoRetry as stop:
            assert stop.inner.response is not None and stop.inner.wait_s is not None
            raise RetryAfterTooLong(stop.inner.response, stop.inner.wait_s) from None
        except _Retry as final:
            if final.no_response is not None:
                raise final.no_response from None
            assert final.response is not None
            raise RetriesExhausted(final.response) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method: str, url: str, route: str, params: dict[str, Any] | None, json_body: Any,
                 data: Any, headers: dict[str, str] | None, expect_json: bool) -> HttpResponse:
        started = time.monotonic()
        try:
            raw = self.session.request(method, url, params=params, json=json_body, data=data, headers=headers,
                                       timeout=(self.http.connect_timeout_s, self.http.read_timeout_s))
            body = raw.content
        except requests.exceptions.SSLError as exc:
            raise NoResponse("tls", _describe(exc), ambiguous=False) from None
        except requests.exceptions.ConnectTimeout as exc:
            raise _Retry(None, "connect timeout", no_response=NoResponse("connect-timeout", _describe(exc), False),
                         refused=True) from None
        except requests.exceptions.ConnectionError as exc:
            refused = _refused(exc)
            raise _Retry(None, "connection error", no_response=NoResponse("connection", _describe(exc), not refused),
                         refused=refused) from None
        except (requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retry(None, "read timeout", no_response=NoResponse("read-timeout", _describe(exc), True)) from None
        response = HttpResponse(raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, body,
                                time.monotonic() - started)
        log.debug("%s %s %s -> %s in %.0f ms (request-id %s)", self.name, method, route, response.status,
                  response.elapsed_s * 1000, response.headers.get("request-id") or response.headers.get("x-request-id"))
        if response.status in RETRY_STATUSES:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if response.status == 429:
                with self._lock:
                    self.throttled += 1
                self._local.throttled = getattr(self._local, "throttled", 0) + 1
            if wait is not None and wait > self.http.max_retry_after_s:
                raise _NoRetry(_Retry(wait, "retry-after too long", response=response))
            raise _Retry(wait, f"HTTP {response.status}", response=response, refused=response.status == 429)
        if expect_json and response.status < 300 and response.body:
            try:
                response.json()
            except ValueError:
                unreadable = NoResponse("unreadable-body", f"HTTP {response.status} with a body that is not "
                                        f"valid JSON ({response.content_type or 'no content type'})", True)
                raise _Retry(None, "unreadable body", no_response=unreadable) from None
        return response

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        backoff = min(self.http.backoff_max_s, self.http.backoff_base_s * 2 ** (state.attempt_number - 1))
        backoff = random.uniform(backoff / 2, backoff)
        if isinstance(error, _Retry) and error.wait_s is not None:
            # Never earlier than the server asked; a little later spreads concurrent retries.
            return error.wait_s + random.uniform(0.01, 0.05 + 0.1 * error.wait_s)
        return backoff

    def _before_sleep(self, method: str, route: str) -> Callable[[RetryCallState], None]:
        def note(state: RetryCallState) -> None:
            with self._lock:
                self.retries += 1
            error = state.outcome.exception() if state.outcome else None
            log.info("%s %s %s: %s, retry %d in %.2fs", self.name, method, route,
                     getattr(error, "reason", error), state.attempt_number,
                     state.next_action.sleep if state.next_action else 0.0)
        return note


class _NoRetry(Exception):
    """Wraps a final answer that must not be retried (Retry-After beyond the configured bound)."""

    def __init__(self, inner: _Retry) -> None:
        super().__init__(inner.reason)
        self.inner = inner


def _refused(exc: Exception) -> bool:
    """A refused connection never reached the server, so even a create may be resent."""
    text = repr(exc)
    return "ConnectionRefusedError" in text or "Connection refused" in text or "NewConnectionError" in text


def _describe(exc: Exception) -> str:
    """A short description that never includes request headers or bodies (they carry secrets)."""
    reason = getattr(exc, "args", [None])[0]
    text = str(getattr(reason, "reason", reason) or type(exc).__name__)
    return text.split(" (Caused by")[0][:200]
