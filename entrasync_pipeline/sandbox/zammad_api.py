"""Zammad REST API emulator (``/api/v1``), per reference/zammad-api.md §1–6 and checklist §9.

Authentication (``Token token=``, ``Bearer``, Basic; 403 ``Authentication required`` without
credentials), effective permissions = user ∩ token, the ``{error, error_human}`` envelope with
``X-Failure`` on 401/403, the users list (id ascending, system user and inactive users included,
silent page cap, no total, an empty page at the end), search with the database-fallback
semantics, create/update/delete with the model rules of ``zammad_store``, roles and the object
manager. Errors behind a proxy (429, 502–504) come as the proxy sends them, not as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from typing import Any

from entrasync_pipeline.sandbox.httpd import Request, Response, Route, json_response
from entrasync_pipeline.sandbox.seeds import Seed
from entrasync_pipeline.sandbox.zammad_store import (
    ORGANIZATIONS,
    ROLES,
    Token,
    ZammadRuleError,
    ZammadStore,
    has_permission,
)

LIST_DEFAULT = 100
SEARCH_DEFAULT, SEARCH_MAX = 50, 200
TRUTHY = frozenset({"true", "1", "yes"})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Caller:
    """The authenticated user and what the request may do."""

    def __init__(self, store: ZammadStore, user: dict[str, Any], token: Token | None) -> None:
        self.store, self.user, self.token = store, user, token

    @property
    def id(self) -> int:
        return int(self.user["id"])

    def may(self, permission: str) -> bool:
        user_ok = has_permission(self.store.permissions(self.user), permission)
        token_ok = self.token is None or has_permission(self.token.permissions, permission)
        return user_ok and token_ok

    def require_any(self, *permissions: str) -> None:
        if any(self.may(p) for p in permissions):
            return
        if self.token is not None and not any(has_permission(self.token.permissions, p) for p in permissions):
            raise ApiError(403, "Token authorization failed.")
        raise ApiError(403, "User authorization failed.")


class ZammadApp:
    name = "zammad"

    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.token_values: dict[str, str] = {
            "sync": secrets.token_urlsafe(32),
            "agent": secrets.token_urlsafe(32),
            "readonly": secrets.token_urlsafe(32),
            "expired": secrets.token_urlsafe(32),
        }
        self.reset()

    # --- SandboxApp ---------------------------------------------------------------------------
    def reset(self) -> None:
        self.store = build_store(self.seed, self.token_values)

    def routes(self) -> list[Route]:
        api = "/api/v1"
        return [
            Route("GET", f"{api}/users", self._api(self.list_users)),
            Route("POST", f"{api}/users", self._api(self.create_user)),
            Route("GET", f"{api}/users/me", self._api(self.me)),
            Route("GET", f"{api}/users/search", self._api(self.search_users)),
            Route("POST", f"{api}/users/search", self._api(self.search_users)),
            Route("GET", f"{api}/users/{{id}}", self._api(self.show_user)),
            Route("PUT", f"{api}/users/{{id}}", self._api(self.update_user)),
            Route("DELETE", f"{api}/users/{{id}}", self._api(self.delete_user)),
            Route("GET", f"{api}/roles", self._api(self.list_roles)),
            Route("GET", f"{api}/version", self._api(self.version)),
            Route("GET", f"{api}/object_manager_attributes", self._api(self.list_attributes)),
            Route("POST", f"{api}/object_manager_attributes", self._api(self.create_attribute)),
            Route("GET", f"{api}/object_manager_attributes/{{id}}", self._api(self.show_attribute)),
            Route("PUT", f"{api}/object_manager_attributes/{{id}}", self._api(self.update_attribute)),
            Route("DELETE", f"{api}/object_manager_attributes/{{id}}", self._api(self.delete_attribute)),
            Route("POST", f"{api}/object_manager_attributes_execute_migrations", self._api(self.execute_migrations)),
            Route("POST", f"{api}/object_manager_attributes_discard_changes", self._api(self.discard_changes)),
        ]

    def state(self) -> dict[str, Any]:
        store = self.store
        with store.lock:
            return {
                "users": [store.users[i] for i in store.order],
                "attributes": [a.render() for a in store.attributes.values()],
                "tokens": {
                    t.name: {"token": t.value, "user_id": t.user_id, "permissions": t.permissions, "expired": t.expired}
                    for t in store.tokens.values()
                },
                "page_cap": store.page_cap,
            }

    def control(self, request: Request, action: str) -> Response | None:
        if (request.method, action) == ("PUT", "/settings"):
            payload = request.json() or {}
            if "page_cap" in payload:
                self.store.page_cap = int(payload["page_cap"])
            return json_response(200, {"page_cap": self.store.page_cap})
        return None

    def fault_response(self, request: Request, status: int, headers: dict[str, str]) -> Response:
        if status == 429:
            return Response(429, b"Retry later\n", {"Content-Type": "text/plain", **headers})
        if status == 500:
            code = secrets.token_hex(3)
            return json_response(500, {"error": f"Error ID {code}: Please contact your administrator."}, headers)
        response = self.html_error(status)
        response.headers.update(headers)
        return response

    def html_error(self, status: int) -> Response:
        reason = {
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Temporarily Unavailable",
            504: "Gateway Time-out",
        }.get(status, "Error")
        body = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        ).encode()
        return Response(status, body, {"Content-Type": "text/html"})

    def not_found(self, request: Request) -> Response:
        return _envelope(404, f"No route matches [{request.method}] {request.path}")

    # --- plumbing -----------------------------------------------------------------------------
    def _api(self, handler: Any) -> Any:
        def wrapped(request: Request) -> Response:
            try:
                caller = self._authenticate(request)
                return handler(request, caller)
            except ApiError as exc:
                return _envelope(exc.status, exc.message)
            except ZammadRuleError as exc:
                return _envelope(422, str(exc))
            except RuntimeError as exc:
                return _envelope(500, str(exc))

        return wrapped

    def _authenticate(self, request: Request) -> Caller:
        auth = request.header("Authorization").strip()
        store = self.store
        if not auth:
            raise ApiError(403, "Authentication required")
        scheme, _, credential = auth.partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic":
            caller = self._basic(credential)
        elif scheme.lower() in ("token", "bearer"):
            value = credential[len("token=") :] if credential.startswith("token=") else credential
            token = store.tokens.get(value.strip('"'))
            if token is None:
                raise ApiError(
                    401, "Can't find User for Token" if scheme.lower() == "token" else "The provided token is invalid."
                )
            if token.expired:
                raise ApiError(401, "Not authorized (token expired)!")
            user = store.get(token.user_id)
            if user is None or not user["active"]:
                raise ApiError(
                    401,
                    "Login failed. Have you double-checked your credentials and completed the email verification step?",
                )
            caller = Caller(store, user, token)
        else:
            raise ApiError(401, "Authentication failed.")
        return self._impersonate(request, caller)

    def _basic(self, credential: str) -> Caller:
        try:
            login, _, password = base64.b64decode(credential).decode("utf-8").partition(":")
        except ValueError:
            raise ApiError(401, "Invalid BasicAuth credentials") from None
        user = self.store.find_by_login_or_email(login)
        if user is None or not user["active"] or self.store.passwords.get(user["id"]) != password:
            raise ApiError(401, "Invalid BasicAuth credentials")
        return Caller(self.store, user, None)

    def _impersonate(self, request: Request, caller: Caller) -> Caller:
        target = request.header("From") or request.header("X-On-Behalf-Of")
        if not target:
            return caller
        if not caller.may("admin.user"):
            raise ApiError(403, "Current user has no permission to use 'From'/'X-On-Behalf-Of'!")
        user = self.store.get(int(target)) if target.isdigit() else self.store.find_by_login_or_email(target)
        if user is None:
            raise ApiError(403, f"No such user '{target}'")
        return Caller(self.store, user, None)

    def _user_id(self, request: Request) -> int:
        raw = request.params["id"]
        if not raw.isdigit() or int(raw) not in self.store.users:
            raise ApiError(404, f"Couldn't find User with 'id'={raw}")
        return int(raw)

    def _render(self, request: Request, user: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        out = _public(user)
        if _flag(params if params is not None else request.query, "expand"):
            out.update(self._expansion(user))
        return out

    def _expansion(self, user: dict[str, Any]) -> dict[str, Any]:
        def login_of(uid: Any) -> str | None:
            other = self.store.get(uid) if isinstance(uid, int) else None
            return other["login"] if other else None

        return {
            "roles": [ROLES[r]["name"] for r in user.get("role_ids", []) if r in ROLES],
            "organization": ORGANIZATIONS.get(user.get("organization_id")),
            "groups": {},
            "organizations": [],
            "two_factor_preferences": [],
            "authorizations": [],
            "overview_sortings": [],
            "created_by": login_of(user.get("created_by_id")),
            "updated_by": login_of(user.get("updated_by_id")),
        }

    @staticmethod
    def _page_args(params: dict[str, Any], default: int, maximum: int) -> tuple[int, int]:
        try:
            per_page = int(params.get("per_page") or params.get("limit") or default)
            page = int(params.get("page") or 1)
        except (TypeError, ValueError):
            raise ApiError(422, "Invalid pagination parameters") from None
        return max(page, 1), min(max(per_page, 1), maximum)

    # --- users ----------------------------------------------------------------------------------
    def list_users(self, request: Request, caller: Caller) -> Response:
        if not (caller.may("ticket.agent") or caller.may("admin.user")):
            return _json(200, [self._render(request, caller.user)])
        page, per_page = self._page_args(request.query, LIST_DEFAULT, self.store.page_cap)
        users = self.store.page(page, per_page)
        if _flag(request.query, "full"):
            return _json(200, _full(users))
        return _json(200, [self._render(request, u) for u in users])

    def me(self, request: Request, caller: Caller) -> Response:
        return _json(200, self._render(request, caller.user))

    def show_user(self, request: Request, caller: Caller) -> Response:
        user = self.store.get(self._user_id(request))
        assert user is not None
        allowed = (
            caller.may("admin") or any(caller.may(p) for p in ("admin.user", "ticket.agent")) or user["id"] == caller.id
        )
        if not allowed:
            raise ApiError(403, "Not authorized")
        return _json(200, self._render(request, user))

    def search_users(self, request: Request, caller: Caller) -> Response:
        caller.require_any("ticket.agent", "admin.user")
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST":
            params.update(_object_body(request))
        condition = params.get("condition")
        if isinstance(condition, str):
            try:
                condition = json.loads(condition)
            except ValueError:
                raise ApiError(422, "Invalid condition") from None
        query = str(params.get("query") or params.get("term") or "")
        hits = self.store.search(query, condition if isinstance(condition, dict) else None)
        if _flag(params, "only_total_count"):
            return _json(200, {"total_count": len(hits)})
        page, per_page = self._page_args(params, SEARCH_DEFAULT, SEARCH_MAX)
        window = hits[(page - 1) * per_page : page * per_page]
        if _flag(params, "full"):
            return _json(200, {**_full(window), "total_count": len(hits)})
        if params.get("term"):
            return _json(
                200,
                [
                    {
                        "id": u["id"],
                        "label": f"{u['firstname']} {u['lastname']} <{u['email']}>",
                        "value": u["email"],
                        "inactive": not u["active"],
                    }
                    for u in window
                ],
            )
        return _json(200, [self._render(request, u, params) for u in window])

    def create_user(self, request: Request, caller: Caller) -> Response:
        caller.require_any("ticket.agent", "admin.user")
        payload = _object_body(request)
        user = self.store.create(payload, caller.id, may_assign_roles=caller.may("admin.user"))
        return _json(201, self._render(request, user))

    def update_user(self, request: Request, caller: Caller) -> Response:
        caller.require_any("ticket.agent", "admin.user")
        user_id = self._user_id(request)
        target = self.store.get(user_id)
        assert target is not None
        if not caller.may("admin.user"):
            target_perms = self.store.permissions(target)
            if has_permission(target_perms, "admin.user") or has_permission(target_perms, "ticket.agent"):
                raise ApiError(403, "Not authorized")
        user = self.store.update(user_id, _object_body(request), caller.id, may_assign_roles=caller.may("admin.user"))
        return _json(200, self._render(request, user))

    def delete_user(self, request: Request, caller: Caller) -> Response:
        user_id = self._user_id(request)
        if not caller.may("admin.user"):
            raise ApiError(403, "Not authorized")
        if self.store.references(user_id):
            raise ApiError(422, "Can't delete, object has references.")
        self.store.delete(user_id)
        return _json(200, {})

    def list_roles(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.role", "admin.user", "admin.group", "ticket.agent")
        return _json(
            200,
            [
                {
                    "id": rid,
                    "name": r["name"],
                    "permission_ids": [],
                    "active": True,
                    "note": "",
                    "default_at_signup": rid == 3,
                    "preferences": {},
                    "updated_by_id": 1,
                    "created_by_id": 1,
                }
                for rid, r in ROLES.items()
            ],
        )

    def version(self, request: Request, caller: Caller) -> Response:
        return _json(200, {"version": "6.5.0-sandbox"})

    # --- object manager -------------------------------------------------------------------------
    def list_attributes(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        return _json(200, [a.render() for a in self.store.attributes.values()])

    def _attribute(self, request: Request) -> Any:
        raw = request.params["id"]
        for attribute in self.store.attributes.values():
            if str(attribute.id) == raw:
                return attribute
        raise ApiError(404, f"Couldn't find ObjectManager::Attribute with 'id'={raw}")

    def show_attribute(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        return _json(200, self._attribute(request).render())

    def create_attribute(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        payload = _object_body(request)
        if payload.get("object", "User") != "User":
            raise ApiError(422, "The sandbox emulates User attributes only")
        return _json(201, self.store.create_attribute(payload).render())

    def update_attribute(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        attribute = self._attribute(request)
        payload = _object_body(request)
        if not payload.get("object") or not payload.get("name"):
            raise ApiError(422, "Need object and name param")
        if payload["name"] != attribute.name:
            raise ApiError(422, f"Attribute {payload['name']} does not exist")
        if "data_option" in payload:
            attribute.data_option_new = dict(payload["data_option"] or {})
        if "display" in payload:
            attribute.display = str(payload["display"])
        return _json(200, attribute.render())

    def delete_attribute(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        attribute = self._attribute(request)
        if not attribute.editable:
            raise ApiError(422, "Attribute is not editable!")
        attribute.to_delete = True
        return _json(200, {})

    def execute_migrations(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        self.store.execute_migrations()
        return _json(200, {})

    def discard_changes(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.object")
        self.store.discard_changes()
        return _json(200, {})


def build_store(seed: Seed, token_values: dict[str, str]) -> ZammadStore:
    store = ZammadStore(page_cap=seed.zammad_page_cap)
    for spec in seed.zammad_attributes:
        attribute = store.create_attribute({k: v for k, v in spec.items() if k != "migrated"})
        if spec.get("migrated"):
            attribute.migrated = True
    token_owner = 3
    for record in seed.zammad_users:
        params = {k: v for k, v in record.items() if k not in ("id", "has_tickets", "token_owner")}
        # Seeded users carry "" where API-created ones carry null (reference/zammad-api.md §1.8).
        params.setdefault("department", "")
        params.setdefault("address", "")
        user = store.create(params, actor_id=1, may_assign_roles=True, explicit_id=record.get("id"))
        if record.get("has_tickets") or user["id"] == 1:
            store.referenced.add(user["id"])
        if record.get("token_owner"):
            token_owner = user["id"]
    for user in store.users.values():
        for attribute in store.custom_columns():
            user.setdefault(attribute.name, None)
    agent = next((u["id"] for u in store.users.values() if u["role_ids"] == [2]), token_owner)
    specs = {
        "sync": (token_owner, ["admin.user", "admin.object", "ticket.agent"], False),
        "agent": (agent, ["ticket.agent"], False),
        "readonly": (token_owner, ["ticket.agent"], False),
        "expired": (token_owner, ["admin.user"], True),
    }
    for name, (user_id, permissions, expired) in specs.items():
        value = token_values[name]
        store.tokens[value] = Token(value, user_id, permissions, name, expired)
    return store


def _public(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if not k.startswith("_")}


def _full(users: list[dict[str, Any]]) -> dict[str, Any]:
    return {"record_ids": [u["id"] for u in users], "assets": {"User": {str(u["id"]): _public(u) for u in users}}}


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or str(value).lower() in TRUTHY


def _object_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise ApiError(422, "Invalid JSON in request body") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(422, "Invalid payload, need a JSON object")
    return body


def _envelope(status: int, message: str) -> Response:
    headers = {"X-Failure": message} if status in (401, 403) else {}
    return _json(status, {"error": message, "error_human": message}, headers)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    response = json_response(status, payload)
    etag = hashlib.md5(response.body, usedforsecurity=False).hexdigest()
    response.headers.update(
        {
            "X-Request-Id": str(uuid.uuid4()),
            "ETag": f'W/"{etag}"',
            "Cache-Control": "max-age=0, private, must-revalidate",
            **(headers or {}),
        }
    )
    return response
