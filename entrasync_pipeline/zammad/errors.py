"""Errors of the Zammad client. Callers branch on classes and statuses, never on message text.

    ZammadError
    ├── ZammadTransportError       no (complete) response; ``ambiguous`` when a write may have
    │                              reached the server (timeout, reset, unreadable body)
    └── ZammadResponseError        Zammad answered with an error: status, method, route and
        │                          ``error_human`` from the {error, error_human} envelope (or an
        │                          excerpt of a proxy's non-JSON page)
        ├── ZammadAuthError        401 / 403
        ├── ZammadNotFoundError    404
        ├── ZammadValidationError  422 (duplicate email, invalid value, last admin, ...)
        └── ZammadServerError      5xx, also after retries

No token ever goes into a message.
"""

from __future__ import annotations


class ZammadError(Exception):
    """Root of everything the Zammad client raises."""


class ZammadTransportError(ZammadError):
    def __init__(self, method: str, route: str, kind: str, detail: str, ambiguous: bool) -> None:
        super().__init__(f"{method} {route}: no response ({kind}: {detail})")
        self.method, self.route, self.kind, self.detail, self.ambiguous = method, route, kind, detail, ambiguous


class ZammadResponseError(ZammadError):
    def __init__(self, status: int, method: str, route: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{method} {route}: HTTP {status}: {message}")
        self.status, self.method, self.route, self.message = status, method, route, message
        self.retry_after_s = retry_after_s

    @property
    def ambiguous(self) -> bool:
        """A 5xx on a write may or may not have been applied."""
        return self.status >= 500


class ZammadAuthError(ZammadResponseError):
    pass


class ZammadNotFoundError(ZammadResponseError):
    pass


class ZammadValidationError(ZammadResponseError):
    pass


class ZammadServerError(ZammadResponseError):
    pass
