"""Organizations: which Zammad organization a member belongs to, as Zammad stores it (pure).

``profiles.<p>.organization`` names the Graph attributes (or a constant) that give a member's
company; ``normalize`` puts the name in the universal user's ``organization`` column like any
mapped value. This module turns that name into what the plan writes:

- Names are compared the way Zammad compares them: ``Organization`` validates
  ``uniqueness: { case_sensitive: false }`` on ``name`` (app/models/organization.rb), a
  ``varchar(100)``, so "Contoso" and "CONTOSO " are one organization and the existing spelling
  wins: entrasync never renames (or deletes) an organization.
- The user gets the organization's **id** (``organization_id``), never its name: Zammad resolves
  a name parameter with ``find_by(name:)`` (can_lookup.rb), which is case-sensitive on
  PostgreSQL, so another spelling would be refused with 422.
- A name Zammad lacks is planned as ``organization`` (the name) and created by ``apply`` before
  the user writes, unless ``create_missing`` is false: then the user gets none and the plan says why.
- An empty source clears only an organization entrasync set itself (the audit's last write is the
  user's current ``organization_id``); one a person set is kept. The plan cannot know that before
  reading the audit, so a first pass proposes the clear (the user becomes a hand-edit candidate,
  see ``plan.hand_edit_candidates``) and the audited pass keeps it or drops it.

No I/O, no clock, no env.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAME_MAX = 100  # organizations.name is varchar(100) (db/migrate/..._create_base.rb); Zammad truncates
COLUMN = "organization"  # the universal user's column, and the plan's change for a name to create
ID_FIELD = "organization_id"  # the Zammad user's column the plan writes
MISSING_NOTE = "organization {name!r} does not exist in Zammad (organization.create_missing: false): not set"


@dataclass(frozen=True)
class OrganizationRules:
    """What the plan knows about organizations: Zammad's ids by ``name_key``, whether a missing one
    is created, and whether the audit's last writes (``PlanOptions.last_written``) were read."""

    ids: Mapping[str, int] = field(default_factory=dict)
    create_missing: bool = True
    audited: bool = False


def name_key(name: Any) -> str:
    """The form Zammad's case-insensitive uniqueness compares: stripped, truncated, lower-cased."""
    if name is None or (isinstance(name, float) and name != name):
        return ""
    return str(name).strip()[:NAME_MAX].lower()


def stored_name(name: Any) -> str:
    """The name as Zammad stores a new organization: stripped and truncated to the column."""
    if name is None or (isinstance(name, float) and name != name):
        return ""
    return str(name).strip()[:NAME_MAX]


def index(organizations: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Zammad's organizations (``GET /organizations`` records) → id by ``name_key``; the lowest id
    wins if an old Zammad (before the uniqueness rule) holds two spellings of one name."""
    ids: dict[str, int] = {}
    for organization in sorted(organizations, key=lambda o: int(o["id"])):
        ids.setdefault(name_key(organization.get("name")), int(organization["id"]))
    ids.pop("", None)
    return ids


def _current(zammad: Mapping[str, Any] | None) -> int | None:
    value = (zammad or {}).get(ID_FIELD)
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value)


def changes(
    name: Any,
    zammad: Mapping[str, Any] | None,
    rules: OrganizationRules,
    written: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[Any]], str]:
    """The organization changes for one member (``zammad``: their Zammad user, None for a new one)
    and a note for the reason ("" when there is nothing to say).

    ``written``: what entrasync last wrote to this user (the audit), read only in the audited pass.
    """
    current = _current(zammad)
    key = name_key(name)
    if not key:
        if current is None or zammad is None:
            return {}, ""
        if rules.audited and (written or {}).get(ID_FIELD) != current:
            return {}, ""  # set by a person (or never by entrasync): kept
        return {ID_FIELD: [current, None]}, ""
    wanted = rules.ids.get(key)
    if wanted is not None:
        return ({ID_FIELD: [current, wanted]} if wanted != current else {}), ""
    if not rules.create_missing:
        return {}, "; " + MISSING_NOTE.format(name=stored_name(name))
    return {COLUMN: [current, stored_name(name)]}, ""


def unchanged(names: np.ndarray, current: np.ndarray, rules: OrganizationRules) -> np.ndarray:
    """Column-wise: True where the member's organization is already what ``changes`` wants and
    nothing needs saying (the plan's no-change fast path); every other row is decided per user."""
    out = np.zeros(len(names), dtype=bool)
    for i, (name, have) in enumerate(zip(names.tolist(), current.tolist())):
        key = name_key(name)
        have_id = None if have is None or (isinstance(have, float) and have != have) else int(have)
        if not key:
            out[i] = have_id is None
        else:
            out[i] = have_id is not None and rules.ids.get(key) == have_id
    return out


def names_to_create(payloads: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The organizations the writes need created: ``name_key`` → name, the first spelling wins."""
    wanted: dict[str, str] = {}
    for payload in payloads:
        name = payload.get(COLUMN)
        if name:
            wanted.setdefault(name_key(name), str(name))
    return wanted


def resolved(row: Mapping[str, Any], ids: Mapping[str, int]) -> dict[str, Any]:
    """A plan row whose ``organization`` (a name) becomes ``organization_id`` once the organization
    exists, in the payload and the changes (the audit then holds the id, as the next plan compares it)."""
    name = (row.get("payload") or {}).get(COLUMN)
    if not name or name_key(name) not in ids:
        return dict(row)
    oid = ids[name_key(name)]
    payload = {k: v for k, v in row["payload"].items() if k != COLUMN}
    payload[ID_FIELD] = oid
    changes = {k: v for k, v in (row.get("changes") or {}).items() if k != COLUMN}
    changes[ID_FIELD] = [((row.get("changes") or {}).get(COLUMN) or [None])[0], oid]
    return {**row, "payload": payload, "changes": changes}


def without(row: Mapping[str, Any], why: str) -> dict[str, Any]:
    """A plan row without its organization (it could not be created), the reason saying why."""
    payload = {k: v for k, v in (row.get("payload") or {}).items() if k != COLUMN}
    changes = {k: v for k, v in (row.get("changes") or {}).items() if k != COLUMN}
    reason = "; ".join(r for r in (row.get("reason"), why) if r)
    return {**row, "payload": payload, "changes": changes, "reason": reason}


def missing_count(reasons: Iterable[Any]) -> int:
    """Decisions whose organization does not exist and is not created (create_missing false)."""
    marker = MISSING_NOTE.split("{name!r}")[0]
    tail = MISSING_NOTE.split("{name!r}")[1]
    return sum(1 for r in reasons if isinstance(r, str) and marker in r and tail in r)
