"""The sandbox's HTTP(S) server: routing, the control API, counters and fault injection on the wire.

Each emulator (Graph + token endpoint, Zammad) is a ``SandboxApp``: it lists its routes and
shapes its own errors. This module owns what both share: TLS handshakes in worker threads,
keep-alive, route templates for the counters (``GET /v1.0/groups/{id}/members``), the
``/_sandbox`` control API (DESIGN.md §4.3) and carrying out fault decisions (status, reset,
truncated body, HTML error page, latency). A handler may serve requests embedded in its own
(``Request.serve_embedded``, for Graph's JSON batching): each is routed, counted under
``embedded`` and given its own fault decision like a request on the wire. It must not know Graph
or Zammad semantics.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError

from entrasync_pipeline.sandbox.faults import FaultConfig, FaultDecision, FaultEngine

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox"


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    query: dict[str, str]
    headers: Message
    body: bytes
    base_url: str
    params: dict[str, str] = field(default_factory=dict)
    route: str = ""
    # Set by the server for the handler: serve a request embedded in this one (JSON batching).
    serve_embedded: Callable[[Request], Response] | None = None
    # A wire fault (reset, truncate, html) decided for an embedded request: it hits this response.
    wire_fault: FaultDecision | None = None

    def json(self) -> Any:
        """Parse the body as JSON; raises ValueError on malformed input."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default) or default

    @property
    def url(self) -> str:
        return self.base_url + self.path + (f"?{self.raw_query}" if self.raw_query else "")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int,
    payload: Any,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, {"Content-Type": content_type, **(headers or {})})


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler

    def compile(self) -> re.Pattern[str]:
        parts = re.split(r"(\{[a-z_]+\})", self.template)
        regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{regex}$", re.IGNORECASE)


