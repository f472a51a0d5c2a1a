"""Delta queries of the Graph emulator: ``users/delta``, ``contacts/delta`` and ``groups/delta`` (reference §3).

What a client sees is what Graph documents: an initial round paged with ``@odata.nextLink``
(``$skiptoken``) that ends with ``@odata.deltaLink`` (``$deltatoken``); later rounds with only
what changed; ``$deltatoken=latest`` (a deltaLink and nothing else); ``$filter=id eq '…' or …``
with at most 50 ids; ``$select`` limiting the tracked properties; ``Prefer: return=minimal``;
``@removed`` with reason ``changed`` (soft delete, restorable) or ``deleted`` (gone for good);
400 ``syncStateNotFound`` for an expired token and 410 ``resyncRequired`` after a reset. Query
options Graph does not support on delta (``$top``, ``$expand``, ``$orderby``, …) are refused,
never ignored; with a token, the query lives in the token, so extra options are refused too.

Tokens are opaque and HMAC-signed and carry their whole state (query, directory versions, page
cursor): a users or contacts round keeps nothing on the server, and an idle deltaLink costs two binary
searches in the directory's change log whatever the tenant's size. Group rounds keep their
rendered pages in memory, because a large group's ``members@delta`` is split across pages and
the group reappears on each (delta-query-groups.md). Every token names the generation it was
issued in: ``expire`` and ``reset`` (the ``/_sandbox/delta/*`` control actions) start a new one;
tokens of an expired generation then answer 400, those of a reset one 410 with ``Location``.
This module must not know HTTP routing, roles or response headers; ``graph.py`` does.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from entrasync_pipeline.sandbox.directory import (
    TYPE_PROPERTIES,
    UPDATED,
    USER_DEFAULT_PROPERTIES,
    Directory,
    odata_type,
    project,
)
from entrasync_pipeline.sandbox.graph_errors import (
    bad_request,
    resync_required,
    sync_state_not_found,
    unsupported_query,
)
from entrasync_pipeline.sandbox.httpd import Request

# Users per users/delta page: Graph support asked whether a /users delta page can carry more than
# 200 objects (microsoftgraph/microsoft-graph-docs#5566), i.e. 200 is what it returns.
USERS_DELTA_PAGE = 200
DELTA_MEMBERS_PER_PAGE = 500
DELTA_GROUPS_PER_PAGE = 20
MAX_FILTER_IDS = 50  # user-delta.md, group-delta.md: "There is a limit of 50 filtered objects."
DELTA_OPTIONS = frozenset({"$select", "$filter", "$deltatoken", "$skiptoken"})
_STORED_GROUP_ROUNDS = 1000
# contacts/delta without $select (orgcontact-delta.md, example 1): neither addresses nor phones.
CONTACT_DELTA_DEFAULT_PROPERTIES = (
    "companyName",
    "department",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mailNickname",
    "surname",
)
# contacts/delta does not return a contact's addresses and phones, selected or not, so a change of
# only those is no change for it (Microsoft 365 Developer Platform idea 2890048, "Get OrgContacts
# delta with their Addresses and Phones", 2021: "Does not return the Contact's Address and Phone").
CONTACT_DELTA_UNTRACKED = frozenset({"addresses", "phones"})


@dataclass(frozen=True)
class ObjectDelta:
    """What differs between users/delta and contacts/delta: the rest is one implementation."""

    kind: str  # the directory kind
    entity_set: str  # the URL segment and the @odata.context entity set
    default: tuple[str, ...]  # tracked and returned without $select
    untracked: frozenset[str] = frozenset()  # selectable, never returned, changes not tracked


USERS = ObjectDelta("user", "users", USER_DEFAULT_PROPERTIES)
CONTACTS = ObjectDelta("orgContact", "contacts", CONTACT_DELTA_DEFAULT_PROPERTIES, CONTACT_DELTA_UNTRACKED)

Item = dict[str, Any]
GroupEntry = tuple[Item, list[Item]]


class DeltaTokens:
    """Signs and checks delta state tokens; a generation per expiry or reset."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)
        self.generation = secrets.token_hex(4)
        self._reset: set[str] = set()

    def expire(self) -> None:
        """Every token issued so far answers 400 syncStateNotFound."""
        self.generation = secrets.token_hex(4)

    def reset(self) -> None:
        """Every token issued so far answers 410 with Location (a synchronization reset)."""
        self._reset.add(self.generation)
        self.generation = secrets.token_hex(4)

    def encode(self, state: dict[str, Any]) -> str:
        raw = json.dumps({**state, "generation": self.generation}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def decode(self, token: str, kind: str, request: Request) -> dict[str, Any]:
        """The state a token carries; 400 for a foreign, tampered or expired token, 410 after a reset."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:12], raw[12:]
            if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()[:12]):
                raise ValueError
            state = json.loads(body)
        except ValueError:
            raise sync_state_not_found() from None
        if not isinstance(state, dict) or state.get("kind") != kind:
            raise sync_state_not_found()
        self.check(state.get("generation"), request)
        return state

    def check(self, generation: str | None, request: Request) -> None:
        if generation == self.generation:
            return
        if generation in self._reset:
            raise resync_required(f"{request.base_url}{request.path}?$deltatoken=")
        raise sync_state_not_found()


class DeltaQueries:
    """``users/delta``, ``contacts/delta`` and ``groups/delta`` over one directory; answers are response bodies."""

    def __init__(self) -> None:
        self.tokens = DeltaTokens()
        self._lock = threading.Lock()
        self._group_pages: OrderedDict[str, tuple[str, list[Item]]] = OrderedDict()

    # --- users and contacts ---------------------------------------------------------------------
    def users(self, request: Request, directory: Directory) -> Item:
        """One page of a users delta round (initial round, later round, or ``latest``)."""
        return self.objects(request, directory, USERS)

    def contacts(self, request: Request, directory: Directory) -> Item:
        """One page of a contacts (orgContact) delta round, in the same shape as users/delta."""
        return self.objects(request, directory, CONTACTS)

    def objects(self, request: Request, directory: Directory, spec: ObjectDelta) -> Item:
        """One page of a users or contacts delta round (initial round, later round, or ``latest``)."""
        options = _options(request)
        page_kind = f"{spec.entity_set}-page"
        with directory.lock:
            if "$skiptoken" in options:
                _token_only(options, "$skiptoken")
                state = self.tokens.decode(options["$skiptoken"], page_kind, request)
            elif options.get("$deltatoken", "latest") != "latest":
                _token_only(options, "$deltatoken")
                link = self.tokens.decode(options["$deltatoken"], spec.entity_set, request)
                state = {**link, "kind": page_kind, "phase": "changes", "from": link["version"]}
                state.update(upto=directory.version, offset=0)
            else:
                query = {"ids": _id_filter(options), "select": _select(options, spec.kind)}
                state = {**query, "kind": page_kind, "phase": "initial", "upto": directory.version, "after": ""}
                if "$deltatoken" in options:  # latest: sync from now, nothing to download
                    return self._objects_payload(request, spec, state, [], None)
            if state["phase"] == "initial":
                items, following = _initial_objects(directory, spec, state)
            else:
                items, following = _changed_objects(directory, spec, state, _prefers_minimal(request))
        return self._objects_payload(request, spec, state, items, following)

    def _objects_payload(
        self,
        request: Request,
        spec: ObjectDelta,
        state: dict[str, Any],
        items: list[Item],
        following: dict[str, Any] | None,
    ) -> Item:
        select = state["select"]
        payload: Item = {"@odata.context": _context(request, spec.entity_set, select)}
        if following is not None:
            payload["@odata.nextLink"] = f"{request.base_url}{request.path}?$skiptoken={self.tokens.encode(following)}"
        else:
            link = {"kind": spec.entity_set, "ids": state["ids"], "select": select, "version": state["upto"]}
            payload["@odata.deltaLink"] = f"{request.base_url}{request.path}?$deltatoken={self.tokens.encode(link)}"
        payload["value"] = items
        return payload

    # --- groups ------------------------------------------------------------------------------
    def groups(self, request: Request, directory: Directory) -> Item:
        """One page of a groups delta round; a filtered group reports its direct members' changes."""
        options = _options(request)
        if "$skiptoken" in options:
            _token_only(options, "$skiptoken")
            return self._stored_group_page(request, options["$skiptoken"])
        with directory.lock:
            token = options.get("$deltatoken", "latest")
            if token != "latest":
                _token_only(options, "$deltatoken")
                state = self.tokens.decode(token, "groups", request)
                entries = _group_changes(directory, state, _prefers_minimal(request))
            else:
                state = {"kind": "groups", "ids": _id_filter(options), "select": _select(options, "group") or []}
                entries = [] if "$deltatoken" in options else _group_initial(directory, state)
            state = {**state, "version": directory.version}
        return self._groups_payload(request, entries, state)

    def _groups_payload(self, request: Request, entries: list[GroupEntry], state: dict[str, Any]) -> Item:
        context = _context(request, "groups", [p for p in state["select"] if p != "members"])
        rendered = [{"@odata.context": context, "value": page} for page in split_delta_pages(entries)]
        rendered[-1]["@odata.deltaLink"] = f"{request.base_url}{request.path}?$deltatoken={self.tokens.encode(state)}"
        return self._chain_group_pages(request, rendered)

    def _chain_group_pages(self, request: Request, pages: list[Item]) -> Item:
        first, rest = pages[0], pages[1:]
        if rest:
            key = secrets.token_urlsafe(24)
            with self._lock:
                self._group_pages[key] = (self.tokens.generation, rest)
                while len(self._group_pages) > _STORED_GROUP_ROUNDS:
                    self._group_pages.popitem(last=False)
            first = {**first, "@odata.nextLink": f"{request.base_url}{request.path}?$skiptoken={key}"}
        return _ordered(first)

    def _stored_group_page(self, request: Request, key: str) -> Item:
        with self._lock:
            generation, pages = self._group_pages.pop(key, (None, []))
        if not pages:
            raise sync_state_not_found()
        self.tokens.check(generation, request)
        return self._chain_group_pages(request, pages)


# --- query options ---------------------------------------------------------------------------------
def _options(request: Request) -> dict[str, str]:
    """The request's OData options (names are case-insensitive); unsupported ones are refused."""
    options = {k.lower(): v for k, v in request.query.items() if k.startswith("$")}
    for option in options:
        if option not in DELTA_OPTIONS:
            raise unsupported_query(f"{option} is not supported on delta queries.")
    return options


def _token_only(options: dict[str, str], token: str) -> None:
    """A nextLink or deltaLink carries the query in its token; Graph wants the link used as is."""
    extra = sorted(set(options) - {token})
    if extra:
        raise unsupported_query(
            f"{extra[0]} cannot be combined with {token}: query options belong in the initial delta request."
        )


def _id_filter(options: dict[str, str]) -> list[str] | None:
    raw = options.get("$filter")
    if raw is None:
        return None
    ids = re.findall(r"id\s+eq\s+'([^']+)'", raw)
    rest = re.sub(r"id\s+eq\s+'[^']+'|\s+or\s+", "", raw).strip()
    if not ids or rest:
        raise unsupported_query("Only 'id eq' filters joined with 'or' are supported on delta.")
    if len(ids) > MAX_FILTER_IDS:
        raise unsupported_query(f"The number of filtered objects exceeds the maximum of {MAX_FILTER_IDS}.")
    return list(dict.fromkeys(ids))


def _select(options: dict[str, str], kind: str) -> list[str] | None:
    raw = options.get("$select")
    if raw is None:
        return None
    props = [p.strip() for p in raw.split(",") if p.strip()]
    known = set(TYPE_PROPERTIES[kind]) | ({"members"} if kind == "group" else set())
    for prop in props:
        if prop not in known:
            raise bad_request(f"Could not find a property named '{prop}' on type 'microsoft.graph.{kind}'.")
    return props or None


def _prefers_minimal(request: Request) -> bool:
    return "return=minimal" in {p.strip().lower() for p in request.header("Prefer").split(",")}


def _context(request: Request, entity_set: str, select: list[str] | None) -> str:
    return f"{request.base_url}/v1.0/$metadata#{entity_set}" + (f"({','.join(select)})" if select else "")


def _ordered(page: Item) -> Item:
    ordered = {"@odata.context": page["@odata.context"]}
    for key in ("@odata.nextLink", "@odata.deltaLink"):
        if key in page:
            ordered[key] = page[key]
    ordered["value"] = page["value"]
    return ordered


# --- users and contacts: rounds ----------------------------------------------------------------------
def _initial_objects(
    directory: Directory, spec: ObjectDelta, state: dict[str, Any]
) -> tuple[list[Item], dict[str, Any] | None]:
    """Every object of the kind (and every soft-deleted one, as ``@removed``), in id order, a page
    at a time.

    The cursor is the last id returned, so objects created or deleted during the round shift
    nothing; the deltaLink's version is the round's start, so they show up in the next round.
    """
    if state["ids"] is not None:
        ids = [i for i in state["ids"] if _is_kind(directory, i, spec.kind)]
        return [_object_item(directory, spec, i, state["select"], None) for i in ids], None
    ordered = directory.sorted_ids(spec.kind)
    start = bisect.bisect_right(ordered, state["after"])
    page = ordered[start : start + USERS_DELTA_PAGE]
    items = [_object_item(directory, spec, i, state["select"], None) for i in page]
    more = start + USERS_DELTA_PAGE < len(ordered)
    return items, ({**state, "after": page[-1]} if more else None)


def _changed_objects(
    directory: Directory, spec: ObjectDelta, state: dict[str, Any], minimal: bool
) -> tuple[list[Item], dict[str, Any] | None]:
    """The objects whose tracked properties changed in the round's window, a page at a time."""
    net = _net_changes(directory, spec, state)
    ordered = sorted(net)
    offset = state["offset"]
    page = ordered[offset : offset + USERS_DELTA_PAGE]
    items = [_object_item(directory, spec, i, state["select"], net[i] if minimal else None) for i in page]
    more = offset + USERS_DELTA_PAGE < len(ordered)
    return items, ({**state, "offset": offset + USERS_DELTA_PAGE} if more else None)


def _net_changes(directory: Directory, spec: ObjectDelta, state: dict[str, Any]) -> dict[str, frozenset[str] | None]:
    """Per object: the tracked properties that changed, or None for a whole object (created,
    restored, deleted). ``$select`` limits what is tracked: a change elsewhere is no change;
    without it the default set is tracked (users: every property, as before)."""
    if state["select"]:
        tracked: frozenset[str] | None = frozenset(state["select"]) - spec.untracked
    else:
        tracked = frozenset(spec.default) if spec.untracked else None
    wanted = set(state["ids"]) if state["ids"] is not None else None
    net: dict[str, frozenset[str] | None] = {}
    for change in directory.object_changes_between(state["from"], state["upto"], spec.kind):
        object_id = change.object_id
        if wanted is not None and object_id not in wanted:
            continue
        if change.change != UPDATED:
            net[object_id] = None
            continue
        props = change.properties if tracked is None else change.properties & tracked
        if props and (object_id not in net or net[object_id] is not None):
            net[object_id] = (net.get(object_id) or frozenset()) | props
    return net


def _is_kind(directory: Directory, object_id: str, kind: str) -> bool:
    deleted = directory.deleted.get(object_id)
    return directory.kinds.get(object_id) == kind or (deleted is not None and deleted.kind == kind)


def _object_item(
    directory: Directory, spec: ObjectDelta, object_id: str, select: list[str] | None, changed: frozenset[str] | None
) -> Item:
    """An object as users/delta or contacts/delta returns it: its selected (or default)
    properties, only the ``changed`` ones under ``Prefer: return=minimal``, or ``@removed`` when
    it is gone (reason ``changed`` while restorable from deleted items, else ``deleted``)."""
    obj = directory.objects.get(object_id)
    if obj is None or directory.kinds.get(object_id) != spec.kind:
        reason = "changed" if object_id in directory.deleted else "deleted"
        return {"id": object_id, "@removed": {"reason": reason}}
    props = [p for p in (select or spec.default) if p not in spec.untracked]
    if changed is not None:
        props = [p for p in props if p in changed]
    item = project(obj, spec.kind, ["id", *props], "full")
    item.pop("@odata.type", None)
    return item


# --- groups: rounds --------------------------------------------------------------------------------
def _delta_groups(directory: Directory, state: dict[str, Any]) -> list[str]:
    if state["ids"] is None:
        return [i for i, k in directory.kinds.items() if k == "group"]
    return [g for g in state["ids"] if directory.is_group(g)]


def _group_item(directory: Directory, group_id: str, select: list[str]) -> Item:
    """A group's selected properties (all of them without ``$select``) and always its id."""
    props = [p for p in select if p != "members"] if select else list(TYPE_PROPERTIES["group"])
    obj = directory.objects[group_id]
    item = {p: copy.deepcopy(obj.get(p)) for p in props if p in TYPE_PROPERTIES["group"]}
    item["id"] = group_id
    return item


def _group_initial(directory: Directory, state: dict[str, Any]) -> list[GroupEntry]:
    tracks_members = not state["select"] or "members" in state["select"]
    entries = []
    for group_id in _delta_groups(directory, state):
        members = (
            [
                {"@odata.type": odata_type(directory.kinds[m]), "id": m}
                for m in directory.member_ids(group_id, transitive=False)
            ]
            if tracks_members
            else []
        )
        entries.append((_group_item(directory, group_id, state["select"]), members))
    return entries


def _group_changes(directory: Directory, state: dict[str, Any], minimal: bool) -> list[GroupEntry]:
    """Net member changes per group since the token's version (direct members, groups included).

    Under ``Prefer: return=minimal`` a group carries only its id and ``members@delta``: the
    sandbox has no write API for group properties, so none of them can have changed.
    """
    if state["select"] and "members" not in state["select"]:
        return []
    entries = []
    for group_id, changes in directory.changes_since(state["version"], _delta_groups(directory, state)).items():
        members = []
        for change in changes.values():
            entry: Item = {"@odata.type": odata_type(change.kind), "id": change.member_id}
            if change.removed:
                entry["@removed"] = {"reason": "deleted"}
            members.append(entry)
        item = {"id": group_id} if minimal else _group_item(directory, group_id, state["select"])
        entries.append((item, members))
    return entries


def split_delta_pages(groups: list[GroupEntry]) -> list[list[Item]]:
    """Split groups and their members@delta into pages; a large group reappears on later pages."""
    pages: list[list[Item]] = [[]]
    budget = DELTA_MEMBERS_PER_PAGE
    for item, members in groups:
        chunks = [members[i : i + DELTA_MEMBERS_PER_PAGE] for i in range(0, len(members), DELTA_MEMBERS_PER_PAGE)]
        for chunk in chunks or [[]]:
            if len(pages[-1]) >= DELTA_GROUPS_PER_PAGE or (chunk and len(chunk) > budget):
                pages.append([])
                budget = DELTA_MEMBERS_PER_PAGE
            entry = dict(item)
            if chunk:
                entry["members@delta"] = chunk
            pages[-1].append(entry)
            budget -= len(chunk)
    return pages
