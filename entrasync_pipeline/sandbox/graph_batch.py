"""JSON batching for the Graph emulator: ``POST /v1.0/$batch`` (concepts/json-batching.md).

A batch holds up to 20 steps ``{id, method, url, headers?, body?, dependsOn?}``; ``url`` is
relative to the version (``/users/{id}?$select=…`` or ``users/{id}``). Each step is served by
the server exactly like a request on the wire (``Request.serve_embedded``): same route, handler,
roles (the batch's own ``Authorization`` applies), errors, ``x-ms-resource-unit`` and fault rules
of its route, so one step can get its own 429 with ``Retry-After`` ("requests in a batch are
evaluated individually against the applicable throttling limits"). The answer is
``{"responses": [{id, status, headers, body}]}`` in an order of the server's choosing, as the
docs allow: the sandbox returns them in reverse order of execution so that a client which
pairs responses with requests by position fails here, not in production.

Whole-batch 400s (malformed payload, more than 20 steps, duplicate ids, unknown or cyclic
``dependsOn``, a write without ``Content-Type`` or body) fail before any step runs, as Graph's
batch validation does. A step whose dependency failed answers 424. This module must not know
Graph's routes or roles; ``graph.py`` does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from email.message import Message
from typing import Any, Callable
from urllib.parse import parse_qsl

from entrasync_pipeline.sandbox.httpd import Request, Response

MAX_BATCH_REQUESTS = 20  # json-batching.md: "JSON batch requests are currently limited to 20 individual requests."
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Transport headers of the batch itself; a step's response carries the others (json-batching.md example).
HEADERS_NOT_IN_STEPS = frozenset(
    {"request-id", "client-request-id", "x-ms-ags-diagnostic", "strict-transport-security"}
)


class BatchRejected(Exception):
    """The whole batch is refused with 400 before any step runs."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Step:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    depends_on: tuple[str, ...]


def parse_batch(payload: Any) -> list[Step]:
    """The batch's steps in an order that honours ``dependsOn``; raises ``BatchRejected``."""
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BatchRejected("Invalid batch payload format.")
    if len(requests) > MAX_BATCH_REQUESTS:
        # Graph's words, recorded in microsoftgraph/microsoftgraph-postman-collections#9.
        raise BatchRejected("Number of requests inside batch exceeds the limit.")
    steps = [_step(raw) for raw in requests]
    ids = [s.id.lower() for s in steps]  # "Not case-sensitive. Must be unique in the batch"
    duplicate = next((s.id for s, i in zip(steps, ids) if ids.count(i) > 1), None)
    if duplicate is not None:
        raise BatchRejected(f"Batch request contains duplicate request id '{duplicate}'.")
    return _in_dependency_order(steps)


def _step(raw: Any) -> Step:
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k), str) and raw.get(k) for k in ("id", "method", "url")
    ):
        raise BatchRejected("Invalid batch payload format: every request needs an id, a method and a url.")
    method = raw["method"].upper()
    if method not in METHODS:
        raise BatchRejected(f"Invalid HTTP method '{raw['method']}' in request id : {raw['id']}.")
    headers = raw.get("headers") or {}
    depends_on = raw.get("dependsOn") or []
    if not isinstance(headers, dict) or not isinstance(depends_on, list):
        raise BatchRejected(f"Invalid batch payload format in request id : {raw['id']}.")
    headers = {str(k): str(v) for k, v in headers.items()}
    has_type = any(k.lower() == "content-type" for k in headers)
    if method in WRITE_METHODS and ("body" not in raw or not has_type):
        raise BatchRejected(f"Write request id : {raw['id']} does not contain Content-Type header or body.")
    return Step(raw["id"], method, raw["url"], headers, _body(raw), tuple(str(d) for d in depends_on))


def _body(raw: dict[str, Any]) -> bytes:
    """A JSON body as JSON; a string body is base64 (json-batching.md: "a base64 URL-encoded value")."""
    body = raw.get("body")
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise BatchRejected(f"The body of request id : {raw['id']} is not valid base64.") from None
    return json.dumps(body).encode()


def _in_dependency_order(steps: list[Step]) -> list[Step]:
    by_id = {s.id.lower(): s for s in steps}
    ordered: list[Step] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(step: Step) -> None:
        key = step.id.lower()
        if key in placed:
            return
        if key in visiting:
            raise BatchRejected(f"Request id : {step.id} has a circular dependsOn.")
        visiting.add(key)
        for dependency in step.depends_on:
            if dependency.lower() not in by_id:
                raise BatchRejected(f"Request id : {step.id} depends on an unknown request id '{dependency}'.")
            place(by_id[dependency.lower()])
        visiting.discard(key)
        placed.add(key)
        ordered.append(step)

    for step in steps:
        place(step)
    return ordered


ErrorAnswer = Callable[[Request, int, str, str], Response]


def run_batch(steps: list[Step], outer: Request, error: ErrorAnswer) -> list[dict[str, Any]]:
    """Serve every step through the server; responses in reverse order of execution.

    ``error(request, status, code, message)`` renders the answers the batch gives itself: 424
    for a step whose dependency failed, 400 for a nested batch or an absolute URL (the url is
    relative, and "requests cannot contain a batch request payload": msgraph-sdk-design,
    BatchRequestContent).
    """
    assert outer.serve_embedded is not None, "the server sets serve_embedded on every routed request"
    statuses: dict[str, int] = {}
    responses = []
    for step in steps:
        request = _embedded_request(step, outer)
        failed = next((d for d in step.depends_on if statuses.get(d.lower(), 200) >= 400), None)
        if failed is not None:
            response = error(
                request, 424, "FailedDependency", f"Request id : {step.id} depends on request {failed}, which failed."
            )
        elif "://" in step.url:
            response = error(
                request, 400, "BadRequest", f"Request id : {step.id} has an absolute url; it must be relative."
            )
        elif request.path.rstrip("/").lower() == "/v1.0/$batch":
            response = error(request, 400, "BadRequest", "Nested $batch requests are not supported.")
        else:
            response = outer.serve_embedded(request)
        statuses[step.id.lower()] = response.status
        responses.append(_rendered(step.id, response))
    return responses[::-1]


def _embedded_request(step: Step, outer: Request) -> Request:
    path, _, raw_query = step.url.partition("?")
    headers = Message()
    for name, value in step.headers.items():
        if name.lower() != "authorization":
            headers[name] = value
    headers["Authorization"] = outer.header("Authorization")  # the batch's token applies to every step
    return Request(
        method=step.method,
        path="/v1.0/" + path.lstrip("/"),
        raw_query=raw_query,
        query=dict(parse_qsl(raw_query, keep_blank_values=True)),
        headers=headers,
        body=step.body,
        base_url=outer.base_url,
    )


def _rendered(step_id: str, response: Response) -> dict[str, Any]:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in HEADERS_NOT_IN_STEPS}
    content_type = headers.get("Content-Type", "")
    body: Any = None
    if response.body and content_type.startswith("application/json"):
        body = json.loads(response.body)
    elif response.body:
        body = response.body.decode("utf-8", errors="replace")
    return {"id": step_id, "status": response.status, "headers": headers, "body": body}