class SandboxApp(Protocol):
    name: str

    def routes(self) -> list[Route]: ...

    def reset(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def fault_response(self, request: Request, status: int, headers: dict[str, str]) -> Response: ...

    def html_error(self, status: int) -> Response: ...

    def not_found(self, request: Request) -> Response: ...


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = [(r, r.compile()) for r in routes]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, params, path_known); path_known tells a 405 from a 404."""
        path_known = False
        for route, pattern in self._routes:
            found = pattern.match(path)
            if not found:
                continue
            path_known = True
            if route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}, True
        return None, {}, path_known


class SandboxServer:
    """One emulator on 127.0.0.1 with TLS, its counters, its faults and its control API."""

    def __init__(
        self,
        app: SandboxApp,
        control_key: str,
        ssl_context: ssl.SSLContext | None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = app
        self.control_key = control_key
        self.faults = FaultEngine()
        self.router = Router(app.routes())
        self._stats: Counter[str] = Counter()
        self._embedded: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._ssl_context = ssl_context
        self._httpd = _ThreadingServer((host, port), _make_handler(self), ssl_context)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{self.app.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    # --- counters -------------------------------------------------------------------------
    def count(self, route_key: str, embedded: bool = False) -> None:
        with self._stats_lock:
            (self._embedded if embedded else self._stats)[route_key] += 1

    def stats(self) -> dict[str, Any]:
        """Requests on the wire per route (``total`` counts these only) and embedded ones apart."""
        with self._stats_lock:
            requests, embedded = dict(self._stats), dict(self._embedded)
        faults = self.faults.snapshot()
        return {
            "requests": requests,
            "total": sum(requests.values()),
            "embedded": embedded,
            "faults_injected": faults["injected"],
            "early_retries": faults["early_retries"],
        }

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()
            self._embedded.clear()
        self.faults.reset_counters()

    # --- dispatch ---------------------------------------------------------------------------
    def dispatch(self, request: Request) -> tuple[Response, FaultDecision | None]:
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request), None
        route, params, decision = self._route_and_decide(request, embedded=False)
        if decision.action in ("status",):
            return self.app.fault_response(request, decision.status, dict(decision.headers)), decision
        if decision.action == "html":
            return self.app.html_error(decision.status), decision
        if decision.action == "reset":
            return Response(0), decision
        if route is None:
            return self.app.not_found(request), decision
        request.serve_embedded = lambda inner: self._dispatch_embedded(request, inner)
        response = self._handle(route, params, request)
        if request.wire_fault is not None:
            decision = request.wire_fault
            if decision.action == "html":
                response = self.app.html_error(decision.status)
        return response, decision

    def _dispatch_embedded(self, outer: Request, request: Request) -> Response:
        """Serve a request embedded in ``outer``: its own route count, fault decision and handler.

        A status fault becomes this request's answer; a wire fault cannot cut one part of a
        response, so it is recorded on ``outer`` and carried out on the outer response.
        """
        route, params, decision = self._route_and_decide(request, embedded=True)
        if decision.action == "status":
            return self.app.fault_response(request, decision.status, dict(decision.headers))
        if decision.action is not None:
            outer.wire_fault = decision
            return self.app.fault_response(request, 500, {})
        if route is None:
            return self.app.not_found(request)
        return self._handle(route, params, request)

    def _route_and_decide(self, request: Request, embedded: bool) -> tuple[Route | None, dict[str, str], FaultDecision]:
        route, params, _ = self.router.match(request.method, request.path)
        route_key = f"{request.method} {route.template if route else request.path}"
        self.count(route_key, embedded)
        # "The same request" for punish-early-retry: same method, URL and body.
        identity = f"{request.method} {request.url} {hashlib.sha1(request.body).hexdigest()}"
        decision = self.faults.decide(route_key, identity)
        if decision.latency_s:
            time.sleep(decision.latency_s)
        return route, params, decision

    def _handle(self, route: Route, params: dict[str, str], request: Request) -> Response:
        request.params = params
        request.route = route.template
        try:
            return route.handler(request)
        except Exception:  # an emulator bug must show up as a 500, never kill the server
            log.exception("sandbox %s handler failed for %s %s", self.app.name, request.method, request.path)
            return self.app.fault_response(request, 500, {})

    def _control(self, request: Request) -> Response:
        if request.header("X-Sandbox-Key") != self.control_key:
            return json_response(401, {"error": "X-Sandbox-Key header missing or wrong"})
        action = (request.method, request.path[len(CONTROL_PREFIX) :].rstrip("/"))
        if action == ("POST", "/reset"):
            self.app.reset()
            self.faults.clear()
            self.reset_stats()
            gc.collect()
            gc.freeze()  # the new seeded state, like at start (serve.freeze_heap)
            return json_response(200, {"reset": True})
        if action == ("GET", "/stats"):
            return json_response(200, self.stats())
        if action == ("DELETE", "/stats"):
            self.reset_stats()
            return json_response(200, self.stats())
        if action == ("PUT", "/faults"):
            try:
                config = FaultConfig.model_validate(request.json() or {})
            except (ValueError, ValidationError) as exc:
                return json_response(400, {"error": f"invalid fault rules: {exc}"})
            self.faults.configure(config)
            return json_response(200, self.faults.snapshot())
        if action == ("GET", "/faults"):
            return json_response(200, self.faults.snapshot())
        if action == ("DELETE", "/faults"):
            self.faults.clear()
            return json_response(200, self.faults.snapshot())
        if action == ("GET", "/state"):
            return json_response(200, self.app.state())
        extra = getattr(self.app, "control", None)
        if extra is not None:
            handled = extra(request, action[1])
            if handled is not None:
                return handled
        return json_response(404, {"error": f"unknown control action {request.method} {request.path}"})


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], ssl_context: ssl.SSLContext | None
    ) -> None:
        self._ssl_context = ssl_context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the worker thread, so a slow client cannot stall accept().
        if self._ssl_context is not None:
            try:
                request.settimeout(30)
                request = self._ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def _make_handler(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes; without TCP_NODELAY, Nagle + delayed ACK
        # add ~40 ms to every keep-alive response and the sandbox, not the client, is measured.
        disable_nagle_algorithm = True
        server_version = "entrasync-sandbox"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", server.app.name, format % args)

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=split.path,
                raw_query=split.query,
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                headers=self.headers,
                body=body,
                base_url=server.base_url,
            )
            response, decision = server.dispatch(request)
            if decision is not None and decision.action == "reset":
                self._reset_connection()
                return
            payload = response.body
            if decision is not None and decision.action == "truncate":
                payload = payload[: max(1, len(payload) // 2)]
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _reset_connection(self) -> None:
            """Drop the connection with a TCP RST, as a crashed proxy would."""
            self.close_connection = True
            try:
                raw = self.connection
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
            except OSError:
                pass

        def finish(self) -> None:
            try:
                super().finish()
            except OSError:
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler
