"""Microsoft Graph v1.0 emulator (plus the tenant's token endpoint on the same server).

The specification is reference/microsoft-graph-and-msal.md §1–4 and §9: group members and
transitive members with OData casts (``microsoft.graph.user`` or the SDKs' ``graph.user``), the
``/users`` and ``/groups`` collections with equality ``$filter`` and ``$search``
(``graph_search.py``), ``$select`` semantics, ``$top`` limits, opaque
``$skiptoken`` nextLinks that keep the other parameters, permissions from the token's ``roles``
(403 without GroupMember.Read.All, limited-information members without User.Read.All), Graph
error bodies and headers, a user's group memberships (``memberOf``, ``transitiveMemberOf``,
``checkMemberGroups``, ``getMemberGroups``), ``users/delta`` and ``groups/delta``
(``graph_delta.py``), JSON batching (``graph_batch.py``), and the write API the admin app uses
to change the tenant (DESIGN.md §4.2), with Entra's soft delete and restore of users.
Organizational contacts (``/contacts``, ``contacts/delta``, a contact's groups) are read-only,
as in Graph; the control API changes them (``contacts.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jwt

from entrasync_pipeline.sandbox.contacts import ContactRejected, contact_record, control_body
from entrasync_pipeline.sandbox.directory import (
    ALL_PROPERTIES,
    HIDDEN_IN_V1_MEMBERS,
    TYPE_PROPERTIES,
    USER_DEFAULT_PROPERTIES,
    Directory,
    odata_type,
    project,
)
from entrasync_pipeline.sandbox.graph_batch import BatchRejected, parse_batch, run_batch
from entrasync_pipeline.sandbox.graph_delta import DeltaQueries
from entrasync_pipeline.sandbox.graph_errors import GraphError, bad_request, not_found, unsupported_query
from entrasync_pipeline.sandbox.graph_search import SearchSyntaxError, UnknownSearchProperty, compile_search
from entrasync_pipeline.sandbox.httpd import Request, Response, Route, json_response
from entrasync_pipeline.sandbox.seeds import Seed
from entrasync_pipeline.sandbox.token_endpoint import (
    AppRegistration,
    TokenEndpoint,
    TokenIssuer,
    entra_error,
)

_EQUALS = re.compile(r"(\w+) eq '((?:[^']|'')*)'")
# Properties an equality $filter works on without ConsistencyLevel (user-list.md, group-list.md).
EQUALITY_FILTERS = {
    "user": frozenset({"id", "mail", "userPrincipalName", "displayName"}),
    "group": frozenset({"id", "mail", "mailNickname", "displayName"}),
    # orgcontact.md: eq on these is a default filter (ne, not, … need advanced queries).
    "orgContact": frozenset(
        {"id", "mail", "mailNickname", "displayName", "givenName", "surname", "companyName", "department", "jobTitle"}
    ),
}
# The entity set of a kind in @odata.context (and the URL of its collection).
ENTITY_SETS = {"orgContact": "contacts"}

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_TOP = 999
DEFAULT_TOKEN_LIFETIME_S = 3599
DEFAULT_TOP = 100
MAX_CHECK_GROUP_IDS = 20  # directoryobject-checkmembergroups.md: "Up to 20 groups may be specified."
MAX_MEMBER_GROUPS = 11000  # directoryobject-getmembergroups.md: more → Directory_ResultSizeLimitExceeded

READ_MEMBERS = {
    "GroupMember.Read.All",
    "Group.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
READ_USERS = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_USERS_BASIC = {"User.ReadBasic.All"}
# orgcontact-list.md, orgcontact-get.md, orgcontact-delta.md: OrgContact.Read.All, Directory.*.
READ_CONTACTS = {"OrgContact.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_DIRECTORY = {"Directory.Read.All", "Directory.ReadWrite.All"}
WRITE_USERS = {"User.ReadWrite.All", "Directory.ReadWrite.All"}
DELETE_RESTORE_USERS = WRITE_USERS | {"User.DeleteRestore.All"}
WRITE_MEMBERS = {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
# The cast segment in full (microsoft.graph.user) or with the alias the SDKs generate (graph.user).
CASTS = {f"{namespace}.{kind}": kind for kind in TYPE_PROPERTIES for namespace in ("microsoft.graph", "graph")}
FAULT_CODES = {
    429: "TooManyRequests",
    500: "generalException",
    502: "BadGateway",
    503: "serviceNotAvailable",
    504: "GatewayTimeout",
}
FAULT_MESSAGES = {
    429: "Please retry again later.",
    500: "General exception while processing.",
    502: "Bad Gateway.",
    503: "The service is temporarily unavailable.",
    504: "Gateway Timeout.",
}


class GraphApp:
    """The Graph + token-endpoint server's application (a ``SandboxApp``)."""

    name = "graph"

    def __init__(self, seed: Seed, issuer: TokenIssuer, apps: dict[str, AppRegistration]) -> None:
        self.seed = seed
        self.tenant_id = seed.tenant_id
        self.issuer = issuer
        self.apps = apps
        self.base_url = ""
        self._page_key = secrets.token_bytes(16)
        self.reset()

    # --- SandboxApp -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.directory = build_directory(self.seed)
        self._member_cache: dict[tuple[str, bool, str | None, int], list[str]] = {}
        self.issuer.lifetime_s = DEFAULT_TOKEN_LIFETIME_S
        self.delta = DeltaQueries()

    def routes(self) -> list[Route]:
        tokens = TokenEndpoint(self.tenant_id, self.issuer, self.apps)
        self._tokens = tokens
        return [
            Route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", tokens.discovery),
            Route("GET", "/{tenant}/discovery/v2.0/keys", tokens.keys),
            Route("POST", "/{tenant}/oauth2/v2.0/token", tokens.token),
            *self._delta_routes("groups", self.groups_delta),
            *self._delta_routes("users", self.users_delta),
            *self._delta_routes("contacts", self.contacts_delta),
            Route("POST", "/v1.0/$batch", self._graph(self.batch)),
            Route("GET", "/v1.0/groups/{id}/members", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/members/{segment}", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/members/{segment}/$count", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers/{segment}", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers/{segment}/$count", self._graph(self.list_members)),
            Route("POST", "/v1.0/groups/{id}/members/$ref", self._graph(self.add_member)),
            Route("DELETE", "/v1.0/groups/{id}/members/{member}/$ref", self._graph(self.remove_member)),
            Route("GET", "/v1.0/groups", self._graph(self.list_groups)),
            Route("GET", "/v1.0/groups/{id}", self._graph(self.get_group)),
            Route("GET", "/v1.0/users", self._graph(self.list_users)),
            Route("POST", "/v1.0/users", self._graph(self.create_user)),
            Route("GET", "/v1.0/users/{id}", self._graph(self.get_user)),
            Route("PATCH", "/v1.0/users/{id}", self._graph(self.update_user)),
            Route("DELETE", "/v1.0/users/{id}", self._graph(self.delete_user)),
            Route("GET", "/v1.0/users/{id}/memberOf", self._graph(self.member_of)),
            Route("GET", "/v1.0/users/{id}/transitiveMemberOf", self._graph(self.member_of)),
            Route("POST", "/v1.0/users/{id}/checkMemberGroups", self._graph(self.check_member_groups)),
            Route("POST", "/v1.0/users/{id}/getMemberGroups", self._graph(self.get_member_groups)),
            Route("GET", "/v1.0/contacts", self._graph(self.list_contacts)),
            Route("GET", "/v1.0/contacts/$count", self._graph(self.count_contacts)),
            Route("POST", "/v1.0/contacts", self._graph(self.refuse_contact_write)),
            Route("GET", "/v1.0/contacts/{id}", self._graph(self.get_contact)),
            Route("PATCH", "/v1.0/contacts/{id}", self._graph(self.refuse_contact_write)),
            Route("DELETE", "/v1.0/contacts/{id}", self._graph(self.refuse_contact_write)),
            Route("GET", "/v1.0/contacts/{id}/memberOf", self._graph(self.contact_member_of)),
            Route("GET", "/v1.0/contacts/{id}/transitiveMemberOf", self._graph(self.contact_member_of)),
            Route("POST", "/v1.0/contacts/{id}/checkMemberGroups", self._graph(self.check_member_groups)),
            Route("POST", "/v1.0/contacts/{id}/getMemberGroups", self._graph(self.get_member_groups)),
            Route("POST", "/v1.0/directoryObjects/{id}/checkMemberGroups", self._graph(self.check_member_groups)),
            Route("POST", "/v1.0/directoryObjects/{id}/getMemberGroups", self._graph(self.get_member_groups)),
            Route("GET", "/v1.0/directory/deletedItems/{id}", self._graph(self.get_deleted_item)),
            Route("POST", "/v1.0/directory/deletedItems/{id}/restore", self._graph(self.restore_deleted_item)),
            Route("DELETE", "/v1.0/directory/deletedItems/{id}", self._graph(self.purge_deleted_item)),
        ]

    def _delta_routes(self, entity_set: str, handler: Any) -> list[Route]:
        """``/delta`` is short for ``/microsoft.graph.delta``; SDKs call ``delta()`` (delta-query-users.md)."""
        return [
            Route("GET", f"/v1.0/{entity_set}/{name}", self._graph(handler))
            for name in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")
        ]

    def state(self) -> dict[str, Any]:
        d = self.directory
        with d.lock:
            return {
                "tenant_id": self.tenant_id,
                "apps": [a.public_dict() for a in self.apps.values()],
                "objects": {oid: {"@odata.type": odata_type(d.kinds[oid]), **obj} for oid, obj in d.objects.items()},
                "groups": {gid: list(members) for gid, members in d.members.items()},
                "deleted": {
                    oid: {"@odata.type": odata_type(item.kind), **item.obj, "memberOf": item.groups}
                    for oid, item in d.deleted.items()
                },
                "version": d.version,
                "token_lifetime_s": self.issuer.lifetime_s,
            }

    def control(self, request: Request, action: str) -> Response | None:
        """Extra control actions: delta expiry/reset, token lifetime, and organizational contacts
        (read-only in Graph, so tests change them here, as Exchange Online would)."""
        if action == "/contacts" or action.startswith("/contacts/"):
            return self._control_contacts(request, action.removeprefix("/contacts").lstrip("/"))
        if (request.method, action) == ("POST", "/delta/expire"):
            self.delta.tokens.expire()
            return json_response(200, {"expired": True})
        if (request.method, action) == ("POST", "/delta/reset"):
            self.delta.tokens.reset()
            return json_response(200, {"reset_pending": True})
        if (request.method, action) == ("POST", "/tokens/revoke"):
            self.issuer.rotate()
            return json_response(200, {"revoked": True})
        if (request.method, action) == ("PUT", "/settings"):
            payload = request.json() or {}
            if "token_lifetime_s" in payload:
                self.issuer.lifetime_s = int(payload["token_lifetime_s"])
            return json_response(200, {"token_lifetime_s": self.issuer.lifetime_s})
        return None

    def _control_contacts(self, request: Request, contact_id: str) -> Response | None:
        """``POST /_sandbox/contacts``, ``PATCH|DELETE /_sandbox/contacts/{id}``: each change bumps
        the directory version and is logged, so contacts/delta and groups/delta see it."""
        try:
            if (request.method, contact_id) == ("POST", ""):
                return json_response(201, self._create_contact(control_body(request)))
            if request.method == "PATCH" and contact_id:
                return json_response(200, self._update_contact(contact_id, control_body(request)))
            if request.method == "DELETE" and contact_id:
                return json_response(200, self._delete_contact(contact_id))
        except ContactRejected as exc:
            return json_response(exc.status, {"error": exc.message})
        return None

    def _create_contact(self, payload: dict[str, Any]) -> dict[str, Any]:
        record = contact_record(payload, creating=True)
        d = self.directory
        with d.lock:
            record.setdefault("id", str(uuid.uuid4()))
            if d.kind(record["id"]) is not None or record["id"] in d.deleted:
                raise ContactRejected(409, f"contact: id {record['id']!r} is taken by another directory object")
            obj = d.add_object("orgContact", record)
            return project(obj, "orgContact", None, "full")

    def _update_contact(self, contact_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        changes = contact_record(payload, creating=False)
        d = self.directory
        with d.lock:
            if d.kind(contact_id) != "orgContact":
                raise ContactRejected(404, f"contact {contact_id!r}: no such orgContact")
            changed = d.update_object(contact_id, changes)
            return {"id": contact_id, "changed": sorted(changed), "version": d.version}

    def _delete_contact(self, contact_id: str) -> dict[str, Any]:
        d = self.directory
        with d.lock:
            if d.kind(contact_id) != "orgContact":
                raise ContactRejected(404, f"contact {contact_id!r}: no such orgContact")
            d.delete_permanently(contact_id)
            return {"id": contact_id, "deleted": True, "version": d.version}

    def fault_response(self, request: Request, status: int, headers: dict[str, str]) -> Response:
        if "/oauth2/" in request.path or "/.well-known/" in request.path:
            error = "temporarily_unavailable" if status in (429, 503) else "server_error"
            return entra_error(
                status,
                error,
                50196 if status == 429 else 90033,
                "The server is temporarily unable to service the request.",
                headers,
            )
        extra = {"code": str(status), "message": "Please retry after", "status": str(status)} if status == 429 else {}
        return self._error(
            request,
            status,
            FAULT_CODES.get(status, "generalException"),
            FAULT_MESSAGES.get(status, "Error."),
            headers,
            extra,
        )

    def html_error(self, status: int) -> Response:
        body = (
            f"<html><head><title>{status} Service Unavailable</title></head><body>"
            f"<center><h1>{status}</h1></center><hr><center>Microsoft-Azure-Application-Gateway/v2"
            "</center></body></html>"
        ).encode()
        return Response(status, body, {"Content-Type": "text/html"})

    def not_found(self, request: Request) -> Response:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        return self._error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    # --- plumbing ------------------------------------------------------------------------------
    def _graph(self, handler: Any) -> Any:
        def wrapped(request: Request) -> Response:
            self.base_url = request.base_url
            try:
                return handler(request)
            except GraphError as exc:
                return self._error(request, exc.status, exc.code, exc.message, exc.headers)

        return wrapped

    def _headers(self, request: Request, request_id: str) -> dict[str, str]:
        client_request_id = request.header("client-request-id") or request_id
        return {
            "request-id": request_id,
            "client-request-id": client_request_id,
            "x-ms-ags-diagnostic": json.dumps({"ServerInfo": {"DataCenter": "Sandbox", "Slice": "E", "Ring": "0"}}),
            "Strict-Transport-Security": "max-age=31536000",
            "Cache-Control": "no-cache",
        }

    def _ok(self, request: Request, payload: Any, status: int = 200, cost: int = 1) -> Response:
        headers = {**self._headers(request, str(uuid.uuid4())), "x-ms-resource-unit": str(cost)}
        if payload is None:
            return Response(status, b"", headers)
        return json_response(status, payload, headers, content_type=ODATA_JSON)

    def _error(
        self,
        request: Request,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner_extra: dict[str, str] | None = None,
    ) -> Response:
        request_id = str(uuid.uuid4())
        base = self._headers(request, request_id)
        inner = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": base["client-request-id"],
            **(inner_extra or {}),
        }
        if status == 401:
            base["WWW-Authenticate"] = (
                'Bearer realm="", authorization_uri='
                '"https://login.microsoftonline.com/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'
            )
        body = {"error": {"code": code, "message": message, "innerError": inner}}
        return json_response(status, body, {**base, **(headers or {})}, content_type=ODATA_JSON)

    def _roles(self, request: Request) -> set[str]:
        auth = request.header("Authorization")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = auth[7:].strip()
        try:
            claims = self.issuer.verify(token)
        except jwt.ExpiredSignatureError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            ) from None
        except jwt.DecodeError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "CompactToken parsing failed with error code: 80049217"
            ) from None
        except jwt.InvalidTokenError:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.") from None
        return set(claims.get("roles") or [])

    def _require(self, roles: set[str], allowed: set[str]) -> None:
        if not roles & allowed:
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    def _user_access(self, roles: set[str]) -> str:
        if roles & READ_USERS:
            return "full"
        return "basic" if roles & READ_USERS_BASIC else "limited"

    def _access_for(self, kind: str, roles: set[str], user_access: str) -> str:
        if kind == "user":
            return user_access
        if kind == "group":
            return "full" if roles & READ_MEMBERS else "limited"
        if kind == "orgContact":
            return "full" if roles & READ_CONTACTS else "limited"
        return "full" if roles & READ_DIRECTORY else "limited"

    # --- query options -------------------------------------------------------------------------
    @staticmethod
    def _select(request: Request, on_type: str) -> list[str] | None:
        raw = request.query.get("$select")
        if raw is None:
            return None
        props = [p.strip() for p in raw.split(",") if p.strip()]
        known = TYPE_PROPERTIES[on_type] if on_type in ("user", "orgContact") else ALL_PROPERTIES
        for prop in props:
            if prop not in known and prop != "members":
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{prop}' on type 'microsoft.graph.{on_type}'.",
                )
        return props

    @staticmethod
    def _top(request: Request) -> int:
        raw = request.query.get("$top")
        if raw is None:
            return DEFAULT_TOP
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
            raise GraphError(
                400, "Request_BadRequest", f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
            )
        return int(raw)

    def _skip_token(self, offset: int) -> str:
        raw = b"DSpt" + offset.to_bytes(6, "big")
        mac = hmac.new(self._page_key, raw, hashlib.sha256).digest()[:10]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _offset(self, request: Request) -> int:
        token = request.query.get("$skiptoken")
        if token is None:
            return 0
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, mac = raw[:10], raw[10:]
            if body[:4] != b"DSpt" or not hmac.compare_digest(
                mac, hmac.new(self._page_key, body, hashlib.sha256).digest()[:10]
            ):
                raise ValueError
            return int.from_bytes(body[4:], "big")
        except ValueError:
            raise GraphError(
                400, "Request_BadRequest", "Invalid skip token: the $skiptoken value is not valid."
            ) from None

    def _next_link(self, request: Request, offset: int) -> str:
        params = [(k, v) for k, v in _query_pairs(request.raw_query) if k != "$skiptoken"]
        params.append(("$skiptoken", self._skip_token(offset)))
        return f"{request.base_url}{request.path}?{urlencode(params, safe='$,()', quote_via=quote)}"

    @staticmethod
    def _check_advanced(request: Request) -> bool:
        eventual = request.header("ConsistencyLevel").lower() == "eventual"
        if "$search" in request.query and not eventual:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Request with $search query parameter only works through MSGraph with a "
                "special request header: 'ConsistencyLevel: eventual'",
            )
        for option in ("$filter", "$orderby", "$expand"):
            if option in request.query:
                raise GraphError(
                    400, "Request_UnsupportedQuery", f"The sandbox does not emulate {option} on this resource."
                )
        return eventual

    def _searched(self, request: Request, ids: list[str], on_type: str) -> list[str]:
        """The ids whose objects match ``$search`` (graph_search.py); all of them without one.

        Called after ``_check_advanced``, so a ``$search`` here came with ``ConsistencyLevel: eventual``.
        """
        raw = request.query.get("$search")
        if raw is None:
            return ids
        known = TYPE_PROPERTIES.get(on_type, ALL_PROPERTIES)
        try:
            matches = compile_search(raw, known)
        except UnknownSearchProperty as exc:
            raise bad_request(
                f"Could not find a property named '{exc.prop}' on type 'microsoft.graph.{on_type}'."
            ) from None
        except SearchSyntaxError:
            raise unsupported_query("Unsupported Query.") from None
        d = self.directory
        with d.lock:
            return [i for i in ids if i in d.objects and matches(d.objects[i])]

    # --- reads -----------------------------------------------------------------------------------
    def list_members(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise not_found(group_id)
        transitive = "/transitivemembers" in request.path.lower()
        segment = request.params.get("segment")
        counting = request.path.endswith("/$count") or segment == "$count"
        cast = None if segment in (None, "$count") else segment
        if cast is not None and cast not in CASTS:
            raise GraphError(400, "Request_UnsupportedQuery", f"The type '{cast}' is not a member type of a group.")
        eventual = self._check_advanced(request)
        kind_filter = CASTS.get(cast) if cast else None
        ids = self._searched(
            request, self._listed_members(group_id, transitive, kind_filter), kind_filter or "directoryObject"
        )
        if counting:
            if not eventual:
                raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
            headers = self._headers(request, str(uuid.uuid4()))
            return Response(200, str(len(ids)).encode(), {**headers, "Content-Type": "text/plain"})
        select = self._select(request, kind_filter or "directoryObject")
        cost = (5 if transitive else 3) - (1 if select else 0)
        return self._page(request, ids, select, roles, self._context(kind_filter, select), cost, eventual)

    def _listed_members(self, group_id: str, transitive: bool, kind: str | None) -> list[str]:
        """Member ids as v1.0 lists them, cached per directory version (no scan per page)."""
        d = self.directory
        with d.lock:
            key = (group_id, transitive, kind, d.version)
            cached = self._member_cache.get(key)
            if cached is None:
                cached = [
                    i
                    for i in d.member_ids(group_id, transitive)
                    if d.kinds.get(i) not in HIDDEN_IN_V1_MEMBERS and (kind is None or d.kinds.get(i) == kind)
                ]
                self._member_cache = {k: v for k, v in self._member_cache.items() if k[3] == d.version}
                self._member_cache[key] = cached
            return cached

    def _listed_of_kind(self, kind: str) -> list[str]:
        """Every live object of ``kind`` (``/users``, ``/groups``), cached per directory version."""
        d = self.directory
        with d.lock:
            key = ("*all*", False, kind, d.version)
            cached = self._member_cache.get(key)
            if cached is None:
                cached = [i for i, k in d.kinds.items() if k == kind]
                self._member_cache = {k: v for k, v in self._member_cache.items() if k[3] == d.version}
                self._member_cache[key] = cached
            return cached

    def _context(self, kind: str | None, select: list[str] | None) -> str:
        entity = ENTITY_SETS.get(kind, f"{kind}s") if kind else "directoryObjects"
        props = f"({','.join(select)})" if select else ""
        return f"{self.base_url}/v1.0/$metadata#{entity}{props}"

    def _page(
        self,
        request: Request,
        ids: list[str],
        select: list[str] | None,
        roles: set[str],
        context: str,
        cost: int,
        eventual: bool = False,
        typed: bool = True,
    ) -> Response:
        """One page of directory objects; ``typed=False`` for entity sets that omit ``@odata.type``."""
        top, offset = self._top(request), self._offset(request)
        user_access = self._user_access(roles)
        d = self.directory
        with d.lock:
            items = [
                project(d.objects[i], d.kinds[i], select, self._access_for(d.kinds[i], roles, user_access))
                for i in ids[offset : offset + top]
                if i in d.objects
            ]
        if not typed:
            for item in items:
                item.pop("@odata.type", None)
        payload: dict[str, Any] = {"@odata.context": context}
        if eventual and request.query.get("$count") == "true" and offset == 0:
            payload["@odata.count"] = len(ids)
        if offset + top < len(ids):
            payload["@odata.nextLink"] = self._next_link(request, offset + top)
        payload["value"] = items
        return self._ok(request, payload, cost=max(1, cost))

    def list_users(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_USERS | READ_USERS_BASIC)
        return self._list_entity_set(request, roles, "user", self._listed_of_kind("user"), cost=2)

    def list_groups(self, request: Request) -> Response:
        """``GET /groups``: GroupMember.Read.All is the least privileged application permission (group-list.md)."""
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        return self._list_entity_set(request, roles, "group", self._listed_of_kind("group"), cost=2)

    def _list_entity_set(self, request: Request, roles: set[str], kind: str, ids: list[str], cost: int) -> Response:
        """One page of ``/users``, ``/groups`` or ``/contacts`` after the equality ``$filter`` and
        ``$search``; the items of an entity set carry no ``@odata.type``."""
        select = self._select(request, kind)
        ids, eventual = self._queried(request, kind, ids)
        context = self._context(kind, select)
        return self._page(request, ids, select, roles, context, cost - (1 if select else 0), eventual, typed=False)

    def _queried(self, request: Request, kind: str, ids: list[str]) -> tuple[list[str], bool]:
        """The ids an entity set's equality ``$filter`` and ``$search`` keep, and whether the
        request came with ``ConsistencyLevel: eventual``."""
        equals = self._equality_filter(request, kind)
        eventual = self._check_advanced(request)
        if equals is not None:
            prop, value = equals
            with self.directory.lock:
                objects = self.directory.objects
                ids = [i for i in ids if str(objects[i].get(prop) or "").lower() == value.lower()]
        return self._searched(request, ids, kind), eventual

    @staticmethod
    def _equality_filter(request: Request, kind: str) -> tuple[str, str] | None:
        """``$filter=mail eq '…'`` (users: id, mail, userPrincipalName, displayName; groups: id,
        mail, mailNickname, displayName): a default query Graph answers without ConsistencyLevel,
        compared case-insensitively. It is taken out of the query here; any other filter stays and
        is refused by ``_check_advanced``, never ignored."""
        match = _EQUALS.fullmatch(request.query.get("$filter", "").strip())
        if match is None or match.group(1) not in EQUALITY_FILTERS[kind]:
            return None
        request.query.pop("$filter")
        return match.group(1), match.group(2).replace("''", "'")

    def get_user(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_USERS | READ_USERS_BASIC)
        d = self.directory
        select = self._select(request, "user")
        with d.lock:
            user_id = self._user_id(request.params["id"])
            item = project(d.objects[user_id], "user", select, self._user_access(roles))
        item.pop("@odata.type", None)
        context = self._context("user", select) + "/$entity"
        return self._ok(request, {"@odata.context": context, **item})

    def _user_by_upn(self, key: str) -> str:
        d = self.directory
        with d.lock:
            for oid, kind in d.kinds.items():
                if kind == "user" and str(d.objects[oid].get("userPrincipalName", "")).lower() == key.lower():
                    return oid
        raise not_found(key)

    def get_group(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise not_found(group_id)
        item = project(self.directory.objects[group_id], "group", self._select(request, "group"), "full")
        item.pop("@odata.type", None)
        return self._ok(request, {"@odata.context": f"{self.base_url}/v1.0/$metadata#groups/$entity", **item})

    # --- organizational contacts (read-only in Graph) -------------------------------------------
    def list_contacts(self, request: Request) -> Response:
        """``GET /contacts``: every orgContact, paged like ``/users``; OrgContact.Read.All or
        Directory.* (orgcontact-list.md), 403 otherwise (no limited information on the set)."""
        roles = self._roles(request)
        self._require(roles, READ_CONTACTS)
        return self._list_entity_set(request, roles, "orgContact", self._listed_of_kind("orgContact"), cost=1)

    def count_contacts(self, request: Request) -> Response:
        """``GET /contacts/$count``: a bare number, only with ``ConsistencyLevel: eventual`` (§1.2)."""
        roles = self._roles(request)
        self._require(roles, READ_CONTACTS)
        ids, eventual = self._queried(request, "orgContact", self._listed_of_kind("orgContact"))
        if not eventual:
            raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
        headers = self._headers(request, str(uuid.uuid4()))
        return Response(200, str(len(ids)).encode(), {**headers, "Content-Type": "text/plain"})

    def get_contact(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_CONTACTS)
        select = self._select(request, "orgContact")
        d = self.directory
        with d.lock:
            item = project(d.objects[self._contact_id(request.params["id"])], "orgContact", select, "full")
        item.pop("@odata.type", None)
        return self._ok(request, {"@odata.context": self._context("orgContact", select) + "/$entity", **item})

    def refuse_contact_write(self, request: Request) -> Response:
        """Contacts are read-only in Graph (resources/orgcontact.md): they come from Exchange Online
        or on-premises sync. The words are the service's (microsoftgraph/entra-powershell#1102,
        a DELETE); the status 400 is the sandbox's reading of that directory error (docs/sandbox.md)."""
        self._roles(request)
        operation = {"POST": "Create", "PATCH": "Update", "DELETE": "Delete"}[request.method]
        raise bad_request(
            f"Data contract version does not allow '{operation}' operations against instances of resource 'OrgContact'."
        )

    def contacts_delta(self, request: Request) -> Response:
        """contacts/delta needs OrgContact.Read.All or Directory.* (orgcontact-delta.md)."""
        self._require(self._roles(request), READ_CONTACTS)
        return self._ok(request, self.delta.contacts(request, self.directory))

    def contact_member_of(self, request: Request) -> Response:
        """A contact's direct or transitive groups (orgcontact-list-memberof.md: OrgContact.Read.All
        and Group.Read.All, or Directory.Read.All); groups come back with limited information
        without a group-read permission, as for a user."""
        roles = self._roles(request)
        self._require(roles, READ_CONTACTS)
        return self._groups_page(request, roles, self._contact_id(request.params["id"]))

    def _contact_id(self, object_id: str) -> str:
        """A live contact's id; 404 otherwise (contacts have no other key in the URL)."""
        if self.directory.kind(object_id) != "orgContact":
            raise not_found(object_id)
        return object_id

    # --- delta -----------------------------------------------------------------------------------
    def groups_delta(self, request: Request) -> Response:
        self._require(self._roles(request), READ_MEMBERS)
        return self._ok(request, self.delta.groups(request, self.directory))

    def users_delta(self, request: Request) -> Response:
        """users/delta needs User.Read.All or higher; User.ReadBasic.All is not enough (user-delta.md)."""
        self._require(self._roles(request), READ_USERS)
        return self._ok(request, self.delta.users(request, self.directory))

    # --- JSON batching ---------------------------------------------------------------------------
    def batch(self, request: Request) -> Response:
        """``POST /v1.0/$batch``: each step runs through the server like a direct request."""
        self._roles(request)
        try:
            steps = parse_batch(request.json())
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        except BatchRejected as exc:
            raise GraphError(400, exc.code, exc.message) from None
        responses = run_batch(steps, request, self._error)
        headers = self._headers(request, str(uuid.uuid4()))
        return json_response(200, {"responses": responses}, headers)

    # --- a user's groups -------------------------------------------------------------------------
    def member_of(self, request: Request) -> Response:
        """Direct or transitive groups of a user, paged like any directory list; groups come back
        with limited information without a group-read permission (user-list-transitivememberof.md)."""
        roles = self._roles(request)
        self._require(roles, READ_USERS | READ_MEMBERS)
        return self._groups_page(request, roles, self._user_id(request.params["id"]))

    def _groups_page(self, request: Request, roles: set[str], object_id: str) -> Response:
        """One page of ``memberOf`` or ``transitiveMemberOf`` of a user or contact."""
        eventual = self._check_advanced(request)
        transitive = request.path.lower().endswith("/transitivememberof")
        select = self._select(request, "directoryObject")
        ids = self._searched(request, self.directory.groups_of(object_id, transitive), "group")
        cost = 1 - (1 if select else 0)
        return self._page(request, ids, select, roles, self._context(None, select), cost, eventual)

    def check_member_groups(self, request: Request) -> Response:
        """Which of up to 20 given groups the object is a member of, transitively."""
        object_id = self._membership_subject(request)
        group_ids = _json_body(request).get("groupIds")
        if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
            raise bad_request("The request body must contain 'groupIds', a collection of group ids.")
        if len(group_ids) > MAX_CHECK_GROUP_IDS:
            raise bad_request(f"The number of group ids exceeds the maximum of {MAX_CHECK_GROUP_IDS}.")
        member_of = set(self.directory.groups_of(object_id, transitive=True))
        value = [g for g in dict.fromkeys(group_ids) if g in member_of]
        return self._ok(request, {"@odata.context": self._strings_context(), "value": value})

    def get_member_groups(self, request: Request) -> Response:
        """Every group the object is a member of, transitively; security groups only if asked."""
        object_id = self._membership_subject(request)
        security_only = _json_body(request).get("securityEnabledOnly")
        if not isinstance(security_only, bool):
            raise bad_request("The request body must contain 'securityEnabledOnly', a Boolean.")
        d = self.directory
        with d.lock:
            groups = d.groups_of(object_id, transitive=True)
            if security_only:
                groups = [g for g in groups if d.objects[g].get("securityEnabled")]
        if len(groups) > MAX_MEMBER_GROUPS:
            raise GraphError(
                400,
                "Directory_ResultSizeLimitExceeded",
                f"The result exceeds the maximum of {MAX_MEMBER_GROUPS} groups; use transitiveMemberOf instead.",
            )
        return self._ok(request, {"@odata.context": self._strings_context(), "value": groups})

    def _membership_subject(self, request: Request) -> str:
        """The object of a checkMemberGroups/getMemberGroups call, once its permissions are met.

        /users/{id|upn}: User.Read.All and GroupMember.Read.All (or Group.Read.All), or
        Directory.Read.All. /contacts/{id}: Directory.Read.All. /directoryObjects/{id}: the table of the object's type — a group needs
        a group-read permission, other types Directory.Read.All (directoryobject-checkmembergroups.md).
        """
        roles = self._roles(request)
        object_id = request.params["id"]
        if request.path.lower().startswith("/v1.0/users/"):
            self._require_user_and_groups(roles)
            return self._user_id(object_id)
        if request.path.lower().startswith("/v1.0/contacts/"):
            self._require(roles, READ_DIRECTORY)  # "Group memberships for an organizational contact"
            return self._contact_id(object_id)
        kind = self.directory.kind(object_id)
        if kind is None:
            raise not_found(object_id)
        if kind == "user":
            self._require_user_and_groups(roles)
        else:
            self._require(roles, READ_MEMBERS if kind == "group" else READ_DIRECTORY)
        return object_id

    def _require_user_and_groups(self, roles: set[str]) -> None:
        self._require(roles, READ_USERS)
        self._require(roles, READ_MEMBERS)

    def _user_id(self, key: str) -> str:
        """A live user's id from its id or userPrincipalName; 404 otherwise (deleted users too)."""
        return key if self.directory.kind(key) == "user" else self._user_by_upn(key)

    def _strings_context(self) -> str:
        return f"{self.base_url}/v1.0/$metadata#Collection(Edm.String)"

    # --- writes (admin app) ----------------------------------------------------------------------
    def create_user(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_USERS)
        body = _entity_body(request, "user")
        missing = [
            k
            for k in ("accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile")
            if k not in body
        ]
        if missing:
            raise GraphError(400, "Request_BadRequest", f"Property '{missing[0]}' is required when creating the user.")
        unknown = [k for k in body if k not in TYPE_PROPERTIES["user"] and k != "passwordProfile"]
        if unknown:
            raise GraphError(
                400, "Request_BadRequest", f"Property '{unknown[0]}' does not exist on type 'microsoft.graph.user'."
            )
        upn = str(body["userPrincipalName"]).lower()
        d = self.directory
        with d.lock:
            if self._upn_taken(upn):
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName already exists.",
                )
            record = {k: v for k, v in body.items() if k != "passwordProfile"}
            record.setdefault("id", str(uuid.uuid4()))
            record.setdefault("userType", "Member")
            record.setdefault("createdDateTime", _now_iso())
            obj = d.add_object("user", record)
            item = project(obj, "user", list(USER_DEFAULT_PROPERTIES), "full")
        item.pop("@odata.type", None)
        return self._ok(request, {"@odata.context": f"{self.base_url}/v1.0/$metadata#users/$entity", **item}, 201)

    def update_user(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_USERS)
        user_id = request.params["id"]
        if self.directory.kind(user_id) != "user":
            raise not_found(user_id)
        body = _entity_body(request, "user")
        unknown = [k for k in body if k not in TYPE_PROPERTIES["user"] or k == "id"]
        if unknown:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Property '{unknown[0]}' does not exist on type 'microsoft.graph.user' or is read-only.",
            )
        self.directory.update_object(user_id, body)
        return self._ok(request, None, 204)

    def delete_user(self, request: Request) -> Response:
        """Entra's delete: the user moves to deleted items, restorable for 30 days (user-delete.md)."""
        self._require(self._roles(request), WRITE_USERS)
        user_id = request.params["id"]
        if self.directory.kind(user_id) != "user":
            raise not_found(user_id)
        self.directory.soft_delete(user_id)
        return self._ok(request, None, 204)

    def get_deleted_item(self, request: Request) -> Response:
        self._require(self._roles(request), READ_USERS)
        item = self._deleted_user(request.params["id"])
        body = project(item.obj, "user", self._select(request, "user"), "full")
        return self._ok(request, {"@odata.context": self._deleted_context(), **body})

    def restore_deleted_item(self, request: Request) -> Response:
        """Back from deleted items with the direct group memberships it had (directory-deleteditems-restore.md)."""
        self._require(self._roles(request), DELETE_RESTORE_USERS)
        user_id = request.params["id"]
        d = self.directory
        with d.lock:
            item = self._deleted_user(user_id)
            upn = str(item.obj.get("userPrincipalName", "")).lower()
            if self._upn_taken(upn):
                raise bad_request("Another object with the same value for property userPrincipalName already exists.")
            body = project(d.restore(user_id), "user", None, "full")
        return self._ok(request, {"@odata.context": self._deleted_context(), **body})

    def purge_deleted_item(self, request: Request) -> Response:
        """Permanent deletion: user delta reports ``@removed`` with reason ``deleted`` from now on."""
        self._require(self._roles(request), DELETE_RESTORE_USERS)
        user_id = request.params["id"]
        with self.directory.lock:
            self._deleted_user(user_id)
            self.directory.purge(user_id)
        return self._ok(request, None, 204)

    def _deleted_user(self, object_id: str) -> Any:
        item = self.directory.deleted.get(object_id)
        if item is None or item.kind != "user":
            raise not_found(object_id)
        return item

    def _deleted_context(self) -> str:
        return f"{self.base_url}/v1.0/$metadata#directoryObjects/$entity"

    def _upn_taken(self, upn: str) -> bool:
        d = self.directory
        return any(
            k == "user" and str(d.objects[i].get("userPrincipalName", "")).lower() == upn for i, k in d.kinds.items()
        )

    def add_member(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise not_found(group_id)
        ref = str(_json_body(request).get("@odata.id", ""))
        member_id = ref.rstrip("/").rsplit("/", 1)[-1]
        if not ref or self.directory.kind(member_id) is None:
            raise not_found(member_id or ref)
        if not self.directory.add_member(group_id, member_id):
            raise GraphError(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            )
        return self._ok(request, None, 204)

    def remove_member(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_MEMBERS)
        group_id, member_id = request.params["id"], request.params["member"]
        if not self.directory.is_group(group_id):
            raise not_found(group_id)
        if not self.directory.remove_member(group_id, member_id):
            raise not_found(member_id)
        return self._ok(request, None, 204)


def build_directory(seed: Seed) -> Directory:
    directory = Directory()
    for kind, records in seed.directory_objects():
        for record in records:
            directory.add_object(kind, record)
    for group in seed.groups:
        for member_id in group.get("members", []):
            directory.add_member(group["id"], member_id, log=False)
    directory.forget_history()
    return directory


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
    return body


def _entity_body(request: Request, kind: str) -> dict[str, Any]:
    """A write's JSON body without its ``@odata.type`` annotation, which the SDKs always send.

    The annotation must name the entity written (``#microsoft.graph.user``, the ``#`` optional);
    an unknown type is OData's 400 for an unresolvable type name, another directory type a 400
    the sandbox words itself (docs/sandbox.md).
    """
    body = _json_body(request)
    annotated = body.pop("@odata.type", None)
    if annotated is None:
        return body
    name = str(annotated).lstrip("#")
    if name == f"microsoft.graph.{kind}":
        return body
    if name.removeprefix("microsoft.graph.") not in TYPE_PROPERTIES:
        raise GraphError(
            400,
            "BadRequest",
            f"A type named '{name}' could not be resolved by the model. "
            "When a model is available, each type name must resolve to a valid type.",
        )
    raise GraphError(400, "BadRequest", f"The type '{name}' is not compatible with 'microsoft.graph.{kind}'.")


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
