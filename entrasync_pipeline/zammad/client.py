"""Zammad REST client: users (every page), writes, roles, organizations and the object manager.

Pages ``GET /api/v1/users`` until a page comes back empty and never concludes the end from a
short page, because the server silently caps ``per_page`` (1000 now, 500 on older releases;
reference/zammad-api.md §1.3). Reads and PUTs are retried by the transport; POSTs are sent once
(a create is never resent blindly; ``apply`` looks the user up after an ambiguous failure).
Every non-2xx answer, including a 429/5xx the transport gave up on, becomes a ``ZammadError``
here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Iterator

from entrasync_pipeline.settings import SecretValue, ZammadSettings
from entrasync_pipeline.transport import HttpResponse, NoResponse, Transport, parse_retry_after
from entrasync_pipeline.zammad.errors import (
    ZammadAuthError,
    ZammadNotFoundError,
    ZammadResponseError,
    ZammadServerError,
    ZammadTransportError,
    ZammadValidationError,
)

log = logging.getLogger(__name__)

# The user search pages with ``paginate_with(max: 200, default: 50)`` (reference/zammad-api.md
# §1.5, §6): 200 is the most one search answer can hold, and a larger value is silently cut to it.
# It is not ``ZammadSettings.per_page``, which sizes the users *list* (max 1000). An exact-match
# lookup expects one or two hits, so one page of the maximum is plenty.
SEARCH_LIMIT = 200

# Zammad's role with full administrator rights is seeded under this exact name (Zammad's
# db/seeds/roles.rb; the user JSON's ``roles`` shows "Admin", reference §8). GET /roles answers
# ``permission_ids`` but not permission names, so the name is what identifies it.
ADMIN_ROLE_NAME = "Admin"

# /roles is a model index (``paginate_with(default: 500)``, at most 1000 per page): it is paged
# like the users list, so a client that reads only the first page misses roles past it. /groups is
# a model index too, read with the same page size.
ROLES_PER_PAGE = 500

# /organizations is a model index like /roles (``model_index_render``, 500 by default, at most 1000
# per page, organizations_controller.rb): read every page, or a name past the first is created twice.
ORGANIZATIONS_PER_PAGE = 500

# Zammad orders a user form's fields by ``position``; its own user attributes use 100…1800
# (db/seeds/object_manager_attributes.rb: login 100, role_ids 1600, active 1800). A new attribute
# goes this far past the highest existing one, so it never shares a position with Zammad's fields
# or with one created earlier.
ATTRIBUTE_POSITION_STEP = 10

ENTRA_ATTRIBUTES: list[dict[str, Any]] = [
    {
        "name": "entra_key",
        "display": "Entra object id",
        "data_type": "input",
        "data_option": {"type": "text", "maxlength": 64, "null": True, "default": ""},
    },
    {
        "name": "entra_object_type",
        "display": "Entra object type",
        "data_type": "select",
        "data_option": {"options": {"user": "User", "contact": "Contact"}, "null": True, "default": ""},
    },
    {
        "name": "entrasync_profile",
        "display": "entrasync profile",
        "data_type": "input",
        "data_option": {"type": "text", "maxlength": 64, "null": True, "default": ""},
    },
    {  # set by an admin: entrasync never writes this user (docs/operations.md, "Opting a user out")
        "name": "entrasync_ignore",
        "display": "Ignored by entrasync",
        "data_type": "boolean",
        "data_option": {"options": {"true": "yes", "false": "no"}, "null": True, "default": False},
    },
]


class ZammadClient:
    def __init__(self, settings: ZammadSettings, token: SecretValue, transport: Transport) -> None:
        self.settings, self._token, self.transport = settings, token, transport
        self.base = f"{settings.url}/api/v1"

    def __enter__(self) -> "ZammadClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.transport.close()

    # --- the one request path ----------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        route: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        headers = {"Authorization": f"Token token={self._token.reveal()}", "Accept": "application/json"}
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE")
        try:
            response = self.transport.send(
                method,
                f"{self.base}{path}",
                route=route,
                idempotent=idempotent,
                params=params,
                json_body=body,
                headers=headers,
            )
        except NoResponse as exc:
            raise ZammadTransportError(method, route, exc.kind, exc.detail, exc.ambiguous) from None
        if response.status >= 400:
            raise _zammad_error(method, route, response)
        return response.json() if response.body else None

    # --- users ---------------------------------------------------------------------------------------
    def iter_users(self) -> Iterator[dict[str, Any]]:
        """Every user (the system user and inactive users included), page by page until empty."""
        page = 1
        while True:
            batch = self._request(
                "GET", "/users", "/api/v1/users", params={"page": page, "per_page": self.settings.per_page}
            )
            if not isinstance(batch, list):
                raise ZammadResponseError(200, "GET", "/api/v1/users", "expected a JSON array of users")
            if not batch:
                return
            yield from batch
            page += 1

    def user(self, user_id: int) -> dict[str, Any] | None:
        try:
            return self._request("GET", f"/users/{int(user_id)}", "/api/v1/users/{id}")
        except ZammadNotFoundError:
            return None

    def find_by_attribute(self, field: str, value: str) -> list[dict[str, Any]]:
        """Exact match on one column via a search ``condition`` (works without Elasticsearch, §1.5).

        Returns at most ``SEARCH_LIMIT`` users; the hits are filtered again locally because the
        search engine may match more loosely than the column's exact value. Search never returns
        user id 1.
        """
        body = {"condition": {f"user.{field}": {"operator": "is", "value": value}}, "limit": SEARCH_LIMIT}
        hits = self._request("POST", "/users/search", "/api/v1/users/search", body=body, idempotent=True)
        return [h for h in hits if str(h.get(field) or "") == value]

    def find_by_email(self, email: str) -> list[dict[str, Any]]:
        return self.find_by_attribute("email", email.lower())

    def create_user(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/users", "/api/v1/users", body=payload)

    def update_user(self, user_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("PUT", f"/users/{int(user_id)}", "/api/v1/users/{id}", body=payload)

    def roles(self) -> dict[str, int]:
        """Role ids by Zammad role name (names are unique in Zammad), every page of ``GET /api/v1/roles``.

        Zammad pages the list (500 by default); a page shorter than asked for is the last, so a
        helpdesk with a few roles costs one request.
        """
        names: dict[str, int] = {}
        page = 1
        while True:
            batch = self._request("GET", "/roles", "/api/v1/roles", params={"page": page, "per_page": ROLES_PER_PAGE})
            if not isinstance(batch, list):
                raise ZammadResponseError(200, "GET", "/api/v1/roles", "expected a JSON array of roles")
            names.update({r["name"]: int(r["id"]) for r in batch})
            if len(batch) < ROLES_PER_PAGE:
                return names
            page += 1

    def agent_role_ids(self) -> frozenset[int]:
        """Ids of the active roles that grant ``ticket.agent`` (or its parent ``ticket``): only their
        holders keep group access (has_groups.rb). ``expand=true`` names each role's permissions."""
        return frozenset(
            int(r["id"])
            for r in self._pages("/roles", "/api/v1/roles", {"expand": "true"})
            if r.get("active", True) and {"ticket.agent", "ticket"} & set(r.get("permissions") or ())
        )

    def groups(self) -> dict[str, dict[str, Any]]:
        """Zammad's groups by name (``id``, ``active``), every page of ``GET /api/v1/groups``
        (needs admin.group or ticket.agent)."""
        return {
            str(g["name"]): {"id": int(g["id"]), "active": bool(g.get("active", True))}
            for g in self._pages("/groups", "/api/v1/groups", {})
        }

    def _pages(self, path: str, route: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every record of a model index, page by page (a short page is the last)."""
        page = 1
        while True:
            batch = self._request("GET", path, route, params={**params, "page": page, "per_page": ROLES_PER_PAGE})
            if not isinstance(batch, list):
                raise ZammadResponseError(200, "GET", route, "expected a JSON array")
            yield from batch
            if len(batch) < ROLES_PER_PAGE:
                return
            page += 1

    def admin_role_ids(self) -> frozenset[int]:
        """The id of Zammad's "Admin" role, read from Zammad instead of assuming the seeded id 1.

        Raises ZammadResponseError when no role has that name (renamed or removed): protecting
        admins must never silently protect nobody.
        """
        ids = frozenset(rid for name, rid in self.roles().items() if name == ADMIN_ROLE_NAME)
        if not ids:
            raise ZammadResponseError(
                200,
                "GET",
                "/api/v1/roles",
                f"no role named {ADMIN_ROLE_NAME!r}; cannot tell which users are administrators",
            )
        return ids

    # --- organizations -------------------------------------------------------------------------
    def iter_organizations(self) -> Iterator[dict[str, Any]]:
        """Every organization the token may see, page by page; a short page is the last.

        Zammad scopes the list (``policy_scope``): a token with ``ticket.agent`` or
        ``admin.organization`` sees all of them, any other only its own user's organization.
        """
        page = 1
        while True:
            params = {"page": page, "per_page": ORGANIZATIONS_PER_PAGE}
            batch = self._request("GET", "/organizations", "/api/v1/organizations", params=params)
            if not isinstance(batch, list):
                raise ZammadResponseError(200, "GET", "/api/v1/organizations", "expected a JSON array of organizations")
            yield from batch
            if len(batch) < ORGANIZATIONS_PER_PAGE:
                return
            page += 1

    def create_organization(self, name: str) -> dict[str, Any]:
        """Create an organization (``ticket.agent`` or ``admin.organization``); sent once, like a user.

        Zammad refuses a name that exists in any spelling (422, ``uniqueness: { case_sensitive: false }``).
        """
        return self._request("POST", "/organizations", "/api/v1/organizations", body={"name": name, "active": True})

    # --- object manager ----------------------------------------------------------------------------
    def user_attributes(self) -> dict[str, dict[str, Any]]:
        items = self._request("GET", "/object_manager_attributes", "/api/v1/object_manager_attributes")
        return {a["name"]: a for a in items if a.get("object", "User") == "User"}

    def create_attribute(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Stage a custom User attribute (visible, not editable in forms); ``spec`` may override any key.

        Without a ``position`` in ``spec`` it goes ``ATTRIBUTE_POSITION_STEP`` past the highest
        existing User attribute, read first, so attributes created in turn keep their order.
        """
        position = spec.get("position") or _next_position(self.user_attributes().values())
        payload = {
            "object": "User",
            "active": True,
            "position": position,
            "editable": True,
            "screens": {
                "view": {"-all-": {"shown": True}},
                "edit": {"-all-": {"shown": False, "null": True}},
                "create": {"-all-": {"shown": False, "null": True}},
            },
            **spec,
        }
        return self._request("POST", "/object_manager_attributes", "/api/v1/object_manager_attributes", body=payload)

    def execute_migrations(self) -> None:
        self._request(
            "POST",
            "/object_manager_attributes_execute_migrations",
            "/api/v1/object_manager_attributes_execute_migrations",
        )


def _next_position(attributes: Iterable[dict[str, Any]]) -> int:
    """One step past the highest ``position`` among ``attributes`` (a step from 0 when none has one)."""
    positions = [int(a["position"]) for a in attributes if isinstance(a.get("position"), (int, float))]
    return max(positions, default=0) + ATTRIBUTE_POSITION_STEP


def _zammad_error(method: str, route: str, response: HttpResponse) -> ZammadResponseError:
    try:
        body = response.json()
        message = str(body.get("error_human") or body.get("error") or json.dumps(body)[:200])
    except (ValueError, AttributeError):
        message = f"non-JSON answer ({response.content_type or 'no content type'}): {response.text_excerpt(120)}"
    args = (response.status, method, route, message, parse_retry_after(response.headers.get("retry-after")))
    if response.status in (401, 403):
        return ZammadAuthError(*args)
    if response.status == 404:
        return ZammadNotFoundError(*args)
    if response.status == 422:
        return ZammadValidationError(*args)
    if response.status >= 500:
        return ZammadServerError(*args)
    return ZammadResponseError(*args)
