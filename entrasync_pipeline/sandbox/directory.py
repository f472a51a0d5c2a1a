"""The emulated tenant's directory: users, groups, other directory objects, memberships, deleted
items and the two change logs that delta queries read.

Property sets follow reference/microsoft-graph-and-msal.md §2: a user's default set (returned
without ``$select``), properties returned only when selected, unset scalars ``null`` and unset
collections ``[]``; an orgContact's are those of resources/orgcontact.md, all returned by default. Lookups are by id (dicts), membership checks are O(1) both ways (members of a
group, groups of a member) and transitive member lists are cached per directory version, so a
100,000-user tenant stays fast.

Every change bumps ``version``. Membership changes go to ``changes`` (group delta's
``members@delta``), object changes to ``object_changes`` (user delta); both logs are appended in
version order, so "what changed after version v" is a binary search, never a scan of the tenant.

Deletion follows Entra (reference §3.1, delta-query-users.md): ``soft_delete`` moves an object to
``deleted`` (gone from every read and from its groups, its direct memberships remembered),
``restore`` brings it back with those memberships, ``purge`` deletes it for good. An orgContact
has no deleted items: ``delete_permanently`` removes it for good at once.
"""

from __future__ import annotations

import bisect
import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    "employeeHireDate",
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
# orgContact (resources/orgcontact.md, v1.0): every property is returned without $select (the
# orgcontact-list.md example carries addresses and phones). No mobilePhone, businessPhones,
# accountEnabled or userPrincipalName: a contact's numbers are ``phones`` [{"number", "type"}].
CONTACT_PROPERTIES = (
    "addresses",
    "companyName",
    "department",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mailNickname",
    "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors",
    "onPremisesSyncEnabled",
    "phones",
    "proxyAddresses",
    "serviceProvisioningErrors",
    "surname",
)
# phone.md's phoneType; physicalOfficeAddress.md's fields.
PHONE_TYPES = frozenset(
    {"home", "business", "mobile", "other", "assistant", "homeFax", "businessFax", "otherFax", "pager", "radio"}
)
ADDRESS_FIELDS = frozenset({"city", "countryOrRegion", "officeLocation", "postalCode", "state", "street"})
COLLECTION_PROPERTIES = frozenset(
    {
        "addresses",
        "businessPhones",
        "groupTypes",
        "onPremisesProvisioningErrors",
        "otherMails",
        "phones",
        "proxyAddresses",
        "serviceProvisioningErrors",
    }
)

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
    "orgContact": CONTACT_PROPERTIES,
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


# ObjectChange.change values.
CREATED, UPDATED, SOFT_DELETED, RESTORED, PURGED = "created", "updated", "deleted", "restored", "purged"


@dataclass(frozen=True)
class ObjectChange:
    """One change of one object; ``properties`` names what an update changed."""

    version: int
    object_id: str
    kind: str
    change: str
    properties: frozenset[str] = frozenset()


@dataclass
class DeletedItem:
    """An object in the directory's deleted items and the groups it was a direct member of."""

    kind: str
    obj: dict[str, Any]
    groups: list[str]


