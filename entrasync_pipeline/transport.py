"""HTTP transport shared by the Graph and Zammad clients: TLS, timeouts and the one retry policy.

Retries live here and nowhere else (STYLE.md §2.4): 429, 500, 502, 503, 504, dropped
connections, timeouts and unreadable bodies are retried for idempotent requests only (reads and
PUT to a known id), with capped exponential backoff and jitter; a Retry-After (integer,
fractional seconds or HTTP-date) is always honoured in full, never shortened, because Graph keeps
counting usage while a client retries early (reference/microsoft-graph-and-msal.md §4.2). A
non-idempotent request (a create) is sent once; an ambiguous failure is reported as such so
``apply`` can look before it tries again. TLS is always verified; ``trust_env`` is off so
``REQUESTS_CA_BUNDLE`` cannot override the configured CA (reference §5.2); the proxy comes from
``settings.proxy_settings`` instead (``http.proxy``, HTTPS_PROXY, NO_PROXY), chosen per request by
``proxy.choose``. Through a proxy an https:// request is a CONNECT tunnel and TLS is still verified
against the origin's certificate. A proxy that refuses the tunnel (403, 407) is not retried: the
request never reached the server and the answer will not change; an unreachable proxy is retried
like a refused connection.

``send`` returns the final answer even when it is still a retryable status (attempts used up, or a
Retry-After beyond ``max_retry_after_s``): only the client knows how to turn a status into its own
error with the server's words, so the transport does not invent a second error for it. It raises
``NoResponse`` only when no complete answer arrived. It never raises a requests/urllib3 exception.
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
from urllib3.exceptions import NewConnectionError

from entrasync_pipeline.proxy import choose, display
from entrasync_pipeline.settings import HttpSettings, Proxies

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class NoResponse(Exception):
    """No (complete) response arrived: connection refused or reset, timeout, TLS failure."""

    def __init__(self, kind: str, detail: str, ambiguous: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.ambiguous = kind, detail, ambiguous


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
    """A retryable outcome; ``refused`` when the server certainly did not act (429, connection refused).

    ``final`` marks an answer that must not be retried although its status is retryable: the
    server asked to wait longer than ``max_retry_after_s``.
    """

    def __init__(
        self,
        wait_s: float | None,
        reason: str,
        response: HttpResponse | None = None,
        no_response: NoResponse | None = None,
        refused: bool = False,
        final: bool = False,
    ) -> None:
        super().__init__(reason)
        self.wait_s, self.reason, self.response, self.no_response = wait_s, reason, response, no_response
        self.refused, self.final = refused, final


class Transport:
    """A verified, pooled HTTPS session with the retry policy; one per client."""

    def __init__(
        self,
        http: HttpSettings,
        ca_bundle: str | None,
        name: str,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        proxies: Proxies | None = None,
    ) -> None:
        self.http, self.name = http, name
        self.proxies = proxies or Proxies({}, ())
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

    def pause(self, seconds: float) -> None:
        """Wait as the retry policy waits (a test transport may not really sleep)."""
        self._sleep(seconds)

    def send(
        self,
        method: str,
        url: str,
        *,
        route: str,
        idempotent: bool,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        expect_json: bool = True,
    ) -> HttpResponse:
        """Send with retries; returns the final response, whatever its status.

        An idempotent request is retried on every retryable outcome. Any other request (a create)
        is retried only when the server certainly did not act on it: a 429 refusal or a refused
        connection. Everything else is left to the caller, who must look before sending again.
        The returned response may still carry a retryable status (429/5xx) when the attempts ran
        out, the request was not idempotent, or the server asked to wait longer than
        ``max_retry_after_s``; the caller turns it into its own error. Raises ``NoResponse`` when
        no complete response arrived on the last attempt.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.http.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retry) and not e.final and (idempotent or e.refused)),
            reraise=True,
            sleep=self._sleep,
            before_sleep=self._before_sleep(method, route),
        )
        attempts = 0
        try:
            for attempt in retrying:
                attempts += 1
                with attempt:
                    return self._attempt(method, url, route, params, json_body, data, headers, expect_json)
        except _Retry as last:
            if last.no_response is not None:
                raise last.no_response from None
            assert last.response is not None
            self._log_giving_up(method, route, last, attempts, idempotent)
            return last.response
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_giving_up(self, method: str, route: str, last: _Retry, attempts: int, idempotent: bool) -> None:
        """One line saying why a retryable status is handed back, so the operator sees the cause."""
        assert last.response is not None
        status = last.response.status
        if last.final:
            log.warning(
                "%s %s %s: HTTP %d asks to wait %.0fs, longer than max_retry_after_s=%.0fs; not waiting",
                self.name,
                method,
                route,
                status,
                last.wait_s or 0.0,
                self.http.max_retry_after_s,
            )
        elif not idempotent and not last.refused:
            log.info(
                "%s %s %s: HTTP %d on a non-idempotent request; not resent (the server may have acted)",
                self.name,
                method,
                route,
                status,
            )
        else:
            log.warning(
                "%s %s %s: still HTTP %d after %d attempts; giving up", self.name, method, route, status, attempts
            )

    def _attempt(
        self,
        method: str,
        url: str,
        route: str,
        params: dict[str, Any] | None,
        json_body: Any,
        data: Any,
        headers: dict[str, str] | None,
        expect_json: bool,
    ) -> HttpResponse:
        started = time.monotonic()
        proxy = choose(self.proxies, url)
        via = f" (via {display(proxy)})" if proxy else ""  # which way the request went, never a password
        try:
            raw = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=(self.http.connect_timeout_s, self.http.read_timeout_s),
                proxies={"all": proxy.url.reveal()} if proxy else {},
            )
            body = raw.content
        except requests.exceptions.SSLError as exc:
            raise NoResponse("tls", _describe(exc) + via, ambiguous=False) from None
        except requests.exceptions.ProxyError as exc:
            failure = NoResponse("proxy", f"{display(proxy) if proxy else 'proxy'}: {_proxy_reason(exc)}", False)
            if _refused(exc):
                raise _Retry(None, "proxy unreachable", no_response=failure, refused=True) from None
            raise failure from None
        except requests.exceptions.ConnectTimeout as exc:
            raise _Retry(
                None,
                "connect timeout",
                no_response=NoResponse("connect-timeout", _describe(exc) + via, False),
                refused=True,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            refused = _refused(exc)
            raise _Retry(
                None,
                "connection error",
                no_response=NoResponse("connection", _describe(exc) + via, not refused),
                refused=refused,
            ) from None
        except requests.exceptions.Timeout as exc:
            raise _Retry(None, "read timeout", no_response=NoResponse("read-timeout", _describe(exc), True)) from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise _Retry(
                None, "incomplete body", no_response=NoResponse("incomplete-body", _describe(exc), True)
            ) from None
        response = HttpResponse(
            raw.status_code, {k.lower(): v for k, v in raw.headers.items()}, body, time.monotonic() - started
        )
        log.debug(
            "%s %s %s -> %s in %.0f ms (request-id %s)",
            self.name,
            method,
            route,
            response.status,
            response.elapsed_s * 1000,
            response.headers.get("request-id") or response.headers.get("x-request-id"),
        )
        if response.status in RETRY_STATUSES:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if response.status == 429:
                with self._lock:
                    self.throttled += 1
                self._local.throttled = getattr(self._local, "throttled", 0) + 1
            if wait is not None and wait > self.http.max_retry_after_s:
                raise _Retry(wait, "retry-after too long", response=response, final=True)
            raise _Retry(wait, f"HTTP {response.status}", response=response, refused=response.status == 429)
        if expect_json and response.status < 300 and response.body:
            try:
                response.json()
            except ValueError:
                unreadable = NoResponse(
                    "unreadable-body",
                    f"HTTP {response.status} with a body that is not "
                    f"valid JSON ({response.content_type or 'no content type'})",
                    True,
                )
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
            log.info(
                "%s %s %s: %s, retry %d in %.2fs",
                self.name,
                method,
                route,
                getattr(error, "reason", error),
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
            )

        return note


# A connection that never opened cannot have delivered a request. urllib3 raises
# NewConnectionError (NameResolutionError is a subclass) only while opening the socket, before a
# byte is sent; ConnectionRefusedError is the OS saying nothing listens on that port.
_NEVER_CONNECTED = (ConnectionRefusedError, NewConnectionError)


def _refused(exc: BaseException) -> bool:
    """A refused connection never reached the server, so even a create may be resent.

    Walks the exception chain by type, never by message text: requests wraps urllib3's
    MaxRetryError in ``args``, which keeps the underlying error in ``reason``, which in turn was
    raised ``from`` the OS error. Only a connection that never opened counts; a reset or a
    timeout on an open connection stays ambiguous, because the request may have been read.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NEVER_CONNECTED):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return False


def _describe(exc: Exception) -> str:
    """A short description that never includes request headers or bodies (they carry secrets)."""
    reason = getattr(exc, "args", [None])[0]
    text = str(getattr(reason, "reason", reason) or type(exc).__name__)
    return text.split(" (Caused by")[0][:200]


def _proxy_reason(exc: Exception) -> str:
    """What went wrong at the proxy (e.g. ``Tunnel connection failed: 403 Forbidden``), without its URL.

    urllib3 keeps the underlying error of its ProxyError in ``original_error``; the proxy URL, which
    may hold a password, is never part of it.
    """
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    original = getattr(reason, "original_error", None) or reason or exc
    return str(original).split(" (Caused by")[0][:200]
