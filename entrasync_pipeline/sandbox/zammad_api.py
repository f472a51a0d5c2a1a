"""Zammad REST API emulator (``/api/v1``), per reference/zammad-api.md §1–6 and checklist §9.

Authentication (``Token token=``, ``Bearer``, Basic; 403 ``Authentication required`` without
credentials), effective permissions = user ∩ token, the ``{error, error_human}`` envelope with
``X-Failure`` on 401/403, the users list (id ascending, system user and inactive users included,
silent page cap, no total, an empty page at the end), search with the database-fallback
semantics and ``sort_by``/``order_by`` as lib/sql_helper.rb validates them, create/update/delete
with the model rules of ``zammad_store``, roles and organizations as ``model_index_render`` and
``model_show_render`` page and show them, and the object manager. Unmapped errors are
handles_errors.rb's 500; errors behind a proxy (429, 502–504) come as the proxy sends them, not as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qsl

from entrasync_pipeline.sandbox.httpd import Request, Response, Route, json_response
from entrasync_pipeline.sandbox.seeds import Seed
from entrasync_pipeline.sandbox.zammad_store import (
    GROUP_COLUMNS,
    ORGANIZATION_COLUMNS,
    PERMISSION_IDS,
    ROLE_COLUMNS,
    ROLES,
    SEEDED_AT,
    Token,
    ZammadRuleError,
    ZammadStore,
    has_permission,
    order_records,
)

LIST_DEFAULT = 100
SEARCH_DEFAULT, SEARCH_MAX = 50, 200
# model_index_render (/roles, /organizations): paginate_with(default: 500) under CanPaginate's cap.
MODEL_INDEX_DEFAULT, MODEL_INDEX_MAX = 500, 1000
# organizations_controller.rb#search: ``per_page || limit || 100``, cut to 500 (its own rule, not CanPaginate).
ORGANIZATION_SEARCH_DEFAULT, ORGANIZATION_SEARCH_MAX = 100, 500
# User.search's sort when the request names none (app/models/user/search.rb).
SEARCH_SORT, SEARCH_ORDER = ["active", "updated_at"], ["desc", "desc"]
TRUTHY = frozenset({"true", "1", "yes"})
ORDER_VALUE = re.compile(r"(asc|desc)", re.IGNORECASE)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class InternalError(RuntimeError):
    """A Ruby exception Zammad does not map (``RuntimeError`` in lib/sql_helper.rb and the like):
    500, with the message only for a caller whose user holds ``admin`` (handles_errors.rb)."""


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
            "user_admin": secrets.token_urlsafe(32),
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
            Route("GET", f"{api}/roles/{{id}}", self._api(self.show_role)),
            Route("GET", f"{api}/groups", self._api(self.list_groups)),
            Route("GET", f"{api}/groups/{{id}}", self._api(self.show_group)),
            Route("GET", f"{api}/organizations", self._api(self.list_organizations)),
            Route("POST", f"{api}/organizations", self._api(self.create_organization)),
            Route("GET", f"{api}/organizations/search", self._api(self.search_organizations)),
            Route("GET", f"{api}/organizations/{{id}}", self._api(self.show_organization)),
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
                "organizations": [{"id": oid, **o} for oid, o in sorted(store.organizations.items())],
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
            except ApiError as exc:
                return _envelope(exc.status, exc.message)
            try:
                return handler(request, caller)
            except ApiError as exc:
                return _envelope(exc.status, exc.message)
            except ZammadRuleError as exc:
                return _envelope(422, str(exc))
            except RuntimeError as exc:
                return self._internal_error(caller, str(exc))

        return wrapped

    def _internal_error(self, caller: Caller, message: str) -> Response:
        """handles_errors.rb's 500: the message itself for a user with ``admin`` permission, an
        error id to look up in the log for anyone else; no ``error_human`` either way."""
        if has_permission(self.store.permissions(caller.user), "admin"):
            return _json(500, {"error": message})
        return _json(500, {"error": f"Error ID {secrets.token_urlsafe(6)}: Please contact your administrator."})

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

        expansion = {
            "roles": [ROLES[r]["name"] for r in user.get("role_ids", []) if r in ROLES],
            "organization": self.store.organization_name(user.get("organization_id")),
            "groups": {
                self.store.groups[int(gid)]["name"]: access
                for gid, access in (user.get("group_ids") or {}).items()
                if int(gid) in self.store.groups
            },
            "organizations": [],
            "two_factor_preferences": [],
            "authorizations": [],
            "overview_sortings": [],
            "created_by": login_of(user.get("created_by_id")),
            "updated_by": login_of(user.get("updated_by_id")),
        }
        # attributes_with_association_names skips an association that is not set: no "organization": null.
        return {k: v for k, v in expansion.items() if v is not None}

    def _login_of(self, user_id: int) -> str | None:
        user = self.store.get(user_id)
        return user["login"] if user else None

    @staticmethod
    def _order(
        params: dict[str, Any], columns: frozenset[str] | tuple[str, ...], sort: list[str], order: list[str]
    ) -> list[tuple[str, bool]]:
        """``sort_by``/``order_by`` as lib/sql_helper.rb reads them: a comma-separated string or
        an array; every column must exist (else 500 "Found invalid column 'x' for sorting."),
        every direction be asc or desc; the n-th column takes the n-th direction and a column
        without one is dropped; no ``sort_by`` means ``sort``, no ``order_by`` means ``order``.
        Returns (column, descending) pairs."""
        sort_by, order_by = _param_list(params, "sort_by"), _param_list(params, "order_by")
        for column in sort_by:
            if column not in columns:
                raise InternalError(f"Found invalid column '{column}' for sorting.")
        for direction in order_by:
            if not ORDER_VALUE.fullmatch(direction):
                raise InternalError(f"Found invalid order by value {direction}. Please use 'asc' or 'desc'.")
        sort_by = sort_by or sort
        order_by = [d.lower() for d in order_by] or order
        return [(c, order_by[i].lower() == "desc") for i, c in enumerate(sort_by) if c and i < len(order_by)]

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
        params = _rails_params(request)
        if request.method == "POST":
            params.update(_object_body(request))
        order = self._order(params, self.store.user_columns(), SEARCH_SORT, SEARCH_ORDER) or [("updated_at", True)]
        condition = params.get("condition")
        if isinstance(condition, str):
            try:
                condition = json.loads(condition)
            except ValueError:
                raise ApiError(422, "Invalid condition") from None
        query = str(params.get("query") or params.get("term") or "")
        hits = self.store.search(query, condition if isinstance(condition, dict) else None, order)
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

    # --- roles and organizations (model_index_render / model_show_render) ---------------------
    def list_roles(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.role", "admin.user", "admin.group", "ticket.agent")
        roles = [self._role(rid) for rid in ROLES]
        return self._model_index(request, "Role", roles, ROLE_COLUMNS, self._role_names)

    def show_role(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.role", "admin.user", "admin.group", "ticket.agent")
        role = self._role(_record_id(request, ROLES, "Role"))
        return self._model_show(request, "Role", role, self._role_names)

    def _role(self, rid: int) -> dict[str, Any]:
        role = ROLES[rid]
        return {
            "id": rid,
            "name": role["name"],
            "preferences": {},
            "default_at_signup": rid == 3,
            "active": True,
            "note": role["note"],
            "updated_by_id": 1,
            "created_by_id": 1,
            "created_at": SEEDED_AT,
            "updated_at": SEEDED_AT,
            "permission_ids": [PERMISSION_IDS[p] for p in role["permissions"]],
            "group_ids": {},
        }

    def _role_names(self, role: dict[str, Any]) -> dict[str, Any]:
        names = {"permissions": list(ROLES[role["id"]]["permissions"]), "groups": {}}
        return {**role, **names, **self._audit_logins(role)}

    def list_groups(self, request: Request, caller: Caller) -> Response:
        """groups_controller.rb#index (GroupsControllerPolicy: admin.group or ticket.agent; a
        token with admin.user alone gets 403): a model index, inactive groups included."""
        caller.require_any("admin.group", "ticket.agent")
        groups = [self._group(gid) for gid in sorted(self.store.groups)]
        return self._model_index(request, "Group", groups, GROUP_COLUMNS, self._group_names)

    def show_group(self, request: Request, caller: Caller) -> Response:
        caller.require_any("admin.group", "ticket.agent")
        group = self._group(_record_id(request, self.store.groups, "Group"))
        return self._model_show(request, "Group", group, self._group_names)

    def _group(self, gid: int) -> dict[str, Any]:
        group = self.store.groups[gid]
        return {
            "id": gid,
            "name": group["name"],
            "name_last": group["name"].split(" › ")[-1],
            "parent_id": None,
            "assignment_timeout": None,
            "follow_up_possible": "yes",
            "follow_up_assignment": True,
            "email_address_id": None,
            "signature_id": None,
            "shared_drafts": True,
            "reopen_time_in_days": None,
            "active": bool(group["active"]),
            "note": "",
            "updated_by_id": 1,
            "created_by_id": 1,
            "created_at": SEEDED_AT,
            "updated_at": SEEDED_AT,
            "user_ids": [u["id"] for u in self.store.users.values() if str(gid) in (u.get("group_ids") or {})],
        }

    def _group_names(self, group: dict[str, Any]) -> dict[str, Any]:
        users = [login for uid in group["user_ids"] if (login := self._login_of(uid))]
        return {**group, "users": users, **self._audit_logins(group)}

    def list_organizations(self, request: Request, caller: Caller) -> Response:
        """Agents and organization admins see every organization, anyone else only their own."""
        ids = [oid for oid in self.store.organization_ids() if self._sees_organization(caller, oid)]
        organizations = [self._organization(oid) for oid in ids]
        return self._model_index(request, "Organization", organizations, ORGANIZATION_COLUMNS, self._organization_names)

    def show_organization(self, request: Request, caller: Caller) -> Response:
        """organizations_controller.rb#show: 404 for an unknown id; a caller who may not see it gets
        403, or ``{}`` when they have no organization themselves."""
        oid = _record_id(request, dict.fromkeys(self.store.organization_ids()), "Organization")
        if not self._sees_organization(caller, oid):
            if caller.user.get("organization_id"):
                raise ApiError(403, "Not authorized")
            return _json(200, {})
        return self._model_show(request, "Organization", self._organization(oid), self._organization_names)

    def create_organization(self, request: Request, caller: Caller) -> Response:
        """organizations_controller.rb#create (model_create_render): ticket.agent or admin.organization;
        201 with the organization; 422 for a blank name or one taken in any spelling."""
        caller.require_any("ticket.agent", "admin.organization")
        oid = self.store.create_organization(_object_body(request), caller.id)
        return _json(201, self._organization(oid))

    def search_organizations(self, request: Request, caller: Caller) -> Response:
        """organizations_controller.rb#search with Organization.search's database path: the query
        without ``*``, a case-insensitive substring of ``name`` or ``note``; sorted by ``active desc,
        updated_at desc`` unless ``sort_by``/``order_by`` say otherwise; ``label``, ``expand``, ``full``."""
        caller.require_any("ticket.agent", "admin.organization")
        params = _rails_params(request)
        order = self._order(params, ORGANIZATION_COLUMNS, SEARCH_SORT, SEARCH_ORDER) or [("updated_at", False)]
        query = str(params.get("query") or "").replace("*", "").lower()
        records = [self._organization(oid) for oid in self.store.organization_ids()]
        hits = [o for o in records if query in o["name"].lower() or query in (o["note"] or "").lower()]
        page, per_page = self._page_args(params, ORGANIZATION_SEARCH_DEFAULT, ORGANIZATION_SEARCH_MAX)
        window = order_records(hits, order)[(page - 1) * per_page : page * per_page]
        if _flag(params, "expand"):
            return _json(200, [self._organization_names(o) for o in window])
        if params.get("label"):
            return _json(200, [{"id": o["id"], "label": o["name"], "value": o["name"]} for o in window])
        if _flag(params, "full"):
            ids = [o["id"] for o in window]
            return _json(200, {"assets": _assets("Organization", window), "organization_ids": ids})
        return _json(200, window)

    def _sees_organization(self, caller: Caller, oid: int) -> bool:
        if caller.may("ticket.agent") or caller.may("admin.organization"):
            return True
        user = caller.user
        return oid == user.get("organization_id") or oid in (user.get("organization_ids") or [])

    def _organization(self, oid: int) -> dict[str, Any]:
        record = self.store.organization(oid)
        return {
            "id": oid,
            "name": record["name"],
            "shared": True,
            "domain": "",
            "domain_assignment": False,
            "active": True,
            "vip": False,
            "note": "",
            "updated_by_id": record["updated_by_id"],
            "created_by_id": record["created_by_id"],
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
            "member_ids": self.store.organization_members(oid),
            "secondary_member_ids": [],
        }

    def _organization_names(self, organization: dict[str, Any]) -> dict[str, Any]:
        members = [login for uid in organization["member_ids"] if (login := self._login_of(uid))]
        return {**organization, "members": members, "secondary_members": [], **self._audit_logins(organization)}

    def _audit_logins(self, record: dict[str, Any]) -> dict[str, str]:
        logins = {
            "created_by": self._login_of(record["created_by_id"]),
            "updated_by": self._login_of(record["updated_by_id"]),
        }
        return {k: v for k, v in logins.items() if v is not None}

    def _model_index(
        self, request: Request, model: str, records: list[dict[str, Any]], columns: tuple[str, ...], expand: Any
    ) -> Response:
        """model_index_render: ``sort_by``/``order_by`` (default id asc), pages of 500 (at most
        1000), ``expand`` with association names, ``full`` with assets and ``total_count``."""
        params = _rails_params(request)
        order = self._order(params, columns, ["id"], ["asc"])
        page, per_page = self._page_args(params, MODEL_INDEX_DEFAULT, MODEL_INDEX_MAX)
        window = order_records(records, order)[(page - 1) * per_page : page * per_page]
        if _flag(params, "expand"):
            return _json(200, [expand(r) for r in window])
        if _flag(params, "full"):
            ids = [r["id"] for r in window]
            return _json(200, {"record_ids": ids, "assets": _assets(model, window), "total_count": len(records)})
        return _json(200, window)

    @staticmethod
    def _model_show(request: Request, model: str, record: dict[str, Any], expand: Any) -> Response:
        """model_show_render: the record, with association names on ``expand``, as assets on ``full``."""
        if _flag(request.query, "expand"):
            return _json(200, expand(record))
        if _flag(request.query, "full"):
            return _json(200, {"id": record["id"], "assets": _assets(model, [record])})
        return _json(200, record)

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
    for group in seed.zammad_groups:
        store.add_group(group["name"], bool(group.get("active", True)), group.get("id"))
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
        "user_admin": (token_owner, ["admin.user"], False),  # the least-privilege sync token (no admin.object)
        "expired": (token_owner, ["admin.user"], True),
    }
    for name, (user_id, permissions, expired) in specs.items():
        value = token_values[name]
        store.tokens[value] = Token(value, user_id, permissions, name, expired)
    return store


def _public(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if not k.startswith("_")}


def _assets(model: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {model: {str(r["id"]): r for r in records}}


def _full(users: list[dict[str, Any]]) -> dict[str, Any]:
    return {"record_ids": [u["id"] for u in users], "assets": {"User": {str(u["id"]): _public(u) for u in users}}}


def _rails_params(request: Request) -> dict[str, Any]:
    """The query as Rails reads it: ``key[]=a&key[]=b`` is the array ``key``, else the last value wins."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        else:
            params[key] = value
    return params


def _param_list(params: dict[str, Any], key: str) -> list[str]:
    """SqlHelper#get_param_key: a string is split at commas, an array taken as is, blank is empty."""
    value = params.get(key)
    if isinstance(value, str):
        return [v for v in re.split(r"\s*,\s*", value.strip()) if v] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _record_id(request: Request, records: dict[int, Any], model: str) -> int:
    """The record of ``GET /<model>s/:id``; 404 "Couldn't find <Model> with 'id'=…" otherwise."""
    raw = request.params["id"]
    if not raw.isdigit() or int(raw) not in records:
        raise ApiError(404, f"Couldn't find {model} with 'id'={raw}")
    return int(raw)


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