@dataclass
class Directory:
    """In-memory directory with a monotonically increasing version for delta queries."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    members: dict[str, dict[str, None]] = field(default_factory=dict)
    member_of: dict[str, dict[str, None]] = field(default_factory=dict)
    deleted: dict[str, DeletedItem] = field(default_factory=dict)
    version: int = 0
    changes: list[MembershipChange] = field(default_factory=list)
    object_changes: list[ObjectChange] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _transitive: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    # Per kind (users, contacts): a counter bumped when one is added or removed, and the id-sorted
    # list of that kind built at that count (the initial round of users/delta and contacts/delta).
    _set_version: dict[str, int] = field(default_factory=dict)
    _sorted: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    # --- building ---------------------------------------------------------------------------
    def add_object(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = {p: _empty(p) for p in TYPE_PROPERTIES[kind]}
            obj.update({k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("@")})
            self._insert(kind, obj)
            self._touch()
            self._log_object(obj["id"], kind, CREATED)
            return obj

    def add_member(self, group_id: str, member_id: str, log: bool = True) -> bool:
        """Add a direct member; False if it was a member already."""
        with self.lock:
            group = self.members[group_id]
            if member_id in group:
                return False
            group[member_id] = None
            self.member_of.setdefault(member_id, {})[group_id] = None
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
            self.member_of.get(member_id, {}).pop(group_id, None)
            self._touch()
            self._log(group_id, member_id, removed=True)
            return True

    def update_object(self, object_id: str, changes: dict[str, Any]) -> frozenset[str]:
        """Apply property changes; returns the properties whose value changed (none: no new version)."""
        with self.lock:
            obj = self.objects[object_id]
            changed = frozenset(k for k, v in changes.items() if obj.get(k) != v)
            if not changed:
                return changed
            obj.update(copy.deepcopy({k: changes[k] for k in changed}))
            self._touch()
            self._log_object(object_id, self.kinds[object_id], UPDATED, changed)
            return changed

    def soft_delete(self, object_id: str) -> None:
        """Move an object to deleted items: out of every group (logged for group delta), restorable."""
        with self.lock:
            kind = self.kinds[object_id]
            self._touch()
            groups = list(self.member_of.pop(object_id, {}))
            for group_id in groups:
                del self.members[group_id][object_id]
                self._log(group_id, object_id, removed=True)
            obj = self._remove(object_id)
            obj["deletedDateTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.deleted[object_id] = DeletedItem(kind, obj, groups)
            self._log_object(object_id, kind, SOFT_DELETED)

    def restore(self, object_id: str) -> dict[str, Any]:
        """Bring a deleted item back with the direct memberships it had (in groups that still exist)."""
        with self.lock:
            item = self.deleted.pop(object_id)
            item.obj["deletedDateTime"] = None
            self._insert(item.kind, item.obj)
            self._touch()
            for group_id in item.groups:
                if group_id in self.members and object_id not in self.members[group_id]:
                    self.members[group_id][object_id] = None
                    self.member_of.setdefault(object_id, {})[group_id] = None
                    self._log(group_id, object_id, removed=False)
            self._log_object(object_id, item.kind, RESTORED)
            return item.obj

    def purge(self, object_id: str) -> None:
        """Delete a deleted item permanently."""
        with self.lock:
            item = self.deleted.pop(object_id)
            self._bump_set(item.kind)
            self._touch()
            self._log_object(object_id, item.kind, PURGED)

    def delete_permanently(self, object_id: str) -> None:
        """Delete a live object for good, without deleted items (an orgContact: contacts are not
        restorable, directory-deleteditems-list.md). Its memberships end as in ``soft_delete``."""
        with self.lock:
            kind = self.kinds[object_id]
            self._touch()
            for group_id in self.member_of.pop(object_id, {}):
                del self.members[group_id][object_id]
                self._log(group_id, object_id, removed=True)
            self._remove(object_id)
            self._log_object(object_id, kind, PURGED)

    def forget_history(self) -> None:
        """Drop both change logs (after seeding: the seed is the starting state, not a change)."""
        with self.lock:
            self.changes.clear()
            self.object_changes.clear()

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

    def sorted_user_ids(self) -> list[str]:
        """Ids of the live and the soft-deleted users in id order (user delta's initial round pages
        through this stable order); do not mutate."""
        return self.sorted_ids("user")

    def sorted_ids(self, kind: str) -> list[str]:
        """Ids of the live and the soft-deleted objects of ``kind`` in id order; do not mutate.

        Sorted again only after one was added, deleted, restored or purged, not per request.
        """
        with self.lock:
            built_at, ids = self._sorted.get(kind, (-1, []))
            current = self._set_version.get(kind, 0)
            if built_at != current:
                live = (i for i, k in self.kinds.items() if k == kind)
                deleted = (i for i, item in self.deleted.items() if item.kind == kind)
                ids = sorted([*live, *deleted])
                self._sorted[kind] = (current, ids)
            return ids

    def groups_of(self, object_id: str, transitive: bool) -> list[str]:
        """Groups the object is a direct member of, or (transitive) a member through nesting."""
        with self.lock:
            direct = list(self.member_of.get(object_id, {}))
            if not transitive:
                return direct
            seen = dict.fromkeys(direct)
            queue = list(direct)
            while queue:
                for parent in self.member_of.get(queue.pop(0), {}):
                    if parent not in seen:
                        seen[parent] = None
                        queue.append(parent)
            return list(seen)

    def changes_since(self, version: int, group_ids: Iterable[str]) -> dict[str, dict[str, MembershipChange]]:
        """Net membership changes per group after ``version`` (the last change per member wins)."""
        wanted = set(group_ids)
        net: dict[str, dict[str, MembershipChange]] = {}
        with self.lock:
            start = bisect.bisect_right(self.changes, version, key=lambda c: c.version)
            for change in self.changes[start:]:
                if change.group_id in wanted:
                    net.setdefault(change.group_id, {})[change.member_id] = change
        return net

    def object_changes_between(self, after: int, upto: int, kind: str) -> list[ObjectChange]:
        """Changes of objects of ``kind`` with ``after < version <= upto``, oldest first.

        Two binary searches and a slice: an idle delta round costs nothing per object.
        """
        with self.lock:
            start = bisect.bisect_right(self.object_changes, after, key=lambda c: c.version)
            end = bisect.bisect_right(self.object_changes, upto, key=lambda c: c.version)
            return [c for c in self.object_changes[start:end] if c.kind == kind]

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

    def _insert(self, kind: str, obj: dict[str, Any]) -> None:
        object_id = obj["id"]
        self.objects[object_id] = obj
        self.kinds[object_id] = kind
        if kind == "group":
            self.members.setdefault(object_id, {})
        self._bump_set(kind)

    def _remove(self, object_id: str) -> dict[str, Any]:
        self._bump_set(self.kinds.pop(object_id))
        return self.objects.pop(object_id)

    def _bump_set(self, kind: str) -> None:
        self._set_version[kind] = self._set_version.get(kind, 0) + 1

    def _touch(self) -> None:
        self.version += 1

    def _log(self, group_id: str, member_id: str, removed: bool) -> None:
        kind = self.kinds.get(member_id, "user")
        self.changes.append(MembershipChange(self.version, group_id, member_id, kind, removed))

    def _log_object(self, object_id: str, kind: str, change: str, properties: frozenset[str] = frozenset()) -> None:
        self.object_changes.append(ObjectChange(self.version, object_id, kind, change, properties))


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
