"""Microsoft Graph v1.0 emulator (plus the tenant's token endpoint on the same server).

The specification is reference/microsoft-graph-and-msal.md §1–4 and §9: group members and
transitive members with OData casts, ``$select`` semantics, ``$top`` limits, opaque
``$skiptoken`` nextLinks that keep the other parameters, permissions from the token's ``roles``
(403 without GroupMember.Read.All, limited-information members without User.Read.All), Graph
error bodies and headers, ``groups/delta`` with ``members@delta`` and the expiry and reset
answers, and the write API the admin app uses to change the tenant (DESIGN.md §4.2).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jwt

from entrasync_pipeline.sandbox.directory import (
    ALL_PROPERTIES,
    HIDDEN_IN_V1_MEMBERS,
    TYPE_PROPERTIES,
    USER_DEFAULT_PROPERTIES,
    Directory,
    odata_type,
    project,
)
from entrasync_pipeline.sandbox.httpd import Request, Response, Route, json_response
from entrasync_pipeline.sandbox.seeds import Seed
from entrasync_pipeline.sandbox.token_endpoint import (
    AppRegistration,
    TokenEndpoint,
    TokenIssuer,
    entra_error,
)

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_TOP = 999
DEFAULT_TOKEN_LIFETIME_S = 3599
DEFAULT_TOP = 100
DELTA_MEMBERS_PER_PAGE = 500
DELTA_GROUPS_PER_PAGE = 20

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
READ_DIRECTORY = {"Directory.Read.All", "Directory.ReadWrite.All"}
WRITE_USERS = {"User.ReadWrite.All", "Directory.ReadWrite.All"}
WRITE_MEMBERS = {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
CASTS = {f"microsoft.graph.{kind}": kind for kind in TYPE_PROPERTIES}
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


class GraphError(Exception):
    """Raised inside a handler; rendered as a Graph error response."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


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
        self._delta_lock = threading.Lock()
        self._delta_pages: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.reset()

    # --- SandboxApp -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.directory = build_directory(self.seed)
        self._member_cache: dict[tuple[str, bool, str | None, int], list[str]] = {}
        self.issuer.lifetime_s = DEFAULT_TOKEN_LIFETIME_S
        self.delta_generation = secrets.token_hex(4)
        self.force_delta_reset = False
        with self._delta_lock:
            self._delta_pages.clear()

    def routes(self) -> list[Route]:
        tokens = TokenEndpoint(self.tenant_id, self.issuer, self.apps)
        self._tokens = tokens
        return [
            Route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", tokens.discovery),
            Route("GET", "/{tenant}/discovery/v2.0/keys", tokens.keys),
            Route("POST", "/{tenant}/oauth2/v2.0/token", tokens.token),
            Route("GET", "/v1.0/groups/delta", self._graph(self.groups_delta)),
            Route("GET", "/v1.0/groups/{id}/members", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/members/{segment}", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/members/{segment}/$count", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers/{segment}", self._graph(self.list_members)),
            Route("GET", "/v1.0/groups/{id}/transitiveMembers/{segment}/$count", self._graph(self.list_members)),
            Route("POST", "/v1.0/groups/{id}/members/$ref", self._graph(self.add_member)),
            Route("DELETE", "/v1.0/groups/{id}/members/{member}/$ref", self._graph(self.remove_member)),
            Route("GET", "/v1.0/groups/{id}", self._graph(self.get_group)),
            Route("GET", "/v1.0/users", self._graph(self.list_users)),
            Route("POST", "/v1.0/users", self._graph(self.create_user)),
            Route("GET", "/v1.0/users/{id}", self._graph(self.get_user)),
            Route("PATCH", "/v1.0/users/{id}", self._graph(self.update_user)),
            Route("DELETE", "/v1.0/users/{id}", self._graph(self.delete_user)),
        ]

    def state(self) -> dict[str, Any]:
        d = self.directory
        with d.lock:
            return {
                "tenant_id": self.tenant_id,
                "apps": [a.public_dict() for a in self.apps.values()],
                "objects": {oid: {"@odata.type": odata_type(d.kinds[oid]), **obj} for oid, obj in d.objects.items()},
                "groups": {gid: list(members) for gid, members in d.members.items()},
                "version": d.version,
                "token_lifetime_s": self.issuer.lifetime_s,
            }

    def control(self, request: Request, action: str) -> Response | None:
        """Extra control actions: delta expiry/reset and token lifetime."""
        if (request.method, action) == ("POST", "/delta/expire"):
            self.delta_generation = secrets.token_hex(4)
            return json_response(200, {"expired": True})
        if (request.method, action) == ("POST", "/delta/reset"):
            self.force_delta_reset = True
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

    def _not_found(self, object_id: str) -> GraphError:
        return GraphError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
        )

    def _user_access(self, roles: set[str]) -> str:
        if roles & READ_USERS:
            return "full"
        return "basic" if roles & READ_USERS_BASIC else "limited"

    def _access_for(self, kind: str, roles: set[str], user_access: str) -> str:
        if kind == "user":
            return user_access
        if kind == "group":
            return "full"
        return "full" if roles & READ_DIRECTORY else "limited"

    # --- query options -------------------------------------------------------------------------
    @staticmethod
    def _select(request: Request, on_type: str) -> list[str] | None:
        raw = request.query.get("$select")
        if raw is None:
            return None
        props = [p.strip() for p in raw.split(",") if p.strip()]
        known = TYPE_PROPERTIES["user"] if on_type == "user" else ALL_PROPERTIES
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

    # --- reads -----------------------------------------------------------------------------------
    def list_members(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise self._not_found(group_id)
        transitive = "/transitivemembers" in request.path.lower()
        segment = request.params.get("segment")
        counting = request.path.endswith("/$count") or segment == "$count"
        cast = None if segment in (None, "$count") else segment
        if cast is not None and cast not in CASTS:
            raise GraphError(400, "Request_UnsupportedQuery", f"The type '{cast}' is not a member type of a group.")
        eventual = self._check_advanced(request)
        kind_filter = CASTS.get(cast) if cast else None
        ids = self._listed_members(group_id, transitive, kind_filter)
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

    def _listed_users(self) -> list[str]:
        d = self.directory
        with d.lock:
            key = ("*users*", False, "user", d.version)
            cached = self._member_cache.get(key)
            if cached is None:
                cached = [i for i, k in d.kinds.items() if k == "user"]
                self._member_cache[key] = cached
            return cached

    def _context(self, kind: str | None, select: list[str] | None) -> str:
        entity = f"{kind}s" if kind else "directoryObjects"
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
        self._check_advanced(request)
        select = self._select(request, "user")
        ids = self._listed_users()
        return self._page(request, ids, select, roles, self._context("user", select), 2, typed=False)

    def get_user(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_USERS | READ_USERS_BASIC)
        user_id = request.params["id"]
        d = self.directory
        if d.kind(user_id) != "user":
            user_id = self._user_by_upn(user_id)
        select = self._select(request, "user")
        with d.lock:
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
        raise self._not_found(key)

    def get_group(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise self._not_found(group_id)
        item = project(self.directory.objects[group_id], "group", self._select(request, "group"), "full")
        item.pop("@odata.type", None)
        return self._ok(request, {"@odata.context": f"{self.base_url}/v1.0/$metadata#groups/$entity", **item})

    # --- delta -----------------------------------------------------------------------------------
    def groups_delta(self, request: Request) -> Response:
        roles = self._roles(request)
        self._require(roles, READ_MEMBERS)
        for option in ("$top", "$expand", "$orderby"):
            if option in request.query:
                raise GraphError(400, "Request_UnsupportedQuery", f"{option} is not supported on delta queries.")
        if "$skiptoken" in request.query:
            return self._delta_next_page(request)
        token = request.query.get("$deltatoken")
        if token is not None:
            if self.force_delta_reset:
                self.force_delta_reset = False
                location = f"{request.base_url}{request.path}?$deltatoken="
                raise GraphError(
                    410,
                    "resyncRequired",
                    "Resync required. Replace any local items with the server's version "
                    "(including deletes) if you're sure that the service was up to date "
                    "with your local changes when you last synced.",
                    {"Location": location},
                )
            if token == "latest":
                state = self._delta_query(request)
                return self._delta_respond(request, [], state)
            state = self._decode_delta(token)
            return self._delta_respond(request, self._delta_changes(state), state)
        state = self._delta_query(request)
        return self._delta_respond(request, self._delta_initial(state), state)

    def _delta_query(self, request: Request) -> dict[str, Any]:
        raw_filter = request.query.get("$filter")
        group_ids: list[str] | None = None
        if raw_filter is not None:
            group_ids = re.findall(r"id\s+eq\s+'([^']+)'", raw_filter)
            rest = re.sub(r"id\s+eq\s+'[^']+'|\s+or\s+", "", raw_filter).strip()
            if not group_ids or rest:
                raise GraphError(
                    400, "Request_UnsupportedQuery", "Only 'id eq' filters joined with 'or' are supported on delta."
                )
            if len(group_ids) > 50:
                raise GraphError(
                    400, "Request_UnsupportedQuery", "The number of filtered objects exceeds the maximum of 50."
                )
        select = [p.strip() for p in request.query.get("$select", "").split(",") if p.strip()]
        return {
            "groups": group_ids,
            "select": select,
            "version": self.directory.version,
            "generation": self.delta_generation,
        }

    def _encode_delta(self, state: dict[str, Any]) -> str:
        raw = json.dumps(state, separators=(",", ":")).encode()
        mac = hmac.new(self._page_key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def _decode_delta(self, token: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:12], raw[12:]
            if not hmac.compare_digest(mac, hmac.new(self._page_key, body, hashlib.sha256).digest()[:12]):
                raise ValueError
            state = json.loads(body)
        except ValueError:
            state = None
        if state is None or state.get("generation") != self.delta_generation:
            raise GraphError(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and "
                "data must be synchronized again.",
            )
        return state

    def _delta_groups(self, state: dict[str, Any]) -> list[str]:
        d = self.directory
        if state["groups"] is None:
            return [i for i, k in d.kinds.items() if k == "group"]
        return [g for g in state["groups"] if d.is_group(g)]

    def _group_item(self, group_id: str, select: list[str]) -> dict[str, Any]:
        props = [p for p in select if p != "members"] or list(TYPE_PROPERTIES["group"])
        obj = self.directory.objects[group_id]
        item = {p: copy.deepcopy(obj.get(p)) for p in props if p in TYPE_PROPERTIES["group"]}
        item["id"] = group_id
        return item

    def _delta_initial(self, state: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        tracks_members = not state["select"] or "members" in state["select"]
        out = []
        d = self.directory
        with d.lock:
            for group_id in self._delta_groups(state):
                members = (
                    [{"@odata.type": odata_type(d.kinds[m]), "id": m} for m in d.member_ids(group_id, transitive=False)]
                    if tracks_members
                    else []
                )
                out.append((self._group_item(group_id, state["select"]), members))
        return out

    def _delta_changes(self, state: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        if state["select"] and "members" not in state["select"]:
            return []
        net = self.directory.changes_since(state["version"], self._delta_groups(state))
        out = []
        with self.directory.lock:
            for group_id, changes in net.items():
                if not self.directory.is_group(group_id):
                    continue
                members = []
                for change in changes.values():
                    entry: dict[str, Any] = {"@odata.type": odata_type(change.kind), "id": change.member_id}
                    if change.removed:
                        entry["@removed"] = {"reason": "deleted"}
                    members.append(entry)
                out.append((self._group_item(group_id, state["select"]), members))
        return out

    def _delta_respond(
        self, request: Request, groups: list[tuple[dict[str, Any], list[dict[str, Any]]]], state: dict[str, Any]
    ) -> Response:
        pages = _split_delta_pages(groups)
        new_state = {**state, "version": self.directory.version}
        delta_link = f"{request.base_url}/v1.0/groups/delta?$deltatoken={self._encode_delta(new_state)}"
        select = [p for p in state["select"] if p != "members"]
        context = f"{self.base_url}/v1.0/$metadata#groups" + (f"({','.join(select)})" if select else "")
        rendered = [{"@odata.context": context, "value": page} for page in pages]
        rendered[-1]["@odata.deltaLink"] = delta_link
        first, rest = rendered[0], rendered[1:]
        if rest:
            key = secrets.token_urlsafe(24)
            with self._delta_lock:
                self._delta_pages[key] = rest
                while len(self._delta_pages) > 1000:
                    self._delta_pages.popitem(last=False)
            first["@odata.nextLink"] = f"{request.base_url}/v1.0/groups/delta?$skiptoken={key}"
        return self._ok(request, _ordered_delta(first))

    def _delta_next_page(self, request: Request) -> Response:
        key = request.query["$skiptoken"]
        with self._delta_lock:
            pages = self._delta_pages.pop(key, None)
        if not pages:
            raise GraphError(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and "
                "data must be synchronized again.",
            )
        page, rest = pages[0], pages[1:]
        if rest:
            new_key = secrets.token_urlsafe(24)
            with self._delta_lock:
                self._delta_pages[new_key] = rest
            page = {**page, "@odata.nextLink": f"{request.base_url}/v1.0/groups/delta?$skiptoken={new_key}"}
        return self._ok(request, _ordered_delta(page))

    # --- writes (admin app) ----------------------------------------------------------------------
    def create_user(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_USERS)
        body = _json_body(request)
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
            if any(
                k == "user" and str(d.objects[i].get("userPrincipalName", "")).lower() == upn
                for i, k in d.kinds.items()
            ):
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
            raise self._not_found(user_id)
        body = _json_body(request)
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
        self._require(self._roles(request), WRITE_USERS)
        user_id = request.params["id"]
        if self.directory.kind(user_id) != "user":
            raise self._not_found(user_id)
        self.directory.delete_object(user_id)
        return self._ok(request, None, 204)

    def add_member(self, request: Request) -> Response:
        self._require(self._roles(request), WRITE_MEMBERS)
        group_id = request.params["id"]
        if not self.directory.is_group(group_id):
            raise self._not_found(group_id)
        ref = str(_json_body(request).get("@odata.id", ""))
        member_id = ref.rstrip("/").rsplit("/", 1)[-1]
        if not ref or self.directory.kind(member_id) is None:
            raise self._not_found(member_id or ref)
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
            raise self._not_found(group_id)
        if not self.directory.remove_member(group_id, member_id):
            raise self._not_found(member_id)
        return self._ok(request, None, 204)


def build_directory(seed: Seed) -> Directory:
    directory = Directory()
    for kind, records in seed.directory_objects():
        for record in records:
            directory.add_object(kind, record)
    for group in seed.groups:
        for member_id in group.get("members", []):
            directory.add_member(group["id"], member_id, log=False)
    directory.changes.clear()
    return directory


def _split_delta_pages(groups: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[list[dict[str, Any]]]:
    """Split groups and their members@delta into pages; a large group reappears on later pages."""
    pages: list[list[dict[str, Any]]] = [[]]
    budget = DELTA_MEMBERS_PER_PAGE
    for item, members in groups:
        chunks = [members[i : i + DELTA_MEMBERS_PER_PAGE] for i in range(0, len(members), DELTA_MEMBERS_PER_PAGE)] or [
            []
        ]
        for chunk in chunks:
            if len(pages[-1]) >= DELTA_GROUPS_PER_PAGE or (chunk and len(chunk) > budget):
                pages.append([])
                budget = DELTA_MEMBERS_PER_PAGE
            entry = dict(item)
            if chunk:
                entry["members@delta"] = chunk
            pages[-1].append(entry)
            budget -= len(chunk)
    return pages


def _ordered_delta(page: dict[str, Any]) -> dict[str, Any]:
    ordered = {"@odata.context": page["@odata.context"]}
    for key in ("@odata.nextLink", "@odata.deltaLink"):
        if key in page:
            ordered[key] = page[key]
    ordered["value"] = page["value"]
    return ordered


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
    return body


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
