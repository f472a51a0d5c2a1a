"""The emulated tenant's directory: users, groups, other directory objects, memberships and the
change log that group delta queries read.

Property sets follow reference/microsoft-graph-and-msal.md §2: a user's default set (returned
without ``$select``), properties returned only when selected, unset scalars ``null`` and unset
collections ``[]``. Lookups are by id (dicts), membership checks are O(1) and transitive member
lists are cached per directory version, so a 100,000-user tenant stays fast.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

USER_DEFAULT_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
USER_SELECT_ONLY_PROPERTIES = (
    "accountEnabled",
    "city",
    "companyName",
    "country",
    "createdDateTime",
    "deletedDateTime",
    "department",
    "employeeId",
    "employeeType",
    "externalUserState",
    "faxNumber",
    "mailNickname",
    "onPremisesSamAccountName",
    "onPremisesSyncEnabled",
    "otherMails",
    "postalCode",
    "proxyAddresses",
    "state",
    "streetAddress",
    "usageLocation",
    "userType",
)
USER_BASIC_PROPERTIES = ("displayName", "givenName", "id", "mail", "surname", "userPrincipalName")
COLLECTION_PROPERTIES = frozenset({"businessPhones", "otherMails", "proxyAddresses", "groupTypes"})

TYPE_PROPERTIES: dict[str, tuple[str, ...]] = {
    "user": USER_DEFAULT_PROPERTIES + USER_SELECT_ONLY_PROPERTIES,
    "group": (
        "id",
        "displayName",
        "description",
        "mail",
        "mailNickname",
        "mailEnabled",
        "securityEnabled",
        "groupTypes",
        "createdDateTime",
    ),
    "device": (
        "id",
        "displayName",
        "deviceId",
        "accountEnabled",
        "operatingSystem",
        "operatingSystemVersion",
        "createdDateTime",
    ),
    "servicePrincipal": ("id", "displayName", "appId", "accountEnabled", "servicePrincipalType"),
    "orgContact": (
        "id",
        "displayName",
        "mail",
        "givenName",
        "surname",
        "companyName",
        "department",
        "jobTitle",
        "mobilePhone",
        "businessPhones",
    ),
}
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    **TYPE_PROPERTIES,
    "user": USER_DEFAULT_PROPERTIES,
}
ALL_PROPERTIES = frozenset(p for props in TYPE_PROPERTIES.values() for p in props)
# Graph v1.0 known issue: service principals are not listed as group members
# (reference/microsoft-graph-and-msal.md §1.1).
HIDDEN_IN_V1_MEMBERS = frozenset({"servicePrincipal"})


def odata_type(kind: str) -> str:
    return f"#microsoft.graph.{kind}"


@dataclass
class MembershipChange:
    version: int
    group_id: str
    member_id: str
    kind: str
    removed: bool


@dataclass
class Directory:
    """In-memory directory with a monotonically increasing version for delta queries."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    members: dict[str, dict[str, None]] = field(default_factory=dict)
    version: int = 0
    changes: list[MembershipChange] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _transitive: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    # --- building ---------------------------------------------------------------------------
    def add_object(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = {p: _empty(p) for p in TYPE_PROPERTIES[kind]}
            obj.update({k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("@")})
            self.objects[obj["id"]] = obj
            self.kinds[obj["id"]] = kind
            if kind == "group":
                self.members.setdefault(obj["id"], {})
            self._touch()
            return obj

    def add_member(self, group_id: str, member_id: str, log: bool = True) -> bool:
        """Add a direct member; False if it was a member already."""
        with self.lock:
            group = self.members[group_id]
            if member_id in group:
                return False
            group[member_id] = None
            self._touch()
            if log:
                self._log(group_id, member_id, removed=False)
            return True

    def remove_member(self, group_id: str, member_id: str) -> bool:
        with self.lock:
            group = self.members[group_id]
            if member_id not in group:
                return False
            del group[member_id]
            self._touch()
            self._log(group_id, member_id, removed=True)
            return True

    def update_object(self, object_id: str, changes: dict[str, Any]) -> None:
        with self.lock:
            self.objects[object_id].update(copy.deepcopy(changes))
            self._touch()

    def delete_object(self, object_id: str) -> None:
        """Delete an object and every membership it had, logging removals for delta."""
        with self.lock:
            for group_id, group in self.members.items():
                if object_id in group:
                    del group[object_id]
                    self._log(group_id, object_id, removed=True)
            self.members.pop(object_id, None)
            self.objects.pop(object_id, None)
            self.kinds.pop(object_id, None)
            self._touch()

    # --- reading ----------------------------------------------------------------------------
    def kind(self, object_id: str) -> str | None:
        return self.kinds.get(object_id)

    def is_group(self, object_id: str) -> bool:
        return self.kinds.get(object_id) == "group"

    def member_ids(self, group_id: str, transitive: bool) -> list[str]:
        with self.lock:
            if not transitive:
                return list(self.members[group_id])
            cached = self._transitive.get(group_id)
            if cached and cached[0] == self.version:
                return cached[1]
            flat = self._flatten(group_id)
            self._transitive[group_id] = (self.version, flat)
            return flat

    def changes_since(self, version: int, group_ids: Iterable[str]) -> dict[str, dict[str, MembershipChange]]:
        """Net membership changes per group after ``version`` (the last change per member wins)."""
        wanted = set(group_ids)
        net: dict[str, dict[str, MembershipChange]] = {}
        with self.lock:
            for change in self.changes:
                if change.version > version and change.group_id in wanted:
                    net.setdefault(change.group_id, {})[change.member_id] = change
        return net

    def _flatten(self, group_id: str) -> list[str]:
        seen: dict[str, None] = {}
        visited_groups = {group_id}
        stack = [group_id]
        while stack:
            current = stack.pop(0)
            for member_id in self.members.get(current, {}):
                if member_id not in seen:
                    seen[member_id] = None
                if self.kinds.get(member_id) == "group" and member_id not in visited_groups:
                    visited_groups.add(member_id)
                    stack.append(member_id)
        return list(seen)

    def _touch(self) -> None:
        self.version += 1

    def _log(self, group_id: str, member_id: str, removed: bool) -> None:
        kind = self.kinds.get(member_id, "user")
        self.changes.append(MembershipChange(self.version, group_id, member_id, kind, removed))


def _empty(prop: str) -> Any:
    return [] if prop in COLLECTION_PROPERTIES else None


def project(obj: dict[str, Any], kind: str, select: list[str] | None, access: str) -> dict[str, Any]:
    """Render one directory object the way Graph returns it.

    ``access`` is "full", "basic" (User.ReadBasic.All) or "limited" (no user-read permission:
    only ``@odata.type`` and ``id``, selected properties null, collections ``[]``; §1.4, §6).
    """
    props = select if select else DEFAULT_PROPERTIES[kind]
    allowed = TYPE_PROPERTIES[kind]
    out: dict[str, Any] = {"@odata.type": odata_type(kind)}
    for prop in props:
        if prop not in allowed:
            continue
        visible = access == "full" or prop == "id" or (access == "basic" and prop in USER_BASIC_PROPERTIES)
        out[prop] = copy.deepcopy(obj.get(prop, _empty(prop))) if visible else _empty(prop)
    out.setdefault("id", obj["id"])
    return out
