"""The Graph emulator's error answers, raised inside handlers and rendered by ``graph.py`` in the
shape of reference/microsoft-graph-and-msal.md §4.1.

Codes and messages are the real service's where a source records them (§4.1 table, the cited
pages); the few the sandbox had to word itself are listed in docs/sandbox.md.
"""

from __future__ import annotations

SYNC_STATE_NOT_FOUND = (
    "The sync state generation is not found. The delta token is expired and data must be synchronized again."
)
RESYNC_REQUIRED = (
    "Resync required. Replace any local items with the server's version (including deletes) if you're "
    "sure that the service was up to date with your local changes when you last synced."
)


class GraphError(Exception):
    """Raised inside a handler; rendered as a Graph error response."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def unsupported_query(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def sync_state_not_found() -> GraphError:
    """400 for an expired or unknown delta token (§3.3)."""
    return GraphError(400, "syncStateNotFound", SYNC_STATE_NOT_FOUND)


def resync_required(location: str) -> GraphError:
    """410 after a synchronization reset; ``Location`` restarts the round (§3.3)."""
    return GraphError(410, "resyncRequired", RESYNC_REQUIRED, {"Location": location})
