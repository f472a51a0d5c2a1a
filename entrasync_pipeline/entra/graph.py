"""Microsoft Graph client: group members (every page), targeted reads and the change feed.

Reads ``/groups/{id}/members`` (or ``/transitiveMembers``) with ``$select`` of exactly the
properties the mapping needs and ``$top=999``, follows ``@odata.nextLink`` as is, and filters
member types client-side: no cast and no advanced query, so results never come from the lagging
eventual-consistency index (reference/microsoft-graph-and-msal.md §1.2–1.3). A 401 for an expired
token drops msal's cached token and tries once more.

Targeted reads go through JSON ``$batch`` (20 sub-requests per request, each answered on its own:
a sub-request's 429 is waited out and sent again). The change feed is two delta queries: users
(properties, ``@removed``) and groups (``members@delta``), the latter in filters of at most 50 ids
(reference §3), as many as the watched groups need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote

from entrasync_pipeline.contacts import CONTACT_TYPE
from entrasync_pipeline.entra.credential import EntraCredential
from entrasync_pipeline.entra.errors import (
    DeltaResetRequired,
    GraphAuthorizationError,
    GraphNotFoundError,
    GraphResponseError,
    GraphTransportError,
)
from entrasync_pipeline.settings import EntraSettings
from entrasync_pipeline.transport import HttpResponse, NoResponse, Transport, parse_retry_after

log = logging.getLogger(__name__)

PAGE_SIZE = 999
BATCH_LIMIT = 20  # sub-requests per $batch (Graph's limit)
DELTA_FILTER_LIMIT = 50  # ids per "id eq … or …" delta filter (Graph's limit)
CHECK_GROUPS_LIMIT = 20  # groupIds per checkMemberGroups call (Graph's limit)
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"


@dataclass
class DeltaRound:
    """One delta round: member changes per group and the deltaLink to store."""

    delta_link: str
    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)

    types: dict[str, str] = field(default_factory=dict)  # member id → @odata.type

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.removed.values())


@dataclass
class UserDeltaRound:
    """One users/delta round: changed users (with their selected properties) and removed ids."""

    delta_link: str
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # id → @removed reason

    @property
    def ids(self) -> set[str]:
        return set(self.changed) | set(self.removed)


@dataclass(frozen=True)
class BatchReply:
    """One sub-response of a $batch: its status and JSON body."""

    status: int
    body: Any

    def error(self, method: str, route: str) -> GraphResponseError:
        error = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        args = (self.status, method, route, str(error.get("code", "")), str(error.get("message", "")), None)
        return GraphNotFoundError(*args) if self.status == 404 else GraphResponseError(*args)


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
    def _request(
        self,
        method: str,
        url: str,
        route: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        extra_headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Every call here reads (POSTs included: $batch of reads, checkMemberGroups): all idempotent."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.credential.token()}", "Accept": "application/json"}
            headers.update(extra_headers or {})
            try:
                response = self.transport.send(
                    method, url, route=route, idempotent=True, params=params, json_body=body, headers=headers
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

    def _pages(
        self, url: str, route: str, params: dict[str, str] | None, headers: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        body = self._request("GET", url, route, params, extra_headers=headers)
        yield body
        while "@odata.nextLink" in body:
            body = self._request("GET", body["@odata.nextLink"], route, extra_headers=headers)
            yield body

    # --- members -----------------------------------------------------------------------------------
    def group_members(self, group_id: str, select: list[str], transitive: bool = False) -> Iterator[dict[str, Any]]:
        """Every member item of a group, all pages, each with its ``@odata.type``."""
        relation = "transitiveMembers" if transitive else "members"
        url = f"{self.base}/groups/{quote(group_id)}/{relation}"
        params = {"$select": ",".join(select), "$top": str(PAGE_SIZE)}
        for page in self._pages(url, f"/v1.0/groups/{{id}}/{relation}", params):
            yield from page.get("value", [])

    def contacts(self, select: list[str]) -> Iterator[dict[str, Any]]:
        """Every organizational contact of the tenant, all pages, each marked ``@odata.type``
        (an entity set's items carry none; a member list's do)."""
        params = {"$select": ",".join(select), "$top": str(PAGE_SIZE)}
        try:
            for page in self._pages(f"{self.base}/contacts", "/v1.0/contacts", params):
                for item in page.get("value", []):
                    yield {"@odata.type": CONTACT_TYPE, **item}
        except GraphAuthorizationError as exc:  # Graph's words, and the permission it means
            hint = (
                f"{exc.message} (contacts: all reads /contacts: grant the application permission OrgContact.Read.All)"
            )
            raise GraphAuthorizationError(exc.status, exc.method, exc.route, exc.code, hint, exc.request_id) from None

    def user(self, user_id: str, select: list[str]) -> dict[str, Any] | None:
        """One user, or None when it does not exist (deleted since)."""
        return self._get_or_none(f"{self.base}/users/{quote(user_id)}", "/v1.0/users/{id}", select)

    def _get_or_none(self, url: str, route: str, select: list[str]) -> dict[str, Any] | None:
        try:
            return self._request("GET", url, route, {"$select": ",".join(select)})
        except GraphNotFoundError:
            return None

    def group(self, group_id: str) -> dict[str, Any]:
        """One group's id and displayName; raises GraphNotFoundError when there is no such group.

        A cheap read that proves the token, the app's group permission and the id (``status --probe``).
        """
        params = {"$select": "id,displayName"}
        return self._request("GET", f"{self.base}/groups/{quote(group_id)}", "/v1.0/groups/{id}", params)

    def deleted_users(self, user_ids: list[str], entity: str = "users") -> set[str]:
        """The ids Graph answers 404 for (deleted, or never existed), asked in $batch requests;
        ``entity``: contacts for the ids of contacts.

        Any other error is raised: a relink must rest on Graph's word that the object is gone.
        """
        replies = self.batch([("GET", f"/{entity}/{quote(uid)}?$select=id", None) for uid in user_ids])
        gone = set()
        for uid, reply in zip(user_ids, replies):
            if reply.status == 404:
                gone.add(uid)
            elif reply.status >= 400:
                raise reply.error("GET", f"/v1.0/{entity}/{{id}}")
        return gone

    def find_user_id(self, identifier: str, entity: str = "users") -> str | None:
        """The object id of a user (or ``entity``: contacts) named by object id, UPN (users) or mail;
        None when there is none."""
        if entity == "users":
            found = self.user(identifier, ["id"])
        elif "@" not in identifier:  # a contact is addressed by object id only (no UPN)
            found = self._get_or_none(f"{self.base}/contacts/{quote(identifier)}", "/v1.0/contacts/{id}", ["id"])
        else:
            found = None
        if found is not None:
            return str(found["id"])
        if "@" not in identifier:
            return None
        literal = identifier.replace("'", "''")
        params = {"$filter": f"mail eq '{literal}'", "$select": "id"}
        hits = self._request("GET", f"{self.base}/{entity}", f"/v1.0/{entity}", params).get("value", [])
        return str(hits[0]["id"]) if len(hits) == 1 else None

    def nested_group_ids(self, group_id: str) -> set[str]:
        """Every group nested (at any depth) in a group: the groups a transitive profile must watch.

        A cast is an advanced query (ConsistencyLevel: eventual, $count); its lag only delays when
        a just-nested group is watched, and the nightly full run reconciles meanwhile.
        """
        url = f"{self.base}/groups/{quote(group_id)}/transitiveMembers/microsoft.graph.group"
        params = {"$select": "id", "$top": str(PAGE_SIZE), "$count": "true"}
        headers = {"ConsistencyLevel": "eventual"}
        route = "/v1.0/groups/{id}/transitiveMembers/microsoft.graph.group"
        return {str(g["id"]) for page in self._pages(url, route, params, headers) for g in page.get("value", [])}

    def user_ids_in(self, group_id: str, transitive: bool, kinds: tuple[str, ...] = (USER_TYPE,)) -> set[str]:
        """The ids of a group's user (or ``kinds``) members: whom a membership change of a nested group concerns."""
        return {
            str(m["id"])
            for m in self.group_members(group_id, ["id"], transitive=transitive)
            if m.get("@odata.type") in kinds
        }

    # --- $batch ----------------------------------------------------------------------------------------
    def batch(self, calls: list[tuple[str, str, Any]]) -> list[BatchReply]:
        """Send (method, relative url, body) calls as JSON batches; replies in the calls' order.

        A sub-request throttled (429) or refused for a moment (503/504) is sent again in a later
        batch after the longest Retry-After, up to ``http.max_attempts`` rounds; then its reply
        stands as it is and the caller turns it into an error.
        """
        replies: dict[int, BatchReply] = {}
        pending = list(range(len(calls)))
        for round_ in range(1, self.transport.http.max_attempts + 1):
            retry, wait = [], 0.0
            for chunk in _chunks(pending, BATCH_LIMIT):
                requests = [_batch_request(i, *calls[i]) for i in chunk]
                body = self._request("POST", f"{self.base}/$batch", "/v1.0/$batch", body={"requests": requests})
                for item in body.get("responses", []):
                    index, status = int(item["id"]), int(item.get("status", 0))
                    replies[index] = BatchReply(status, item.get("body"))
                    if status in (429, 503, 504) and round_ < self.transport.http.max_attempts:
                        retry.append(index)
                        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
                        wait = max(wait, parse_retry_after(headers.get("retry-after")) or 2.0**round_)
            missing = [i for i in pending if i not in replies]
            if missing:
                raise GraphResponseError(
                    200, "POST", "/v1.0/$batch", "BatchIncomplete", f"{len(missing)} replies missing", None
                )
            if not retry:
                break
            self.transport.throttled += len(retry)
            log.info("Graph $batch: %d sub-requests throttled; retrying after %.1f s", len(retry), wait)
            self.transport.pause(min(wait, self.transport.http.max_retry_after_s))
            pending = sorted(retry)
        return [replies[i] for i in range(len(calls))]

    def targeted_read(
        self, ids: list[str], select: list[str], group_ids: list[str], transitive: bool, entity: str = "users"
    ) -> tuple[dict[str, dict[str, Any] | None], dict[str, set[str]]]:
        """Objects by id (``entity``: users or contacts) and the configured groups each belongs to,
        in as few $batch requests as fit.

        Membership: ``checkMemberGroups`` (transitive, nested groups count) or the direct
        ``memberOf`` list. Returns (object or None when Graph has none, ids of configured groups it is in).
        """
        wanted = set(group_ids)
        calls: list[tuple[str, str, Any]] = []
        fields = ",".join(dict.fromkeys(["id", *select]))
        # checkMemberGroups of a contact needs Directory.Read.All; its transitiveMemberOf list does not.
        check = transitive and entity == "users"
        relation = "transitiveMemberOf" if transitive else "memberOf"
        for oid in ids:
            calls.append(("GET", f"/{entity}/{quote(oid)}?$select={fields}", None))
            if check:
                calls += [
                    ("POST", f"/{entity}/{quote(oid)}/checkMemberGroups", {"groupIds": chunk})
                    for chunk in _chunks(group_ids, CHECK_GROUPS_LIMIT)
                ]
            else:
                calls.append(("GET", f"/{entity}/{quote(oid)}/{relation}?$select=id&$top={PAGE_SIZE}", None))
        replies = iter(self.batch(calls))
        found: dict[str, dict[str, Any] | None] = {}
        groups: dict[str, set[str]] = {}
        per_object = len(_chunks(group_ids, CHECK_GROUPS_LIMIT)) if check else 1
        for oid in ids:
            reply = next(replies)
            memberships = [next(replies) for _ in range(per_object)]
            if reply.status == 404:
                found[oid], groups[oid] = None, set()
                continue
            if reply.status >= 400:
                raise reply.error("GET", f"/v1.0/{entity}/{{id}}")
            found[oid] = reply.body
            groups[oid] = set()
            for membership in memberships:
                if membership.status == 404:
                    continue  # deleted between the two sub-requests
                if membership.status >= 400:
                    raise membership.error("POST" if check else "GET", f"/v1.0/{entity}/{{id}}/{relation}")
                groups[oid] |= (
                    self._membership_ids(membership.body, check, f"/v1.0/{entity}/{{id}}/{relation}") & wanted
                )
        return found, groups

    def _membership_ids(self, body: dict[str, Any], checked: bool, route: str) -> set[str]:
        """Group ids of a checkMemberGroups answer (``checked``) or a memberOf page (and its next pages)."""
        if checked:
            return {str(v) for v in body.get("value", [])}
        ids = {str(g["id"]) for g in body.get("value", []) if g.get("@odata.type") == GROUP_TYPE}
        while "@odata.nextLink" in body:  # an object in more than 999 groups
            body = self._request("GET", body["@odata.nextLink"], route)
            ids |= {str(g["id"]) for g in body.get("value", []) if g.get("@odata.type") == GROUP_TYPE}
        return ids

    # --- delta ---------------------------------------------------------------------------------------
    def group_delta(self, group_ids: list[str], delta_link: str | None) -> DeltaRound:
        """Follow one delta round to its deltaLink; merge ``members@delta`` per group (§3.1).

        ``group_ids`` (at most 50) is only used without a link. Raises DeltaResetRequired when the
        stored link expired (400 syncStateNotFound) or the service asks for a full resync (410);
        the caller then starts a fresh round.
        """
        if delta_link:
            url, params = delta_link, None
        else:
            url, params = f"{self.base}/groups/delta", {"$filter": _id_filter(group_ids), "$select": "members"}
        round_ = DeltaRound(delta_link="")
        body = self._request("GET", url, "/v1.0/groups/delta", params)
        while True:
            for group in body.get("value", []):
                for member in group.get("members@delta", []):
                    bucket = round_.removed if "@removed" in member else round_.added
                    bucket.setdefault(group["id"], set()).add(member["id"])
                    round_.types[member["id"]] = str(member.get("@odata.type", USER_TYPE))
            if "@odata.deltaLink" in body:
                round_.delta_link = body["@odata.deltaLink"]
                return round_
            body = self._request("GET", body["@odata.nextLink"], "/v1.0/groups/delta")

    def group_delta_latest(self, group_ids: list[str]) -> str:
        """A deltaLink for "from now on" (at most 50 groups) without downloading the state (§3.1)."""
        params = {"$filter": _id_filter(group_ids), "$select": "members", "$deltatoken": "latest"}
        body = self._request("GET", f"{self.base}/groups/delta", "/v1.0/groups/delta", params)
        return str(body["@odata.deltaLink"])

    def user_delta_latest(self, select: list[str], entity: str = "users") -> str:
        """A users/delta (or ``entity``: contacts/delta) link for "from now on", tracking exactly
        the selected properties."""
        params = {"$select": ",".join(dict.fromkeys(["id", *select])), "$deltatoken": "latest"}
        body = self._request("GET", f"{self.base}/{entity}/delta", f"/v1.0/{entity}/delta", params)
        return str(body["@odata.deltaLink"])

    def user_delta(self, delta_link: str, entity: str = "users") -> UserDeltaRound:
        """The users (or contacts) changed or removed since the link; one seen on several pages is merged."""
        round_ = UserDeltaRound(delta_link="")
        route = f"/v1.0/{entity}/delta"
        body = self._request("GET", delta_link, route)
        while True:
            for item in body.get("value", []):
                uid = str(item["id"])
                if "@removed" in item:
                    round_.changed.pop(uid, None)
                    round_.removed[uid] = str((item.get("@removed") or {}).get("reason", "deleted"))
                else:
                    round_.removed.pop(uid, None)
                    round_.changed.setdefault(uid, {}).update(item)
            if "@odata.deltaLink" in body:
                round_.delta_link = body["@odata.deltaLink"]
                return round_
            body = self._request("GET", body["@odata.nextLink"], route)


def _id_filter(ids: list[str]) -> str:
    if not 0 < len(ids) <= DELTA_FILTER_LIMIT:
        raise ValueError(f"a delta filter takes 1 to {DELTA_FILTER_LIMIT} ids, got {len(ids)}")
    return " or ".join(f"id eq '{i}'" for i in ids)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _batch_request(index: int, method: str, url: str, body: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"id": str(index), "method": method, "url": url}
    if body is not None:
        request["body"] = body
        request["headers"] = {"Content-Type": "application/json"}
    return request


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
