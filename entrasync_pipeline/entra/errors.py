"""Errors of the Entra/Graph client. Callers branch on classes and codes, never on message text.

    GraphError
    ├── GraphTransportError          no (complete) response: timeout, connection, TLS, unreadable body
    ├── GraphResponseError           Graph answered with an error: status, method, route, code,
    │   │                            message, request-id (reference/microsoft-graph-and-msal.md §4.1)
    │   ├── GraphAuthorizationError  401 / 403: token invalid or a permission missing
    │   ├── GraphNotFoundError       404 Request_ResourceNotFound (e.g. a deleted group)
    │   └── DeltaResetRequired       400 syncStateNotFound, 410 Gone, resyncRequired: start a new round
    └── EntraAuthError               the token endpoint refused: error, error_description,
                                     correlation_id (msal's result), never the secret

No token or secret ever goes into a message.
"""

from __future__ import annotations


class GraphError(Exception):
    """Root of everything the Graph client raises."""


class GraphTransportError(GraphError):
    def __init__(self, method: str, route: str, kind: str, detail: str) -> None:
        super().__init__(f"{method} {route}: no response ({kind}: {detail})")
        self.method, self.route, self.kind, self.detail = method, route, kind, detail


class GraphResponseError(GraphError):
    def __init__(self, status: int, method: str, route: str, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{method} {route}: HTTP {status} {code}: {message} (request-id {request_id})")
        self.status, self.method, self.route = status, method, route
        self.code, self.message, self.request_id = code, message, request_id


class GraphAuthorizationError(GraphResponseError):
    pass


class GraphNotFoundError(GraphResponseError):
    pass


class DeltaResetRequired(GraphResponseError):
    pass


class EntraAuthError(GraphError):
    def __init__(self, error: str, description: str, correlation_id: str | None = None) -> None:
        super().__init__(f"Entra refused the token request: {error}: {description}")
        self.error, self.description, self.correlation_id = error, description, correlation_id
