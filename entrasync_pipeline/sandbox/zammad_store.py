"""The emulated Zammad's data and the model rules its REST API applies on every save.

The rules are Zammad 6.x's, from reference/zammad-api.md §1–5: email stripped, lower-cased,
syntax-checked and unique case-insensitively on change; login derived from the email and kept
unique with suffixes; names split and capitalised when only one is given; string columns
silently truncated to their limits, editable object-manager inputs rejected past their
maxlength; unknown keys dropped without an error; custom attributes ignored until the object
manager's migrations ran; the last admin cannot be deactivated. Lookups go through indexes so
a 100,000-user helpdesk answers pages and searches quickly.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

STRING_LIMITS = {
    "login": 255,
    "firstname": 100,
    "lastname": 100,
    "email": 255,
    "image": 100,
    "image_source": 200,
    "web": 100,
    "phone": 100,
    "fax": 100,
    "mobile": 100,
    "department": 200,
    "street": 120,
    "zip": 100,
    "city": 100,
    "country": 100,
    "address": 500,
    "note": 5000,
    "source": 200,
}
# Object-manager inputs marked editable: validated against maxlength instead of truncated (§2.7).
EDITABLE_MAXLENGTH = {"department": 200, "address": 500}
BLANK_ON_CREATE = ("web", "phone", "fax", "mobile", "street", "zip", "city", "country", "note")
NULL_ON_CREATE = (
    "image",
    "image_source",
    "department",
    "address",
    "last_login",
    "source",
    "organization_id",
    "out_of_office_start_at",
    "out_of_office_end_at",
    "out_of_office_replacement_id",
)
COLUMN_ORDER = (
    "id",
    "organization_id",
    "login",
    "firstname",
    "lastname",
    "email",
    "image",
    "image_source",
    "web",
    "phone",
    "fax",
    "mobile",
    "department",
    "street",
    "zip",
    "city",
    "country",
    "address",
    "vip",
    "verified",
    "active",
    "note",
    "last_login",
    "source",
    "login_failed",
    "out_of_office",
    "out_of_office_start_at",
    "out_of_office_end_at",
    "out_of_office_replacement_id",
    "preferences",
    "updated_by_id",
    "created_by_id",
    "created_at",
    "updated_at",
)
ASSOCIATION_KEYS = (
    "role_ids",
    "two_factor_preference_ids",
    "organization_ids",
    "authorization_ids",
    "overview_sorting_ids",
    "group_ids",
)
NOT_WRITABLE = frozenset(
    {
        "id",
        "created_at",
        "updated_at",
        "created_by_id",
        "updated_by_id",
        "action",
        "controller",
        "login_failed",
        "last_login",
    }
)
BOOLEAN_COLUMNS = frozenset({"vip", "verified", "active", "out_of_office"})

# db/seeds/roles.rb: names, notes and permissions of Zammad's three seeded roles.
ROLES = {
    1: {
        "name": "Admin",
        "note": "To configure your system.",
        "permissions": ["admin", "user_preferences", "report", "knowledge_base.editor"],
    },
    2: {
        "name": "Agent",
        "note": "To work on Tickets.",
        "permissions": ["ticket.agent", "chat.agent", "cti.agent", "user_preferences", "knowledge_base.reader"],
    },
    3: {
        "name": "Customer",
        "note": "People who create Tickets ask for help.",
        "permissions": ["ticket.customer", "user_preferences"],
    },
}
# Permission ids are instance-specific in Zammad; the sandbox numbers the names its roles use.
PERMISSION_IDS = {
    name: index for index, name in enumerate(sorted({p for r in ROLES.values() for p in r["permissions"]}), start=1)
}
ROLE_COLUMNS = (
    "id",
    "name",
    "preferences",
    "default_at_signup",
    "active",
    "note",
    "updated_by_id",
    "created_by_id",
    "created_at",
    "updated_at",
)
ORGANIZATIONS = {1: "Zammad Foundation"}  # the seeded ones; a store adds what POST /organizations creates
ORGANIZATION_NAME_MAX = 100  # organizations.name is varchar(100); longer names are truncated on save
# db/seeds/groups.rb seeds one group, "Users"; a seed may add more (Seed.zammad_groups).
SEED_GROUPS = ({"id": 1, "name": "Users", "active": True},)
GROUP_ACCESS = ("full", "read", "create", "change", "overview")  # user_group.rb / has_groups.rb verbs
GROUP_COLUMNS = (
    "id",
    "name",
    "name_last",
    "parent_id",
    "assignment_timeout",
    "follow_up_possible",
    "follow_up_assignment",
    "email_address_id",
    "signature_id",
    "shared_drafts",
    "reopen_time_in_days",
    "active",
    "note",
    "updated_by_id",
    "created_by_id",
    "created_at",
    "updated_at",
)
ORGANIZATION_COLUMNS = (
    "id",
    "name",
    "shared",
    "domain",
    "domain_assignment",
    "active",
    "vip",
    "note",
    "updated_by_id",
    "created_by_id",
    "created_at",
    "updated_at",
)
SEEDED_AT = "2025-05-13T09:00:00.000Z"
RESERVED_NAMES = frozenset(
    {
        "destroy",
        "true",
        "false",
        "integer",
        "select",
        "drop",
        "create",
        "alter",
        "index",
        "table",
        "varchar",
        "blob",
        "date",
        "datetime",
        "timestamp",
        "url",
        "icon",
        "initials",
        "avatar",
        "permission",
        "validate",
        "subscribe",
        "unsubscribe",
        "translate",
        "search",
        "_type",
        "_doc",
        "_id",
        "id",
        "action",
        "scope",
        "constructor",
    }
)
INPUT_TYPES = ("text", "password", "tel", "fax", "email", "url")
DATA_TYPES = (
    "input",
    "user_autocompletion",
    "checkbox",
    "select",
    "multiselect",
    "tree_select",
    "multi_tree_select",
    "datetime",
    "date",
    "tag",
    "richtext",
    "textarea",
    "integer",
    "boolean",
    "autocompletion_ajax",
    "autocompletion_ajax_external_data_source",
)
EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+$")
TRUE_STRINGS = frozenset({"true", "1", "t", "yes", "y", "on"})
FALSE_STRINGS = frozenset({"false", "0", "f", "no", "n", "off", ""})


class ZammadRuleError(Exception):
    """A validation failure: the API answers 422 with this message in the envelope."""


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def has_permission(granted: list[str], wanted: str) -> bool:
    """Zammad permissions are hierarchical: ``admin`` grants ``admin.user``."""
    return any(wanted == g or wanted.startswith(g + ".") for g in granted)


@dataclass
class Token:
    value: str
    user_id: int
    permissions: list[str]
    name: str
    expired: bool = False


@dataclass
class Attribute:
    id: int
    name: str
    display: str
    data_type: str
    data_option: dict[str, Any]
    editable: bool = True
    active: bool = True
    screens: dict[str, Any] = field(default_factory=dict)
    position: int = 1500
    migrated: bool = False
    to_delete: bool = False
    data_option_new: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object_lookup_id": 2,
            "object": "User",
            "name": self.name,
            "display": self.display,
            "data_type": self.data_type,
            "data_option": self.data_option,
            "data_option_new": self.data_option_new,
            "editable": self.editable,
            "active": self.active,
            "screens": self.screens,
            "to_create": not self.migrated,
            "to_migrate": not self.migrated,
            "to_delete": self.to_delete,
            "to_config": bool(self.data_option_new),
            "position": self.position,
            "created_by_id": 1,
            "updated_by_id": 1,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


CORE_ATTRIBUTES = [
    ("login", "Login", "input", False),
    ("firstname", "First name", "input", False),
    ("lastname", "Last name", "input", False),
    ("email", "Email", "input", False),
    ("web", "Web", "input", True),
    ("phone", "Phone", "input", True),
    ("mobile", "Mobile", "input", True),
    ("fax", "Fax", "input", True),
    ("organization_id", "Organization", "autocompletion_ajax", False),
    ("department", "Department", "input", True),
    ("street", "Street", "input", True),
    ("zip", "Zip", "input", True),
    ("city", "City", "input", True),
    ("country", "Country", "input", True),
    ("address", "Address", "textarea", True),
    ("password", "Password", "input", False),
    ("vip", "VIP", "boolean", False),
    ("note", "Note", "richtext", False),
    ("role_ids", "Permissions", "user_permission", False),
    ("active", "Active", "active", False),
]
CORE_NAMES = frozenset(name for name, *_ in CORE_ATTRIBUTES)


class ZammadStore:
    """All users, tokens and object-manager attributes of one emulated Zammad."""

    def __init__(self, page_cap: int = 1000) -> None:
        self.lock = threading.RLock()
        self.page_cap = page_cap
        self.users: dict[int, dict[str, Any]] = {}
        self.passwords: dict[int, str] = {}
        self.referenced: set[int] = set()
        self.order: list[int] = []
        self.email_index: dict[str, set[int]] = {}
        self.login_index: dict[str, int] = {}
        self.custom_index: dict[tuple[str, Any], set[int]] = {}
        self.haystacks: dict[int, str] = {}
        self.tokens: dict[str, Token] = {}
        self.attributes: dict[str, Attribute] = {}
        self.organizations: dict[int, dict[str, Any]] = {
            oid: {
                "name": name,
                "created_by_id": 1,
                "updated_by_id": 1,
                "created_at": SEEDED_AT,
                "updated_at": SEEDED_AT,
            }
            for oid, name in ORGANIZATIONS.items()
        }
        self.groups: dict[int, dict[str, Any]] = {g["id"]: dict(g) for g in SEED_GROUPS}
        self.next_id = 1
        self.next_attribute_id = 1
        for name, display, data_type, editable in CORE_ATTRIBUTES:
            option = {"type": "text", "maxlength": STRING_LIMITS.get(name, 255)} if data_type == "input" else {}
            self._add_attribute(name, display, data_type, option, editable=editable, migrated=True)

    # --- attributes -------------------------------------------------------------------------
    def _add_attribute(
        self,
        name: str,
        display: str,
        data_type: str,
        data_option: dict[str, Any],
        editable: bool = True,
        migrated: bool = False,
        screens: dict[str, Any] | None = None,
        position: int = 1500,
    ) -> Attribute:
        attribute = Attribute(
            self.next_attribute_id,
            name,
            display,
            data_type,
            data_option,
            editable=editable,
            migrated=migrated,
            screens=screens or {},
            position=position,
        )
        self.next_attribute_id += 1
        self.attributes[name] = attribute
        return attribute

    def custom_columns(self) -> list[Attribute]:
        return [a for a in self.attributes.values() if a.migrated and a.name not in CORE_NAMES]

    def create_attribute(self, payload: dict[str, Any]) -> Attribute:
        data_type = payload.get("data_type")
        if data_type is None:
            raise RuntimeError("undefined method for nil:NilClass")  # Zammad answers 500 here (§4)
        name = str(payload.get("name") or "").strip().lower()
        with self.lock:
            self._check_attribute_name(name)
            if data_type not in DATA_TYPES:
                raise ZammadRuleError(f"Invalid data_type param '{data_type}'")
            option = _controller_data_option(data_type, dict(payload.get("data_option") or {}))
            self._check_data_option(data_type, option)
            return self._add_attribute(
                name,
                str(payload.get("display") or name),
                data_type,
                option,
                screens=payload.get("screens") or {},
                position=int(payload.get("position") or 1500),
            )

    def _check_attribute_name(self, name: str) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", name) or not re.search(r"[a-z]", name):
            raise ZammadRuleError(
                "Name may only contain lower-case letters, digits and underscores, and at least one letter."
            )
        if name.endswith("_id") or name.endswith("_ids"):
            raise ZammadRuleError("Name can't get used because *_id and *_ids are not allowed")
        if name in RESERVED_NAMES:
            raise ZammadRuleError(f"Name {name} is a reserved word")
        if name in self.attributes or name in COLUMN_ORDER or name in ASSOCIATION_KEYS:
            raise ZammadRuleError(f"Name {name} already exists!")

    @staticmethod
    def _check_data_option(data_type: str, option: dict[str, Any]) -> None:
        if data_type == "input":
            if option.get("type") not in INPUT_TYPES:
                raise ZammadRuleError("Need data_option[:type] param with one of text, password, tel, fax, email, url")
            maxlength = option.get("maxlength")
            if not isinstance(maxlength, int) or maxlength < 1:
                raise ZammadRuleError("Need data_option[:maxlength] param")
        if data_type in ("select", "multiselect") and not isinstance(option.get("options"), (dict, list)):
            raise ZammadRuleError("Need data_option[:options] param")
        if data_type == "boolean":  # attribute.rb data_option_validations
            if "default" not in option:
                raise ZammadRuleError("Need data_option[:default] param true|false|undefined")
            if not isinstance(option.get("options"), dict):
                raise ZammadRuleError("Need data_option[:options] param")
        if data_type == "integer":
            problems = _integer_bounds_problems(option)
            if problems:
                raise ZammadRuleError(f"Validation failed: {', '.join(problems)}")

    def execute_migrations(self) -> None:
        """Add a column for every staged attribute (existing users get null) and apply changes."""
        with self.lock:
            for attribute in list(self.attributes.values()):
                if attribute.to_delete:
                    del self.attributes[attribute.name]
                    for user in self.users.values():
                        user.pop(attribute.name, None)
                    continue
                if not attribute.migrated:
                    attribute.migrated = True
                    # add_column: string types without an SQL default (null), the others with
                    # data_option[:default] as theirs, which fills the existing rows.
                    filled = None if attribute.data_type in STRING_DATA_TYPES else attribute.data_option.get("default")
                    for user in self.users.values():
                        user.setdefault(attribute.name, filled)
                if attribute.data_option_new:
                    attribute.data_option = {**attribute.data_option, **attribute.data_option_new}
                    attribute.data_option_new = {}

    def discard_changes(self) -> None:
        with self.lock:
            for attribute in list(self.attributes.values()):
                if not attribute.migrated:
                    del self.attributes[attribute.name]
                attribute.to_delete = False
                attribute.data_option_new = {}

    # --- users: reading ---------------------------------------------------------------------
    def get(self, user_id: int) -> dict[str, Any] | None:
        return self.users.get(user_id)

    # --- groups -----------------------------------------------------------------------------
    def add_group(self, name: str, active: bool = True, group_id: int | None = None) -> dict[str, Any]:
        """A Zammad group (names are unique, as Group's validation demands)."""
        with self.lock:
            if any(g["name"] == name for g in self.groups.values()):
                raise ZammadRuleError(f"Name '{name}' already exists")
            gid = group_id or max(self.groups, default=0) + 1
            self.groups[gid] = {"id": gid, "name": name, "active": active}
            self._show_group_access()
            return dict(self.groups[gid])

    def group_access_map(self, user: dict[str, Any]) -> dict[str, list[str]]:
        """has_groups.rb ``groups_access_map``: ``{}`` for an inactive user or one without
        ticket.agent, whatever is stored; access to an inactive group is left out."""
        if not user.get("active") or not has_permission(self.permissions(user), "ticket.agent"):
            return {}
        stored = user.get("_group_access") or {}
        return {k: list(v) for k, v in stored.items() if self.groups.get(int(k), {}).get("active")}

    def _show_group_access(self) -> None:
        for user in self.users.values():
            user["group_ids"] = self.group_access_map(user)

    def _group_access(self, value: Any, by_name: bool) -> dict[str, list[str]]:
        """``group_ids_access_map=`` / ``group_names_access_map=``: replaces every relation; an
        unknown group or access verb is refused as UserGroup's validation refuses it."""
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ZammadRuleError(f"Invalid value for param '{'groups' if by_name else 'group_ids'}': {value}")
        names = {g["name"]: gid for gid, g in self.groups.items()}
        access: dict[str, list[str]] = {}
        for key, verbs in value.items():
            gid = names.get(str(key)) if by_name else _int_or_none(key)
            if gid is None or gid not in self.groups:
                raise ZammadRuleError("Validation failed: Group must exist")
            for verb in [verbs] if isinstance(verbs, str) else list(verbs or []):
                if verb not in GROUP_ACCESS:
                    raise ZammadRuleError("Validation failed: Access is not included in the list")
                access.setdefault(str(gid), [])
                if verb not in access[str(gid)]:
                    access[str(gid)].append(verb)
        return access

    def permissions(self, user: dict[str, Any]) -> list[str]:
        return [p for rid in user.get("role_ids", []) if rid in ROLES for p in ROLES[rid]["permissions"]]

    def find_by_login_or_email(self, key: str) -> dict[str, Any] | None:
        key = key.strip().lower()
        with self.lock:
            if key in self.login_index:
                return self.users[self.login_index[key]]
            ids = self.email_index.get(key)
            return self.users[min(ids)] if ids else None

    def page(self, page: int, per_page: int) -> list[dict[str, Any]]:
        with self.lock:
            start = (page - 1) * per_page
            return [copy.deepcopy(self.users[i]) for i in self.order[start : start + per_page]]

    def search(
        self, query: str, condition: dict[str, Any] | None, order: list[tuple[str, bool]]
    ) -> list[dict[str, Any]]:
        """The database fallback: one lower-cased substring over every string column, id 1
        excluded, in ``order`` ((column, descending) pairs; rows equal on all of them by id, newest first)."""
        needle = query.replace("*", "").strip().lower()
        with self.lock:
            candidates = self._condition_ids(condition) if condition else None
            pool = candidates if candidates is not None else self.order
            hits = [
                self.users[i]
                for i in sorted(pool, reverse=True)
                if i != 1 and i in self.users and (not needle or needle in self.haystacks[i])
            ]
            return [copy.deepcopy(u) for u in order_records(hits, order)]

    def user_columns(self) -> frozenset[str]:
        """The ``users`` table's columns (``password`` included, custom attributes once migrated):
        what ``sort_by`` may name (lib/sql_helper.rb checks ``columns_hash``)."""
        return frozenset(COLUMN_ORDER) | {"password"} | {a.name for a in self.custom_columns()}

    def organization_ids(self) -> list[int]:
        with self.lock:
            return sorted(self.organizations)

    def organization(self, oid: int) -> dict[str, Any]:
        with self.lock:
            return dict(self.organizations[oid])

    def organization_name(self, oid: Any) -> str | None:
        with self.lock:
            record = self.organizations.get(oid) if isinstance(oid, int) else None
            return record["name"] if record else None

    def create_organization(self, payload: dict[str, Any], actor_id: int) -> int:
        """Organization.create: the name stripped and truncated to its column, present and unique
        ignoring case (``validates :name, presence: true, uniqueness: { case_sensitive: false }``)."""
        name = payload.get("name")
        name = str(name).strip()[:ORGANIZATION_NAME_MAX] if name is not None else ""
        with self.lock:
            if not name:
                raise ZammadRuleError("Validation failed: Name can't be blank")
            if any(o["name"].lower() == name.lower() for o in self.organizations.values()):
                raise ZammadRuleError("Validation failed: Name has already been taken")
            oid = max(self.organizations, default=0) + 1
            at = now_iso()
            self.organizations[oid] = {
                "name": name,
                "created_by_id": actor_id,
                "updated_by_id": actor_id,
                "created_at": at,
                "updated_at": at,
            }
            return oid

    def organization_members(self, organization_id: int) -> list[int]:
        with self.lock:
            return [i for i in self.order if self.users[i].get("organization_id") == organization_id]

    def _condition_ids(self, condition: dict[str, Any]) -> list[int]:
        ids = set(self.order)
        for key, rule in condition.items():
            column = key.split(".", 1)[-1]
            operator = str((rule or {}).get("operator", "is"))
            value = (rule or {}).get("value")
            values = value if isinstance(value, list) else [value]
            matched = {i for i in ids if self._matches(self.users[i].get(column), operator, values)}
            ids = matched
        return sorted(ids)

    @staticmethod
    def _matches(actual: Any, operator: str, values: list[Any]) -> bool:
        text = "" if actual is None else str(actual)
        if operator == "is":
            return any(text == ("" if v is None else str(v)) for v in values)
        if operator == "is not":
            return all(text != ("" if v is None else str(v)) for v in values)
        if operator == "contains":
            return any(str(v).lower() in text.lower() for v in values)
        if operator == "contains not":
            return all(str(v).lower() not in text.lower() for v in values)
        raise ZammadRuleError(f"Invalid operator '{operator}'")

    def references(self, user_id: int) -> bool:
        if user_id in self.referenced:
            return True
        return any(u["created_by_id"] == user_id or u["updated_by_id"] == user_id for u in self.users.values())

    # --- users: writing ---------------------------------------------------------------------
    def create(
        self, params: dict[str, Any], actor_id: int, may_assign_roles: bool, explicit_id: int | None = None
    ) -> dict[str, Any]:
        with self.lock:
            user_id = explicit_id if explicit_id is not None else self.next_id
            stamp = now_iso()
            user: dict[str, Any] = {column: None for column in COLUMN_ORDER}
            user.update({c: "" for c in BLANK_ON_CREATE})
            user.update(
                {
                    "id": user_id,
                    "login": "",
                    "firstname": "",
                    "lastname": "",
                    "email": "",
                    "vip": False,
                    "verified": False,
                    "active": True,
                    "login_failed": 0,
                    "out_of_office": False,
                    "preferences": {"locale": "en-us"},
                    "updated_by_id": actor_id,
                    "created_by_id": actor_id,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
            for attribute in self.custom_columns():
                user[attribute.name] = attribute.data_option.get("default", "")
            user.update(
                {
                    "role_ids": [],
                    "two_factor_preference_ids": [],
                    "organization_ids": [],
                    "authorization_ids": [],
                    "overview_sorting_ids": [],
                    "group_ids": {},
                }
            )
            changed = self._apply(user, params, may_assign_roles, creating=True)
            if not user["role_ids"]:
                user["role_ids"] = [3]
            self._validate(user, None, changed)
            self._store(user, None)
            self.next_id = max(self.next_id, user_id + 1)
            return copy.deepcopy(user)

    def update(self, user_id: int, params: dict[str, Any], actor_id: int, may_assign_roles: bool) -> dict[str, Any]:
        with self.lock:
            before = self.users[user_id]
            user = copy.deepcopy(before)
            changed = self._apply(user, params, may_assign_roles, creating=False)
            self._validate(user, before, changed)
            if any(user.get(k) != before.get(k) for k in set(user) | set(before)):
                user["updated_at"] = now_iso()
                user["updated_by_id"] = actor_id
                self._store(user, before)
            return copy.deepcopy(self.users[user_id])

    def delete(self, user_id: int) -> None:
        with self.lock:
            user = self.users.pop(user_id)
            self.order.remove(user_id)
            self._unindex(user)
            self.haystacks.pop(user_id, None)

    def _apply(self, user: dict[str, Any], params: dict[str, Any], may_assign_roles: bool, creating: bool) -> set[str]:
        """Copy the writable, known keys of ``params`` onto ``user``; unknown keys vanish (§2.3)."""
        custom = {a.name: a for a in self.custom_columns()}
        changed: set[str] = set()
        for key, value in params.items():
            if key in NOT_WRITABLE:
                continue
            if key in ("role_ids", "roles", "group_ids", "groups"):
                if may_assign_roles:
                    self._assign(user, key, value)
                    changed.add("role_ids")
                continue
            if key == "password":
                user["_password"] = None if value is None else str(value)
                continue
            if key == "organization":
                user["organization_id"] = self._organization_by_name(value)
                continue
            if key in custom:
                user[key] = self._custom_value(custom[key], value)
            elif key in BOOLEAN_COLUMNS:
                user[key] = _to_bool(key, value)
            elif key == "organization_id":
                user[key] = self._organization_id(value)
            elif key in STRING_LIMITS:
                user[key] = _to_string(key, value)
            elif key == "preferences" and isinstance(value, dict):
                user[key] = {**(user.get(key) or {}), **value}
            elif key in ("out_of_office_start_at", "out_of_office_end_at", "out_of_office_replacement_id"):
                user[key] = value
            else:
                continue
            changed.add(key)
        self._normalise(user, changed, creating)
        return changed

    def _assign(self, user: dict[str, Any], key: str, value: Any) -> None:
        if key in ("group_ids", "groups"):
            user["_group_access"] = self._group_access(value, by_name=key == "groups")
            return
        if key == "roles":
            names = {r["name"].lower(): rid for rid, r in ROLES.items()}
            ids = []
            for name in value or []:
                if str(name).lower() not in names:
                    raise ZammadRuleError(f"No lookup value found for 'roles': \"{name}\"")
                ids.append(names[str(name).lower()])
            user["role_ids"] = ids
            return
        ids = []
        for rid in value or []:
            try:
                rid = int(rid)
            except (TypeError, ValueError):
                raise ZammadRuleError(f"No value found for 'roles' with id {rid}") from None
            if rid not in ROLES:
                raise ZammadRuleError(f"No value found for 'roles' with id {rid}")
            ids.append(rid)
        user["role_ids"] = ids

    def _organization_id(self, value: Any) -> int | None:
        if value in (None, ""):
            return None
        try:
            org = int(value)
        except (TypeError, ValueError):
            org = -1
        if org not in self.organizations:
            raise ZammadRuleError(f"Invalid value for param 'organization_id': {value}")
        return org

    def _organization_by_name(self, value: Any) -> int | None:
        """``Organization.lookup(name:)`` is ``find_by(name:)``: exact, case included (PostgreSQL)."""
        if value in (None, ""):
            return None
        for oid, organization in self.organizations.items():
            if organization["name"] == value:
                return oid
        raise ZammadRuleError(f"No lookup value found for 'organization': \"{value}\"")

    @staticmethod
    def _custom_value(attribute: Attribute, value: Any) -> Any:
        """A value of a migrated attribute as its column stores it: cast the Rails way, never refused
        for its type (reference §4): a boolean, integer or date takes whatever casts."""
        if value is None:
            return None
        if attribute.data_type == "boolean":
            return _rails_boolean(value)
        if attribute.data_type == "integer":
            return _checked_integer(attribute, _rails_integer(value))
        if attribute.data_type == "date":
            return _rails_date(value)
        if isinstance(value, (dict, list)):
            raise ZammadRuleError(f"Invalid value '{value}' for field '{attribute.name}'!")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if attribute.data_type in ("select", "tree_select") and text != "":
            options = attribute.data_option.get("options") or {}
            keys = options.keys() if isinstance(options, dict) else [o.get("value") for o in options]
            if text not in keys:
                raise ZammadRuleError(f"Invalid value '{text}' for field '{attribute.name}'!")
        maxlength = attribute.data_option.get("maxlength")
        if isinstance(maxlength, int) and len(text) > maxlength:
            raise ZammadRuleError(f"{_humanize(attribute.name)} is longer than the allowed length {maxlength}")
        return text

    def _normalise(self, user: dict[str, Any], changed: set[str], creating: bool) -> None:
        """Zammad's before-validation callbacks: names, email, login (§2.4–2.7)."""
        for key, limit in EDITABLE_MAXLENGTH.items():
            if key in changed and isinstance(user.get(key), str) and len(user[key]) > limit:
                raise ZammadRuleError(f"{_humanize(key)} is longer than the allowed length {limit}")
        if isinstance(user.get("email"), str):
            user["email"] = user["email"].strip().lower()
        _check_name(user)
        for key, limit in STRING_LIMITS.items():
            if isinstance(user.get(key), str) and len(user[key]) > limit and key not in EDITABLE_MAXLENGTH:
                user[key] = user[key][:limit]
        self._derive_login(user, changed, creating)

    def _derive_login(self, user: dict[str, Any], changed: set[str], creating: bool) -> None:
        before = self.users.get(user["id"])
        email = user.get("email") or ""
        login = (user.get("login") or "").strip().lower()
        if before and "email" in changed and before.get("login") == (before.get("email") or None):
            if email and before["email"] != email:
                login = email
        if not login:
            login = email or f"auto-{uuid.uuid4()}"
        user["login"] = self._unique_login(login[:255], user["id"])

    def _unique_login(self, login: str, user_id: int) -> str:
        owner = self.login_index.get(login)
        if owner is None or owner == user_id:
            return login
        for suffix in range(1, 21):
            candidate = f"{login}{suffix}"
            if self.login_index.get(candidate) in (None, user_id):
                return candidate
        return f"{login}{uuid.uuid4()}"

    def _validate(self, user: dict[str, Any], before: dict[str, Any] | None, changed: set[str]) -> None:
        email = user.get("email") or ""
        if email and (not EMAIL_RE.match(email) or not 3 <= len(email) <= 250 or ".." in email):
            raise ZammadRuleError(f"Invalid email '{email}'")
        if not any(user.get(k) for k in ("firstname", "lastname", "phone", "mobile", "email")):
            raise ZammadRuleError(
                "At least one identifier (firstname, lastname, phone, mobile or email) for user is required."
            )
        if email and (before is None or (before.get("email") or "") != email):
            owners = self.email_index.get(email, set()) - {user["id"]}
            if owners:
                raise ZammadRuleError(f"Email address '{email}' is already used for another user.")
        if before is not None and self._was_last_admin(before, user):
            raise ZammadRuleError("At least one user needs to have admin permissions.")

    def _was_last_admin(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        def is_admin(u: dict[str, Any]) -> bool:
            return bool(u.get("active")) and has_permission(self.permissions(u), "admin.user")

        if not is_admin(before) or is_admin(after):
            return False
        return not any(is_admin(u) for uid, u in self.users.items() if uid != before["id"])

    def _store(self, user: dict[str, Any], before: dict[str, Any] | None) -> None:
        password = user.pop("_password", "__keep__")
        if before is not None:
            self._unindex(before)
        else:
            self.order.append(user["id"])
        user["group_ids"] = self.group_access_map(user)
        self.users[user["id"]] = user
        if password != "__keep__":
            if password:
                self.passwords[user["id"]] = password
            else:
                self.passwords.pop(user["id"], None)
        self._index(user)

    def _index(self, user: dict[str, Any]) -> None:
        if user.get("email"):
            self.email_index.setdefault(user["email"], set()).add(user["id"])
        self.login_index[user["login"]] = user["id"]
        string_columns = list(STRING_LIMITS) + [a.name for a in self.custom_columns()]
        self.haystacks[user["id"]] = "\x00".join(
            str(user.get(c)).lower() for c in string_columns if isinstance(user.get(c), str)
        )

    def _unindex(self, user: dict[str, Any]) -> None:
        if user.get("email"):
            ids = self.email_index.get(user["email"], set())
            ids.discard(user["id"])
            if not ids:
                self.email_index.pop(user["email"], None)
        if self.login_index.get(user["login"]) == user["id"]:
            del self.login_index[user["login"]]


def order_records(records: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """``ORDER BY`` as PostgreSQL runs it: each (column, descending) in turn, NULLs last when
    ascending and first when descending, strings by a case-insensitive collation; rows equal on
    every column keep their order."""
    out = list(records)
    for column, descending in reversed(order):
        present = [r for r in out if r.get(column) is not None]
        missing = [r for r in out if r.get(column) is None]
        present.sort(key=lambda r: _sort_value(r[column]), reverse=descending)
        out = missing + present if descending else present + missing
    return out


def _sort_value(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return (0, value)
    text = value if isinstance(value, str) else str(value)
    return (1, (text.casefold(), text))


def _humanize(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _to_string(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ZammadRuleError(f"Invalid value for param '{key}': {value}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- typed custom attributes: Zammad's controller defaults, its validators and Rails' casts ------------
STRING_DATA_TYPES = frozenset({"input", "select", "multiselect", "tree_select", "richtext", "textarea", "checkbox"})
INTEGER_LIMIT = 2_147_483_647  # DataOptionValidator: min and max within ±(2**31 - 1)
RAILS_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF"})  # ActiveModel::Type::Boolean
_RUBY_TO_I = re.compile(r"^\s*([+-]?\d+(?:_\d+)*)")
_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])")
_DOTTED_DATE = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})\s*$")


def _controller_data_option(data_type: str, option: dict[str, Any]) -> dict[str, Any]:
    """ObjectManagerAttributesController#permitted_params: a boolean's "true"/"false" default becomes
    a boolean; ``default`` is "" for input and selects and null otherwise; ``null`` is true."""
    if data_type == "boolean" and option.get("default") in ("true", "false"):
        option["default"] = option["default"] == "true"
    option.setdefault("default", "" if data_type in ("input", "select", "tree_select") else None)
    if option.get("null") is None:
        option["null"] = True
    return option


def _integer_bounds_problems(option: dict[str, Any]) -> list[str]:
    """DataOptionValidator#min_max_check, with its messages."""
    problems = []
    for key, word in (("min", "Minimal"), ("max", "Maximal")):
        bound = option.get(key)
        if not isinstance(bound, int) or isinstance(bound, bool):
            problems.append(f"{word} value must be an integer")
        elif bound < -INTEGER_LIMIT:
            problems.append(f"{word} value must be higher than -2147483648")
        elif bound > INTEGER_LIMIT:
            problems.append(f"{word} value must be lower than 2147483648")
    if not problems and option["min"] > option["max"]:
        problems.append("Maximal value must be higher than or equal to minimal value")
    return problems


def _rails_boolean(value: Any) -> bool | None:
    """ActiveModel::Type::Boolean#cast: "" is null, 0 and a few spellings of false are false,
    everything else (also "no", "False") is true."""
    if isinstance(value, bool):
        return value
    if value == "":
        return None
    if isinstance(value, (int, float)):
        return value != 0
    return str(value) not in RAILS_FALSE


def _rails_integer(value: Any) -> int | None:
    """ActiveModel::Type::Integer#cast: true 1, false 0, "" null, a float truncated, a string by
    Ruby's String#to_i (its leading digits, else 0: "12abc" is 12, "abc" is 0)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value)
    if not text.strip():
        return None
    match = _RUBY_TO_I.match(text)
    return int(match.group(1).replace("_", "")) if match else 0


def _checked_integer(attribute: Attribute, value: int | None) -> int | None:
    """ObjectManager::Attribute::Validation::MinMax: outside data_option min..max is a 422."""
    label = _humanize(attribute.name)
    low, high = attribute.data_option.get("min"), attribute.data_option.get("max")
    if value is not None and low is not None and low is not False and value < low:
        raise ZammadRuleError(f"{label} is smaller than the allowed minimum value of {low}")
    if value is not None and high is not None and high is not False and value > high:
        raise ZammadRuleError(f"{label} is larger than the allowed maximum value of {high}")
    return value


def _rails_date(value: Any) -> str | None:
    """ActiveModel::Type::Date#cast as JSON gives it back ("YYYY-MM-DD"): an ISO date, also the
    date of an ISO date-time as written, or a dotted "DD.MM.YYYY"; an impossible date or any other
    text is stored as null without an error. (Ruby's Date._parse knows more formats; the sandbox
    stores those as null too: docs/sandbox.md.)"""
    if not isinstance(value, str):
        return None
    iso, dotted = _ISO_DATE.match(value), _DOTTED_DATE.match(value)
    if iso:
        year, month, day = (int(g) for g in iso.groups())
    elif dotted:
        day, month, year = (int(g) for g in dotted.groups())
    else:
        return None
    try:
        return datetime(year, month, day).strftime("%Y-%m-%d")
    except ValueError:
        return None


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    if value is None:
        raise ZammadRuleError(f"Attribute '{key}' required!")
    if text in TRUE_STRINGS:
        return True
    if text in FALSE_STRINGS:
        return False
    return True


_SCHEME = re.compile(r"^(https?|ftp)://", re.IGNORECASE)


def _check_name(user: dict[str, Any]) -> None:
    """Zammad's ``check_name``: strip, split a lone name, derive from email, capitalise (§2.6)."""
    first = _strip_scheme((user.get("firstname") or "").strip())
    last = _strip_scheme((user.get("lastname") or "").strip())
    if first and last:
        user["firstname"], user["lastname"] = first, last
        return
    guessed = False
    if first or last:
        first, last = _split_name(first or last)
        guessed = True
    elif user.get("email"):
        local = str(user["email"]).split("@", 1)[0]
        if "." in local:
            first, last = local.split(".", 1)
            guessed = True
    if guessed:
        first, last = _capitalise(first), _capitalise(last)
    user["firstname"], user["lastname"] = first, last


def _strip_scheme(value: str) -> str:
    return " ".join(_SCHEME.sub("", token) for token in value.split(" ")) if value else value


def _split_name(value: str) -> tuple[str, str]:
    if "," in value:
        last, first = (p.strip() for p in value.split(",", 1))
        return first, last
    match = re.match(r"^((?:(?:Dr|Prof)\.\s+)?\S+)\s+(.+)$", value)
    if match:
        return match.group(1), match.group(2).strip()
    return value, ""


def _capitalise(value: str) -> str:
    if value and value.isalpha() and (value.islower() or value.isupper()):
        return value.capitalize()
    return value


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
