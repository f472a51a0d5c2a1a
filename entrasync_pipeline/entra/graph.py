"""Microsoft Graph client: group members (every page) and group delta rounds.

Reads ``/groups/{id}/members`` (or ``/transitiveMembers``) with ``$select`` of exactly the
properties the mapping needs and ``$top=999``, follows ``@odata.nextLink`` as is, and filters
member types client-side: no cast and no advanced query, so results never come from the lagging
eventual-consistency index (reference/microsoft-graph-and-msal.md §1.2–1.3). A 401 for an expired
token drops msal's cached token and tries once more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote

from entrasync_pipeline.entra.credential import EntraCredential
from entrasync_pipeline.entra.errors import (
    DeltaResetRequired,
    GraphAuthorizationError,
    GraphNotFoundError,
    GraphResponseError,
    GraphTransportError,
)
from entrasync_pipeline.settings import EntraSettings
from entrasync_pipeline.transport import HttpResponse, NoResponse, Transport

log = logging.getLogger(__name__)

PAGE_SIZE = 999


@dataclass
class DeltaRound:
    """One delta round: member changes per group and the deltaLink to store."""

    delta_link: str
    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.removed.values())


class GraphClient:
    """A plain client: settings, a credential and a transport in; typed records out."""

    def __init__(self, entra: EntraSettings, credential: EntraCredential, transport: Transport) -> None:
        self.entra, self.credential, self.transport = entra, credential, transport
        self.base = f"{entra.graph_url}/v1.0"

    def __enter__(self) -> "GraphClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.transport.close()

    # --- the one request path ----------------------------------------------------------------
    def _request(self, method: str, url: str, route: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.credential.token()}", "Accept": "application/json"}
            try:
                response = self.transport.send(
                    method, url, route=route, idempotent=True, params=params, headers=headers
                )
            except NoResponse as exc:
                raise GraphTransportError(method, route, exc.kind, exc.detail) from None
            if response.status == 401 and attempt == 1:
                log.info("Graph answered 401 on %s; fetching a new token once", route)
                self.credential.drop_cached_token()
                continue
            if response.status >= 400:
                raise _graph_error(method, route, response)
            return response.json()
        raise AssertionError("unreachable")  # pragma: no cover

    def _pages(self, url: str, route: str, params: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        body = self._request("GET", url, route, params)
        yield body
        while "@odata.nextLink" in body:
            body = self._request("GET", body["@odata.nextLink"], route)
            yield body

    # --- members -----------------------------------------------------------------------------------
    def group_members(self, group_id: str, select: list[str], transitive: bool = False) -> Iterator[dict[str, Any]]:
        """Every member item of a group, all pages, each with its ``@odata.type``."""
        relation = "transitiveMembers" if transitive else "members"
        url = f"{self.base}/groups/{quote(group_id)}/{relation}"
        params = {"$select": ",".join(select), "$top": str(PAGE_SIZE)}
        for page in self._pages(url, f"/v1.0/groups/{{id}}/{relation}", params):
            yield from page.get("value", [])

    def user(self, user_id: str, select: list[str]) -> dict[str, Any] | None:
        """One user, or None when it does not exist (deleted since)."""
        try:
            return self._request(
                "GET", f"{self.base}/users/{quote(user_id)}", "/v1.0/users/{id}", {"$select": ",".join(select)}
            )
        except GraphNotFoundError:
            return None

    # --- delta ---------------------------------------------------------------------------------------
    def group_delta(self, group_ids: list[str], delta_link: str | None) -> DeltaRound:
        """Follow one delta round to its deltaLink; merge ``members@delta`` per group (§3.1).

        Raises DeltaResetRequired when the stored link expired (400 syncStateNotFound) or the
        service asks for a full resync (410); the caller then starts a fresh round.
        """
        if delta_link:
            url, params = delta_link, None
        else:
            filter_ = " or ".join(f"id eq '{g}'" for g in group_ids[:50])
            url, params = f"{self.base}/groups/delta", {"$filter": filter_, "$select": "members"}
        round_ = DeltaRound(delta_link="")
        body = self._request("GET", url, "/v1.0/groups/delta", params)
        while True:
            for group in body.get("value", []):
                for member in group.get("members@delta", []):
                    bucket = round_.removed if "@removed" in member else round_.added
                    bucket.setdefault(group["id"], set()).add(member["id"])
            if "@odata.deltaLink" in body:
                round_.delta_link = body["@odata.deltaLink"]
                return round_
            body = self._request("GET", body["@odata.nextLink"], "/v1.0/groups/delta")

    def group_delta_latest(self, group_ids: list[str]) -> str:
        """A deltaLink for "from now on" without downloading the current state (§3.1)."""
        body = self._request("GET", f"{self.base}/groups/delta", "/v1.0/groups/delta", _delta_latest_params(group_ids))
        return str(body["@odata.deltaLink"])


def _delta_latest_params(group_ids: list[str]) -> dict[str, str]:
    return {
        "$filter": " or ".join(f"id eq '{g}'" for g in group_ids[:50]),
        "$select": "members",
        "$deltatoken": "latest",
    }


def _graph_error(method: str, route: str, response: HttpResponse) -> GraphResponseError:
    try:
        error = response.json().get("error", {})
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        code, message = "NonJsonResponse", f"{response.content_type or 'no content type'}: {response.text_excerpt(120)}"
    request_id = response.headers.get("request-id")
    args = (response.status, method, route, code, message, request_id)
    if response.status == 410 or code in ("syncStateNotFound", "resyncRequired"):
        return DeltaResetRequired(*args)
    if response.status in (401, 403):
        return GraphAuthorizationError(*args)
    if response.status == 404:
        return GraphNotFoundError(*args)
    return GraphResponseError(*args)
