"""Universal users × Zammad users → the sync plan: one decision per user (pure; DESIGN.md §2).

Matching order: the Zammad user whose ``entra_key`` is the Entra object id; else (adoption on)
the Zammad user with that email (case-insensitive) and an empty ``entra_key`` (or, when nobody has
the email, one without an email whose login is the address); a managed user linked to an object
Graph confirmed deleted is relinked (a re-hire); any other email that belongs to a user with another
``entra_key`` is a conflict. Decisions: create, update only the differing fields, reactivate,
relink, deactivate (managed users of this profile only, after the grace period, unless
``on_leave: ignore``), grace, noop, skip, conflict, opted_out. A member out of scope (a scope rule)
is a leaver. Never delete. Protected and opted-out accounts, unmanaged users and the system user are
left alone.
Reads everything, then decides: no I/O here (STYLE.md §1.3, ssosync's getUserOperations).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from entrasync_pipeline import fields as typed
from entrasync_pipeline import group_access as access
from entrasync_pipeline import organizations
from entrasync_pipeline.contacts import OBJECT_TYPE as CONTACT
from entrasync_pipeline.normalize import is_missing, plain_text, zammad_email
from entrasync_pipeline.organizations import OrganizationRules

SYSTEM_USER_ID = 1
PLAN_COLUMNS = ("action", "entra_key", "zammad_id", "email", "upn", "changes", "payload", "reason")
IDENTITY_FIELDS = ("entra_key", "entra_object_type", "entrasync_profile")


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REACTIVATE = "reactivate"
    RELINK = "relink"  # a Zammad user whose Entra object was deleted, linked to the new object with its email
    DEACTIVATE = "deactivate"
    NOOP = "noop"
    SKIP = "skip"
    CONFLICT = "conflict"
    GRACE = "grace"  # left the scope, kept active until the grace period is over
    OPTED_OUT = "opted_out"  # the Zammad user has entrasync_ignore set: never written


_NOTHING: dict[str, Any] = {}  # shared by every noop row; never mutated
WRITE_ACTIONS = (Action.CREATE, Action.UPDATE, Action.REACTIVATE, Action.RELINK, Action.DEACTIVATE)
# What a run reports per action (CLI, JSON, metadata, notifications): one name each, defined here.
COUNT_NAMES: dict[Action, str] = {
    Action.CREATE: "created",
    Action.UPDATE: "updated",
    Action.REACTIVATE: "reactivated",
    Action.RELINK: "relinked",
    Action.DEACTIVATE: "deactivated",
    Action.NOOP: "unchanged",
    Action.SKIP: "skipped",
    Action.CONFLICT: "conflicts",
    Action.GRACE: "in_grace",
    Action.OPTED_OUT: "opted_out",
}
# Decisions that write nothing but are reported and audited (outcome "skipped"), each with its reason.
HELD_ACTIONS = (Action.SKIP, Action.CONFLICT, Action.GRACE, Action.OPTED_OUT)
# "drift": decisions that found hand edits in Zammad (``drift_count``), whatever their action;
# "organizations_created": Zammad organizations the apply created (or would create) for the members.
COUNT_COLUMNS = (*COUNT_NAMES.values(), "drift", "organizations_created", "failed")
# People read the destructive decisions first (previews, tables, JSON "changes").
REVIEW_ORDER = (
    Action.DEACTIVATE,
    Action.CREATE,
    Action.UPDATE,
    Action.REACTIVATE,
    Action.RELINK,
    Action.GRACE,
    Action.OPTED_OUT,
    Action.CONFLICT,
    Action.SKIP,
)
LEFT_GROUPS = "no longer a member of the configured groups"
CONTACTS_OFF = "a contact, and this profile no longer syncs contacts (contacts: none)"
USER_HOLDS_EMAIL = "an Entra user has this email: a contact never takes a user's address"
DRIFT_NOTE = "changed by hand in Zammad since entrasync wrote it"
OPT_OUT_ATTRIBUTE = "entrasync_ignore"
OPTED_OUT_REASON = f"opted out in Zammad ({OPT_OUT_ATTRIBUTE} is set): never written"


@dataclass(frozen=True)
class PlanOptions:
    profile: str
    fields: tuple[str, ...]
    adopt_by_email: bool = True
    protected_ids: frozenset[int] = frozenset()
    protected_logins: frozenset[str] = frozenset()
    protected_emails: frozenset[str] = frozenset()
    protect_admins: bool = True
    admin_role_ids: frozenset[int] = frozenset({1})
    role_ids: Mapping[str, int] | None = None  # None: roles are not managed
    group_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    on_leave: str = "deactivate"  # or "ignore": a user who left the scope is left as is
    # The grace period, in the shell's datetime values (the core reads no clock and imports no datetime):
    grace: Any = None  # a timedelta: a leaver is deactivated only after missing this long; None/0: at once
    now: Any = None  # the aware datetime the grace period is measured at
    missing_since: Mapping[str, Any] = field(default_factory=dict)  # entra_key → aware datetime first missing
    relink_deleted: bool = True  # relink a user whose Entra object is gone to the new object with its email
    deleted_keys: frozenset[str] = frozenset()  # entra_keys Graph confirmed deleted (404), from the shell
    # Hand edits: what entrasync last wrote to each Zammad user (zammad id → field → value, and
    # "active"), from the audit log; who wins per field; a manual deactivation kept or undone.
    last_written: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    drift_default: str = "entra"  # or "zammad"
    drift_fields: Mapping[str, str] = field(default_factory=dict)
    manual_deactivation: str = "keep"  # or "reactivate"
    field_types: Mapping[str, str] = field(default_factory=dict)  # fields not of type text (fields.py)
    organizations: OrganizationRules | None = None  # None: organizations are not managed
    # Agent group access (group_access.py): Entra group id → Zammad group name → access verbs; the
    # managed Zammad groups' ids by name; the roles that grant ticket.agent. Empty: not managed.
    group_access: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    zammad_group_ids: Mapping[str, int] = field(default_factory=dict)
    agent_role_ids: frozenset[int] = frozenset()
    # Contacts (contacts.py): synced or not, and the ids of Zammad's Customer role: a contact only
    # ever takes over a Zammad user who is a customer, never a staff account (agent, admin).
    contacts: bool = False
    customer_role_ids: frozenset[int] = frozenset()


ROLE_MERGE_NOTE = "roles merged from groups with different role mappings"


@dataclass
class _Index:
    by_key: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_email: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_login: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # users without an email only


def _text(value: Any) -> str:
    return "" if is_missing(value) else plain_text(value)


def _index(zammad: list[dict[str, Any]]) -> _Index:
    index = _Index()
    for user in zammad:
        if _text(user.get("entra_key")):
            index.by_key.setdefault(_text(user["entra_key"]), []).append(user)
        if _text(user.get("email")).strip():
            index.by_email.setdefault(zammad_email(user["email"]), []).append(user)
        elif _text(user.get("login")):
            index.by_login.setdefault(zammad_email(user["login"]), []).append(user)
    return index


def _row(
    action: Action,
    user: Mapping[str, Any] | None = None,
    zammad: Mapping[str, Any] | None = None,
    reason: str | None = None,
    changes: dict[str, list[Any]] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "action": action.value,
        "entra_key": (user or {}).get("entra_key") or _text((zammad or {}).get("entra_key")) or None,
        "zammad_id": int(zammad["id"]) if zammad is not None else None,
        "email": (user or {}).get("email") or _text((zammad or {}).get("email")) or None,
        "upn": (user or {}).get("upn"),
        "changes": changes or {},
        "payload": payload or {},
        "reason": reason,
    }


def _protection(zammad: Mapping[str, Any], options: PlanOptions) -> str | None:
    if int(zammad["id"]) in options.protected_ids:
        return f"protected account (id {zammad['id']})"
    if _text(zammad.get("login")).lower() in options.protected_logins:
        return f"protected account (login {zammad.get('login')})"
    if zammad_email(zammad.get("email")) in options.protected_emails:
        return "protected account (email)"
    roles = zammad.get("role_ids")
    if options.protect_admins and not is_missing(roles) and set(roles or ()) & options.admin_role_ids:
        return "protected account (holds the Admin role)"
    return None


def _owner(zammad: Mapping[str, Any]) -> str:
    return _text(zammad.get("entrasync_profile"))


def _opted_out(zammad: Mapping[str, Any]) -> bool:
    """The Zammad user carries ``entrasync_ignore`` = true: an admin took it out of the sync."""
    value = zammad.get(OPT_OUT_ATTRIBUTE)
    return not is_missing(value) and bool(value)


def _managed_active(zammad: Mapping[str, Any], options: PlanOptions) -> bool:
    """An active Zammad user linked to Entra and managed by this profile: one we may deactivate."""
    return bool(_text(zammad.get("entra_key"))) and _owner(zammad) == options.profile and bool(zammad.get("active"))


def _leaving(user: Mapping[str, Any] | None, zammad: dict[str, Any], why: str, options: PlanOptions) -> dict[str, Any]:
    """A managed active user who left the scope (``why``): protection, opt-out, ``on_leave`` and the
    grace period decide whether it is deactivated now (never deleted)."""
    protected = _protection(zammad, options)
    if protected:
        return _row(Action.SKIP, user, zammad, f"{protected}; {why}")
    if _opted_out(zammad):
        return _row(Action.OPTED_OUT, user, zammad, f"{OPTED_OUT_REASON}; {why}")
    if options.on_leave == "ignore":
        return _row(Action.SKIP, user, zammad, f"{why}; left as it is (on_leave: ignore)")
    if options.grace and options.now is not None:
        since = options.missing_since.get(_text(zammad.get("entra_key")), options.now)
        until = since + options.grace
        if options.now < until:
            return _row(
                Action.GRACE,
                user,
                zammad,
                f"{why}; in the grace period since {_when(since)}, deactivated from {_when(until)}",
            )
        why = f"{why}; missing since {_when(since)}, grace period over"
    return _row(Action.DEACTIVATE, user, zammad, why, {"active": [True, False]}, {"active": False})


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def _out_of_scope(user: Mapping[str, Any], keyed: list[dict[str, Any]], options: PlanOptions) -> dict[str, Any]:
    """A member a scope rule leaves out: treated like a leaver; never created, never adopted."""
    reason = str(user["scope_reason"])
    zammad = keyed[0] if len(keyed) == 1 else None
    if zammad is not None and _managed_active(zammad, options):
        return _leaving(user, zammad, reason, options)
    return _row(Action.SKIP, user, zammad, reason)


def _match(user: Mapping[str, Any], index: _Index, options: PlanOptions) -> tuple[dict[str, Any] | None, str | None]:
    """Return (zammad user or None, conflict reason or None)."""
    keyed = index.by_key.get(user["entra_key"], [])
    if len(keyed) > 1:
        ids = ", ".join(f"#{z['id']}" for z in keyed)
        return None, f"several Zammad users carry this entra_key ({ids})"
    if keyed:
        return keyed[0], None
    same_email = index.by_email.get(user["email"], [])  # no Zammad user is indexed under ""
    foreign = [z for z in same_email if _text(z.get("entra_key"))]
    if len(same_email) == 1 and foreign and _relinkable(user, foreign[0], options):
        return _taken_by_contact(user, foreign[0], options)
    if foreign:
        return None, f"email belongs to Zammad user #{foreign[0]['id']}, linked to another Entra object"
    if not same_email:  # a user created without an email, whose login is the address: adopted the same way
        same_email = [z for z in index.by_login.get(user["email"], []) if not _text(z.get("entra_key"))]
    if len(same_email) > 1:
        ids = ", ".join(f"#{z['id']}" for z in same_email)
        return None, f"several Zammad users have this email ({ids})"
    if same_email:
        if not options.adopt_by_email:
            return None, f"Zammad user #{same_email[0]['id']} has this email and adoption by email is off"
        return _taken_by_contact(user, same_email[0], options)
    return None, None


def _taken_by_contact(
    user: Mapping[str, Any], zammad: dict[str, Any], options: PlanOptions
) -> tuple[dict[str, Any] | None, str | None]:
    """A contact adopts (or relinks) only a customer: a staff account with a colleague's address
    would otherwise be demoted to a customer by an Exchange contact."""
    if user.get("entra_object_type") != CONTACT:
        return zammad, None
    roles = zammad.get("role_ids")
    staff = set() if is_missing(roles) or not roles else set(roles) - options.customer_role_ids
    if staff:
        return None, f"Zammad user #{zammad['id']} has this email and is not a customer: a contact never takes it over"
    return zammad, None


def _relinkable(user: Mapping[str, Any], zammad: Mapping[str, Any], options: PlanOptions) -> bool:
    """A re-hire: the Zammad user this profile manages is linked to an Entra object Graph confirmed
    deleted, and its email now belongs to this active member (DESIGN.md §2, issue 12 §5)."""
    return (
        options.relink_deleted
        and bool(user["active"])
        and _text(zammad.get("entra_key")) in options.deleted_keys
        and _owner(zammad) == options.profile
    )


def relink_candidates(universal: pd.DataFrame, zammad: pd.DataFrame, options: PlanOptions) -> set[str]:
    """entra_keys the shell must ask Graph about: this profile's Zammad users whose email an active
    member without a Zammad user of their own now has, linked to an object that is not a member.
    Only those Graph answers 404 for (``deleted_keys``) are relinked."""
    if not options.relink_deleted or universal.empty or zammad.empty:
        return set()
    members = universal[_synced(universal) & _truthy(universal["active"])]
    wanted = {e for e in members["email"].tolist() if e}
    current = set(universal["entra_key"].tolist())
    keys = _texts(_column(zammad, "entra_key"))
    owners = _texts(_column(zammad, "entrasync_profile"))
    emails = _texts(_column(zammad, "email"))
    return {
        key
        for key, owner, email in zip(keys.tolist(), owners.tolist(), emails.tolist())
        if key and owner == options.profile and key not in current and zammad_email(email) in wanted
    }


def _desired(user: Mapping[str, Any], options: PlanOptions) -> tuple[dict[str, Any], str | None]:
    types = options.field_types
    desired = {f: typed.stored(types[f], user.get(f)) if f in types else _text(user.get(f)) for f in options.fields}
    kind = user.get("entra_object_type") or "user"
    desired.update({"entra_key": user["entra_key"], "entra_object_type": kind, "entrasync_profile": options.profile})
    roles = tuple(user.get("roles") or ())
    if options.role_ids is not None and roles:
        unknown = [r for r in roles if r not in options.role_ids]
        if unknown:
            return desired, f"role(s) {', '.join(unknown)} do not exist in Zammad"
        desired["role_ids"] = sorted({options.role_ids[r] for r in roles})
    return desired, None


def _diff(
    zammad: Mapping[str, Any], desired: Mapping[str, Any], types: Mapping[str, str] = _NOTHING
) -> dict[str, list[Any]]:
    """The fields whose Zammad value differs from the desired one; ``types``: the typed fields,
    compared in the form Zammad stores them (fields.py), the others as text."""
    changes: dict[str, list[Any]] = {}
    for key, after in desired.items():
        before = zammad.get(key)
        if key == "role_ids":
            current = sorted(before or []) if not is_missing(before) else []
            if current != after:
                changes[key] = [current, after]
            continue
        if key == "group_ids":
            if not access.same(before, after):
                changes[key] = [access.stored_map(before), after]
            continue
        if key in types:
            if not typed.same(types[key], before, after):
                changes[key] = [None if is_missing(before) else before, after]
            continue
        current = zammad_email(before) if key == "email" else _text(before)
        if current != after:
            changes[key] = [None if is_missing(before) else before, after]
    return changes


def _role_note(user: Mapping[str, Any], options: PlanOptions) -> str:
    """Conflicting group → role mappings are applied as their union, and reported."""
    if options.role_ids is None:
        return ""
    mapped = {tuple(sorted(options.group_roles.get(g, ()))) for g in user.get("source_groups") or ()}
    mapped.discard(())
    return f"; {ROLE_MERGE_NOTE}" if len(mapped) > 1 else ""


def _with_group_access(
    user: Mapping[str, Any], zammad: Mapping[str, Any] | None, desired: dict[str, Any], options: PlanOptions
) -> tuple[dict[str, Any], str]:
    """The desired ``group_ids`` (managed groups: the union over the member's Entra groups; the
    rest as they are), and a note when Zammad would ignore it: only agents keep group access."""
    if not options.group_access:
        return desired, ""
    groups = () if user.get("entra_object_type") == CONTACT else user.get("source_groups") or ()
    wanted = access.wanted_access(groups, options.group_access)  # a contact is a customer: no group access
    current = (zammad or {}).get("group_ids")
    roles = desired["role_ids"] if "role_ids" in desired else (zammad or {}).get("role_ids")
    if not access.is_agent(None if is_missing(roles) else roles, options.agent_role_ids):
        return desired, f"; {access.NOT_AGENT_NOTE}" if wanted else ""
    if not wanted and not access.stored_map(current):
        return desired, ""
    return {**desired, "group_ids": access.desired_map(current, wanted, options.zammad_group_ids)}, ""


def _decide(user: Mapping[str, Any], zammad: dict[str, Any] | None, options: PlanOptions) -> dict[str, Any]:
    owner = _owner(zammad or {})
    if zammad is not None:
        if _opted_out(zammad):
            return _row(Action.OPTED_OUT, user, zammad, OPTED_OUT_REASON)
        protected = _protection(zammad, options)
        if protected:
            return _row(Action.SKIP, user, zammad, protected)
        if owner and owner != options.profile:
            return _row(Action.CONFLICT, user, zammad, f"managed by profile {owner!r}")
    if not user["active"]:
        if zammad is not None and _text(zammad.get("entra_key")) and owner == options.profile and zammad.get("active"):
            return _row(
                Action.DEACTIVATE,
                user,
                zammad,
                "account disabled in Entra (accountEnabled false)",
                {"active": [True, False]},
                {"active": False},
            )
        return _row(Action.SKIP, user, zammad, "account disabled in Entra")
    desired, problem = _desired(user, options)
    if problem:
        return _row(Action.CONFLICT, user, zammad, problem)
    desired, access_note = _with_group_access(user, zammad, desired, options)
    note = _role_note(user, options) + access_note
    if zammad is None:
        org_changes, org_note = _organization(user, None, options)
        note += org_note
        payload = {k: v for k, v in desired.items() if v not in ("", None)}
        payload.update({k: v[1] for k, v in org_changes.items()})
        return _row(Action.CREATE, user, None, "new member" + note, {k: [None, v] for k, v in payload.items()}, payload)
    return _decide_matched(user, zammad, desired, note, options)


def _decide_matched(
    user: Mapping[str, Any], zammad: dict[str, Any], desired: Mapping[str, Any], note: str, options: PlanOptions
) -> dict[str, Any]:
    """A member in scope and the Zammad user matched to them: relink, reactivate, update or noop,
    with hand edits since entrasync's last write judged per the drift settings."""
    changes = _diff(zammad, desired, options.field_types)
    org_changes, org_note = _organization(user, zammad, options)
    changes.update(org_changes)
    note += org_note
    adopted = not _text(zammad.get("entra_key"))
    if not adopted and _text(zammad.get("entra_key")) != user["entra_key"]:  # only _relinkable matches do
        if not zammad.get("active"):
            changes["active"] = [False, True]
        reason = f"relinked: Entra object {zammad['entra_key']} was deleted; its email now belongs to this one"
        was, now = _text(zammad.get("entra_object_type")), user.get("entra_object_type") or "user"
        if was and was != now:
            reason += f" (a {now} now, a {was} before)"
        return _row(Action.RELINK, user, zammad, reason + note, changes, {k: v[1] for k, v in changes.items()})
    written = options.last_written.get(int(zammad["id"]), {}) if not adopted else {}
    changes, drift = _hand_edits(zammad, changes, written, options)
    if not zammad.get("active") and written.get("active") is True:  # entrasync left it active: a person did this
        return _deactivated_by_hand(user, zammad, changes, drift + note, options)
    if drift and not changes:
        return _row(Action.SKIP, user, zammad, drift.removeprefix("; ") + note)
    note = drift + note
    if not zammad.get("active"):
        changes["active"] = [False, True]
        return _row(
            Action.REACTIVATE, user, zammad, "member again" + note, changes, {k: v[1] for k, v in changes.items()}
        )
    if changes:
        how = "adopted by email" if _text(zammad.get("email")).strip() else "adopted by login (Zammad had no email)"
        reason = (how if adopted else "attributes changed") + note
        return _row(Action.UPDATE, user, zammad, reason, changes, {k: v[1] for k, v in changes.items()})
    return _row(Action.NOOP, user, zammad, note.removeprefix("; ") or None)


def _organization(
    user: Mapping[str, Any], zammad: Mapping[str, Any] | None, options: PlanOptions
) -> tuple[dict[str, list[Any]], str]:
    """The member's organization changes and note (organizations.py), when the profile manages them."""
    if options.organizations is None:
        return {}, ""
    written = options.last_written.get(int(zammad["id"]), {}) if zammad is not None else {}
    return organizations.changes(user.get(organizations.COLUMN), zammad, options.organizations, written)


def _hand_edits(
    zammad: Mapping[str, Any], changes: dict[str, list[Any]], written: Mapping[str, Any], options: PlanOptions
) -> tuple[dict[str, list[Any]], str]:
    """The changes less the hand edits Zammad wins, and a note naming every hand edit found.

    A hand edit: a mapped field whose Zammad value is no longer what entrasync last wrote there
    (compared as Zammad stores it). Fields entrasync never wrote are not judged.
    """
    kept, overwritten = [], []
    for name in [f for f in changes if f in options.fields and f in written]:
        if _unchanged_since(name, zammad.get(name), written[name], options):
            continue
        if options.drift_fields.get(name, options.drift_default) == "zammad":
            kept.append(name)
        else:
            overwritten.append(name)
    if not kept and not overwritten:
        return changes, ""
    parts = [f"{name} kept (drift: zammad)" for name in kept] + [
        f"{name} overwritten (drift: entra)" for name in overwritten
    ]
    remaining = {k: v for k, v in changes.items() if k not in kept}
    return remaining, f"; {DRIFT_NOTE}: {', '.join(parts)}"


def _unchanged_since(name: str, current: Any, written: Any, options: PlanOptions) -> bool:
    """Zammad still holds what entrasync wrote, compared as Zammad stores the field."""
    if name in options.field_types:
        return typed.same(options.field_types[name], current, written)
    stored = zammad_email if name == "email" else _text
    return stored(current) == stored(written)


def _deactivated_by_hand(
    user: Mapping[str, Any], zammad: dict[str, Any], changes: dict[str, list[Any]], note: str, options: PlanOptions
) -> dict[str, Any]:
    """An active member's Zammad user someone deactivated (entrasync last left it active)."""
    if options.manual_deactivation == "keep":
        why = f"{DRIFT_NOTE}: deactivated; kept inactive (drift.manual_deactivation: keep)"
        return _row(Action.SKIP, user, zammad, why + note)
    changes = {**changes, "active": [False, True]}
    why = f"member again; {DRIFT_NOTE}: deactivated; reactivated (drift.manual_deactivation: reactivate)"
    return _row(Action.REACTIVATE, user, zammad, why + note, changes, {k: v[1] for k, v in changes.items()})


def hand_edit_candidates(plan: pd.DataFrame) -> list[int]:
    """Zammad users the plan would write as members (update, reactivate, relink): the only ones whose
    hand edits matter. The shell reads what it last wrote to them and plans again. A relink counts:
    its writes (an organization entrasync set, cleared) must be judged in the same run, not the next."""
    if plan.empty:
        return []
    members = [Action.UPDATE.value, Action.REACTIVATE.value, Action.RELINK.value]
    rows = plan[plan["action"].isin(members) & plan["zammad_id"].notna()]
    return sorted({int(z) for z in rows["zammad_id"].tolist()})


def drift_count(plan: pd.DataFrame) -> int:
    """Decisions that found hand edits in Zammad (kept or overwritten), or a manual deactivation."""
    if plan.empty:
        return 0
    return sum(DRIFT_NOTE in r for r in plan["reason"].dropna().tolist() if isinstance(r, str))


@dataclass
class _Claim:
    """A decision that needs an address other Zammad users hold now; it stands if they all move away."""

    row: dict[str, Any]
    email: str
    holders: tuple[int, ...]  # as Zammad listed them; the first is named in the conflict
    refused: dict[str, Any]  # the conflict row if the address stays taken


def _wanted_email(row: Mapping[str, Any]) -> str | None:
    """The address a write gives its Zammad user: a create's email, or the new one of an email change."""
    if row["action"] == Action.CREATE.value:
        return zammad_email(row.get("email")) or None
    change = (row.get("changes") or {}).get("email")
    return zammad_email(change[1]) or None if change and row["action"] in _MOVES else None


def _freed_email(row: Mapping[str, Any]) -> str | None:
    """The address a write takes away from its Zammad user (an email change of an existing user)."""
    change = (row.get("changes") or {}).get("email")
    return zammad_email(change[0]) or None if change and row["action"] in _MOVES else None


_MOVES = frozenset({Action.UPDATE.value, Action.REACTIVATE.value})


def _email_claim(
    row: dict[str, Any], user: Mapping[str, Any], zammad: Mapping[str, Any] | None, index: _Index
) -> _Claim | None:
    """An email change to an address another Zammad user has: Zammad refuses it (422) unless that user moves."""
    wanted = _wanted_email(row) if row["action"] != Action.CREATE.value else None
    if not wanted:
        return None
    holders = tuple(int(z["id"]) for z in index.by_email.get(wanted, []) if int(z["id"]) != row["zammad_id"])
    if not holders:
        return None
    change = row["changes"]["email"]
    refused = _row(Action.CONFLICT, user, zammad, f"new email {change[1]} belongs to Zammad user #{holders[0]}")
    return _Claim(row, wanted, holders, refused)


def _settle_claims(rows: list[dict[str, Any]], claims: list[_Claim]) -> list[dict[str, Any]]:
    """Grant each claim whose holders all give the address up in this same plan, else refuse it.

    A move counts once it is itself granted, so chains resolve (C moves, B takes C's address, A
    takes B's) and a swap, which no order of writes can carry out, stays a conflict both ways.
    ``apply`` writes the moves first (``write_layers``).
    """
    if not claims:
        return rows
    granted = {id(claim.row): False for claim in claims}
    moving = {(r["zammad_id"], _freed_email(r)) for r in rows if id(r) not in granted and _freed_email(r)}
    progressed = True
    while progressed:
        progressed = False
        for claim in claims:
            if not granted[id(claim.row)] and all((h, claim.email) in moving for h in claim.holders):
                granted[id(claim.row)] = progressed = True
                if _freed_email(claim.row):
                    moving.add((claim.row["zammad_id"], _freed_email(claim.row)))
    refused = {id(c.row): {"_pos": c.row["_pos"], **c.refused} for c in claims if not granted[id(c.row)]}
    return [refused.get(id(row), row) for row in rows]


def write_layers(writes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Writes in the order Zammad can take them: one that takes an address another write frees comes after it.

    Almost every plan is one layer; the plan only grants such chains without cycles (``_settle_claims``).
    """
    freer = {email: i for i, row in enumerate(writes) if (email := _freed_email(row))}
    if not freer:
        return [writes] if writes else []
    depth: dict[int, int] = {}

    def level(i: int, trail: frozenset[int] = frozenset()) -> int:
        if i not in depth:
            before = freer.get(_wanted_email(writes[i]) or "")
            depth[i] = 0 if before is None or before == i or before in trail else 1 + level(before, trail | {i})
        return depth[i]

    layers: dict[int, list[dict[str, Any]]] = {}
    for i, row in enumerate(writes):
        layers.setdefault(level(i), []).append(row)
    return [layers[k] for k in sorted(layers)]


def compute_plan(universal: pd.DataFrame, zammad: pd.DataFrame, options: PlanOptions) -> pd.DataFrame:
    """One row per decision, in PLAN_COLUMNS; the same inputs always give the same plan.

    Users already in the desired state are recognised column-wise first (the common case, so a
    100,000-user no-change run stays well under a second); every other user goes through the
    per-user rules below, which decide exactly as they would for all (a property test holds it).
    """
    zammad = _without_system_user(zammad)
    if not universal.index.equals(pd.RangeIndex(len(universal))):
        universal = universal.reset_index(drop=True)  # row position = plan order
    unchanged, unchanged_ids = _unchanged(universal, zammad, options)
    pending = np.ones(len(universal), dtype=bool)
    pending[unchanged["_pos"].to_numpy(dtype=np.int64)] = False
    rest = universal.iloc[np.flatnonzero(pending)] if len(unchanged) else universal
    users = [{**user, "_pos": position} for position, user in zip(rest.index, rest.to_dict("records"))]
    keys = {u["entra_key"] for u in users}
    emails = {u["email"] for u in users if u.get("email")}
    z_keys = _texts(_column(zammad, "entra_key"))
    if users and len(zammad):
        z_emails = pd.Series(_texts(_column(zammad, "email"))).str.strip().str.lower()
        z_logins = pd.Series(_texts(_column(zammad, "login"))).str.strip().str.lower().where(z_emails == "", "")
        held = z_emails.isin(emails) | z_logins.isin(emails)
        relevant = zammad[(pd.Series(z_keys).isin(keys) | held).to_numpy()]
    else:
        relevant = zammad.iloc[0:0]
    index = _index(relevant.to_dict("records"))
    email_counts: Counter[str] = Counter()
    users_hold: set[str] = set()  # addresses users claim, which contacts yield
    if len(rest):
        claim = _claimants(universal)
        synced = universal.loc[claim, "email"]  # an empty email is never looked up
        email_counts = Counter(synced.value_counts().to_dict())
        contact = _texts(_column(universal, "entra_object_type")) == CONTACT
        users_hold = _user_emails(universal, claim, contact) if contact.any() else set()
    seen: set[int] = set(unchanged_ids)
    rows = _decide_all(users, index, email_counts, seen, options, users_hold)
    leavers = _leavers(_leaver_candidates(zammad, z_keys, seen, options).to_dict("records"), options)
    decided = pd.DataFrame(rows + leavers, columns=["_pos", *PLAN_COLUMNS])
    if not len(decided):
        plan = unchanged
    elif not len(unchanged):
        plan = decided.sort_values("_pos")  # positions are unique; the leavers' (NaN) keep their order, last
    else:
        with warnings.catch_warnings():  # all-NA columns of one side keep the other side's dtype: as meant
            warnings.simplefilter("ignore", FutureWarning)
            plan = pd.concat([unchanged, decided]).sort_values("_pos")
    return _plan_columns(plan)


def _plan_columns(plan: pd.DataFrame) -> pd.DataFrame:
    """PLAN_COLUMNS in plan order, numbered from 0; the columns are not copied (100,000 noop rows)."""
    plan = plan.copy(deep=False)
    del plan["_pos"]
    if not plan.index.equals(pd.RangeIndex(len(plan))):
        plan.index = pd.RangeIndex(len(plan))
    if plan["zammad_id"].dtype != "Int64":
        plan["zammad_id"] = plan["zammad_id"].astype("Int64")
    return plan


def _without_system_user(zammad: pd.DataFrame) -> pd.DataFrame:
    """Zammad's users less the system user (id 1), which is never planned; listed first, it is sliced off."""
    if zammad.empty:
        return zammad
    system = np.flatnonzero(zammad["id"].astype(int).to_numpy() == SYSTEM_USER_ID)
    if not len(system):
        return zammad
    if len(system) == 1 and system[0] == 0:
        return zammad.iloc[1:]
    return zammad[zammad["id"].astype(int) != SYSTEM_USER_ID]


def _decide_all(
    users: list[dict[str, Any]],
    index: _Index,
    emails: Counter[str],
    seen: set[int],
    options: PlanOptions,
    users_hold: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    claims: list[_Claim] = []
    for user in users:
        position = user["_pos"]
        keyed = index.by_key.get(user["entra_key"], [])
        if user.get("skip_reason"):
            # A member we cannot read or sync keeps their Zammad user as it is: not a leaver.
            seen.update(int(z["id"]) for z in keyed)
            zammad_user = keyed[0] if len(keyed) == 1 else None
            rows.append({"_pos": position, **_row(Action.SKIP, user, zammad_user, user["skip_reason"])})
            continue
        if _text(user.get("scope_reason")) and user["active"]:
            seen.update(int(z["id"]) for z in keyed)
            rows.append({"_pos": position, **_out_of_scope(user, keyed, options)})
            continue
        zammad_user, conflict = _match(user, index, options)
        for other in [*keyed, *([zammad_user] if zammad_user is not None else [])]:
            seen.add(int(other["id"]))  # its match (a relinked one too), or users we could not place
        shared = bool(user["email"]) and emails[user["email"]] > 1
        if user.get("entra_object_type") == CONTACT and user["email"] in users_hold:
            conflict, shared = USER_HOLDS_EMAIL, True  # never a claim: the address is the user's
        if conflict is None and shared:
            conflict = f"{emails[user['email']]} Entra users share the email {user['email']}"
        if conflict:
            # A Zammad user we could not place stays as it is: deactivating it could lock the person out.
            seen.update(int(z["id"]) for z in index.by_email.get(user["email"], []) if user["email"])
            refused = {"_pos": position, **_row(Action.CONFLICT, user, zammad_user, conflict)}
            claim = None if shared else _hire_claim(user, index, options, refused)
            rows.append(claim.row if claim else refused)
            claims.extend([claim] if claim else [])
            continue
        row = {"_pos": position, **_decide(user, zammad_user, options)}
        claim = _email_claim(row, user, zammad_user, index)
        rows.append(row)
        claims.extend([claim] if claim else [])
    return _settle_claims(rows, claims)


def _hire_claim(user: Mapping[str, Any], index: _Index, options: PlanOptions, refused: dict[str, Any]) -> _Claim | None:
    """A new member whose email only linked Zammad users hold: a create, if they all move away."""
    holders = index.by_email.get(user["email"], []) if user["email"] else []
    if index.by_key.get(user["entra_key"]) or not holders or not all(_text(z.get("entra_key")) for z in holders):
        return None
    row = {"_pos": refused["_pos"], **_decide(user, None, options)}
    if row["action"] != Action.CREATE.value:
        return None
    return _Claim(row, user["email"], tuple(int(z["id"]) for z in holders), refused)


def _leaver_candidates(zammad: pd.DataFrame, keys: np.ndarray, seen: set[int], options: PlanOptions) -> pd.DataFrame:
    """Active Zammad users with an entra_key, managed by this profile, that no decision placed.

    ``keys``: the entra_key of each Zammad row as text. The cheap column tests go first, so the
    look-up in ``seen`` only covers users that could be leavers.
    """
    if not len(zammad):
        return zammad
    maybe = (
        (keys != "")
        & (_texts(_column(zammad, "entrasync_profile")) == options.profile)
        & _truthy(pd.Series(_column(zammad, "active")))
    )
    ids = zammad["id"].astype(int).to_numpy()
    maybe[maybe] = ~np.isin(ids[maybe], np.fromiter(seen, dtype=np.int64, count=len(seen)))
    return zammad[maybe]


def _unchanged(universal: pd.DataFrame, zammad: pd.DataFrame, options: PlanOptions) -> tuple[pd.DataFrame, set[int]]:
    """Users whose single keyed Zammad user already holds every desired value: noop, in one pass.

    Anything unusual (a skip, a duplicate key or email, protection, another owner, an inactive
    side, managed roles, any differing field) is left to the per-user rules. Column by column:
    each rule is one comparison of whole columns, so 100,000 users take a few tens of ms.
    """
    empty = pd.DataFrame(columns=["_pos", *PLAN_COLUMNS])
    if universal.empty or zammad.empty:
        return empty, set()
    u_keys = universal["entra_key"].to_numpy()
    at = _row_holding(zammad, u_keys)
    candidate = (at >= 0) & _synced(universal) & _truthy(universal["active"]) & _unique_synced_emails(universal)
    if options.role_ids is not None:  # managed roles are decided per user
        candidate &= ~_truthy(universal["roles"])
    candidate[candidate] = _untouched(zammad, options)[at[candidate]]
    kinds = _texts(_column(zammad, "entra_object_type"))
    candidate[candidate] = kinds[at[candidate]] == _texts(_column(universal, "entra_object_type"))[candidate]
    if options.group_access:  # members granted access, and users holding managed access, per user
        candidate &= ~_grants_access(universal, options)
        candidate[candidate] = ~_holds_managed_access(zammad, options)[at[candidate]]
    for name in options.fields:
        rows = np.flatnonzero(candidate)
        want = _column(universal, name)
        want = want if len(rows) == len(want) else want[rows]
        kind = options.field_types.get(name)
        want = typed.comparable(kind, want) if kind else _texts(want)
        have = typed.comparable(kind, _column(zammad, name)) if kind else _texts(_column(zammad, name))
        if name == "email":
            have = _objects(list(map(str.lower, map(str.strip, have))))
        candidate[rows] = want == have[at[rows]]
    if options.organizations is not None:
        rows = np.flatnonzero(candidate)
        have = _column(zammad, organizations.ID_FIELD)[at[rows]]
        candidate[rows] = organizations.unchanged(
            _column(universal, organizations.COLUMN)[rows], have, options.organizations
        )
    kept = np.flatnonzero(candidate)
    ids = zammad["id"].to_numpy()[at[kept]].astype(np.int64)
    nothing = np.empty(len(kept), dtype=object)
    nothing.fill(_NOTHING)
    rows = pd.DataFrame(
        {
            "_pos": kept,
            "action": Action.NOOP.value,
            "entra_key": u_keys[kept],
            "zammad_id": pd.array(ids, dtype="Int64"),
            "email": universal["email"].to_numpy()[kept],
            "upn": universal["upn"].to_numpy()[kept],
            "changes": nothing,
            "payload": nothing,
            "reason": None,
        }
    )
    return rows, set(ids.tolist())


def _grants_access(universal: pd.DataFrame, options: PlanOptions) -> np.ndarray:
    """Members of an Entra group that grants Zammad group access (decided once per group tuple)."""
    granting = {g for g, names in options.group_access.items() if names}
    decided: dict[Any, bool] = {}
    groups = universal["source_groups"].tolist()
    flags = (decided.setdefault(tuple(gs), bool(granting.intersection(gs))) for gs in groups)
    return np.fromiter(flags, dtype=bool, count=len(groups))


def _holds_managed_access(zammad: pd.DataFrame, options: PlanOptions) -> np.ndarray:
    """Zammad users whose ``group_ids`` name a managed group: leaving may take that access back."""
    managed = {str(i) for i in options.zammad_group_ids.values()}
    maps = _column(zammad, "group_ids").tolist()
    flags = (isinstance(m, Mapping) and any(str(k) in managed for k in m) for m in maps)
    return np.fromiter(flags, dtype=bool, count=len(maps))


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column's values, or None for each row when the frame has no such column."""
    if column in frame.columns:
        return frame[column].to_numpy()
    return np.full(len(frame), None, dtype=object)


def _objects(values: list[Any]) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))


def _texts(values: np.ndarray) -> np.ndarray:
    """``_text`` of each value: text as it is, '' for a missing value, str() of anything else."""
    if values.dtype == object:
        if pd.api.types.infer_dtype(values, skipna=False) == "string":
            return values
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "string":  # text with None or NaN among it
            return np.where(pd.isna(values), "", values)
        if kind == "empty":
            return np.full(len(values), "", dtype=object)
    return _objects([v if v.__class__ is str else _text(v) for v in values.tolist()])


def _truthy(column: pd.Series) -> np.ndarray:
    values = column.to_numpy()
    return values if values.dtype == bool else np.fromiter(map(bool, values), dtype=bool, count=len(values))


def _row_holding(zammad: pd.DataFrame, keys: np.ndarray) -> np.ndarray:
    """For each key, the position of the one Zammad row holding it; -1 for none or several."""
    held = _texts(_column(zammad, "entra_key"))
    keyed = np.flatnonzero(held != "")
    once = keyed[~_repeated(held[keyed])]
    if not len(once):
        return np.full(len(keys), -1)
    found = pd.Index(held[once]).get_indexer(keys)
    return np.where(found >= 0, once[found], -1)


def _repeated(values: np.ndarray) -> np.ndarray:
    """Values that occur more than once (every occurrence); a set tells first when there are none."""
    if len(set(values.tolist())) == len(values):
        return np.zeros(len(values), dtype=bool)
    return pd.Series(values).duplicated(keep=False).to_numpy()


def _synced(universal: pd.DataFrame) -> np.ndarray:
    """Members the sync writes: neither skipped nor out of scope."""
    synced = universal["skip_reason"].isna().to_numpy()
    if "scope_reason" in universal.columns:
        synced = synced & universal["scope_reason"].isna().to_numpy()
    return synced


def _claimants(universal: pd.DataFrame) -> np.ndarray:
    """Members whose email counts when two share one: synced and enabled.

    A disabled account claims no address: its own Zammad user is deactivated or left alone, and
    an active colleague who now has the same mail is not held up by it. A targeted run, which
    does not read every holder of an address, then decides as a full run does.
    """
    claim = _synced(universal) & _truthy(universal["active"])
    contact = _texts(_column(universal, "entra_object_type")) == CONTACT
    if contact.any():  # a contact never holds up a user: it yields an address a user claims
        claim &= ~(contact & np.isin(universal["email"].to_numpy(), list(_user_emails(universal, claim, contact))))
    return claim


def _user_emails(universal: pd.DataFrame, claim: np.ndarray, contact: np.ndarray) -> set[str]:
    """The addresses enabled, synced users (not contacts) claim."""
    emails = universal["email"].to_numpy()
    return set(emails[claim & ~contact].tolist()) - {""}


def _unique_synced_emails(universal: pd.DataFrame) -> np.ndarray:
    """Users whose email no other claimant (synced, enabled) shares; an empty email never counts."""
    emails = universal["email"].to_numpy()
    synced = _claimants(universal) & np.fromiter(map(bool, emails), dtype=bool, count=len(emails))
    unique = synced.copy()
    unique[synced] = ~_repeated(emails[synced])
    return unique


def _untouched(zammad: pd.DataFrame, options: PlanOptions) -> np.ndarray:
    """Zammad rows a noop may name: active, ours, not protected (by role or by a list)."""
    ok = (
        _truthy(pd.Series(_column(zammad, "active")))
        & (pd.Series(_column(zammad, "entrasync_profile")) == options.profile).to_numpy()
    )
    if OPT_OUT_ATTRIBUTE in zammad.columns:
        ok &= ~np.fromiter(
            (not is_missing(v) and bool(v) for v in zammad[OPT_OUT_ATTRIBUTE].tolist()), dtype=bool, count=len(zammad)
        )
    if options.protect_admins:
        ok &= ~_admins(_column(zammad, "role_ids"), options.admin_role_ids)
    if options.protected_ids or options.protected_logins or options.protected_emails:
        ok &= ~_listed(zammad, options)
    return ok


def _admins(roles: np.ndarray, admin_role_ids: frozenset[int]) -> np.ndarray:
    """Rows whose role ids (a tuple or list) include an Admin role: decided once per distinct tuple."""

    def holds(value: Any) -> bool:
        return value.__class__ in (tuple, list) and any(r in admin_role_ids for r in value)

    try:
        decided = {value: holds(value) for value in set(roles.tolist())}  # a few distinct role sets
    except TypeError:  # a list among them: not hashable
        return np.fromiter(map(holds, roles), dtype=bool, count=len(roles))
    return np.fromiter(map(decided.__getitem__, roles), dtype=bool, count=len(roles))


def _listed(zammad: pd.DataFrame, options: PlanOptions) -> np.ndarray:
    """Protected by id, login or email (``_protection``'s lists, case as the settings store them)."""
    logins = _texts(_column(zammad, "login"))
    emails = _texts(_column(zammad, "email"))
    return (
        zammad["id"].astype(int).isin(options.protected_ids).to_numpy()
        | pd.Series(list(map(str.lower, logins))).isin(options.protected_logins).to_numpy()
        | pd.Series(list(map(str.lower, map(str.strip, emails)))).isin(options.protected_emails).to_numpy()
    )


def _leavers(candidates: list[dict[str, Any]], options: PlanOptions) -> list[dict[str, Any]]:
    """Active users this profile manages that are no longer members (``_leaver_candidates``):
    deactivated (never deleted) as ``_leaving`` decides."""
    return [_leaving(None, zammad_user, _left_reason(zammad_user, options), options) for zammad_user in candidates]


def _left_reason(zammad: Mapping[str, Any], options: PlanOptions) -> str:
    if not options.contacts and zammad.get("entra_object_type") == CONTACT:
        return CONTACTS_OFF
    return LEFT_GROUPS


def missing_ledger(plan: pd.DataFrame, options: PlanOptions) -> dict[str, Any]:
    """The first-missing times to keep after this plan: every user in the grace period or being
    deactivated, since when it has been missing (kept from before, else now).

    A deactivation that fails keeps its time, so the next run does not start the grace period
    again; any other decision about a user means it is back (or gone from Zammad): its time goes.
    """
    if plan.empty or options.now is None:
        return {}
    held = plan[plan["action"].isin([Action.GRACE.value, Action.DEACTIVATE.value])]
    keys = [k for k in held["entra_key"].tolist() if isinstance(k, str) and k]
    return {k: options.missing_since.get(k, options.now) for k in keys}


def action_counts(plan: pd.DataFrame) -> dict[str, int]:
    counts = plan["action"].value_counts() if not plan.empty else {}
    return {a.value: int(counts.get(a.value, 0)) for a in Action}


def role_merge_count(plan: pd.DataFrame) -> int:
    """Decisions whose reason reports conflicting group → role mappings (applied as their union)."""
    if plan.empty:
        return 0
    return sum(ROLE_MERGE_NOTE in r for r in plan["reason"].dropna().tolist() if isinstance(r, str))


def organization_counts(plan: pd.DataFrame) -> dict[str, int]:
    """Organizations the plan needs created, and decisions whose organization is missing and not
    created (``create_missing: false``): the sync_plan's metadata."""
    if plan.empty:
        return {"organizations_to_create": 0, "organizations_missing": 0}
    writes = writes_of(plan)["payload"].tolist()
    return {
        "organizations_to_create": len(organizations.names_to_create(p for p in writes if p)),
        "organizations_missing": organizations.missing_count(plan["reason"].tolist()),
    }


def group_access_changes(plan: pd.DataFrame) -> int:
    """Writes that change a user's Zammad group access (the UI metadata counts them)."""
    writes = writes_of(plan)
    return access.access_change_count(writes["changes"].tolist()) if not writes.empty else 0


def writes_of(plan: pd.DataFrame) -> pd.DataFrame:
    """The rows that would change Zammad."""
    if plan.empty:
        return plan
    return plan[plan["action"].isin([a.value for a in WRITE_ACTIONS])]


def plan_changes(plan: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """One entry per decision other than noop, deactivations first: what a person or a script reviews.

    ``fields`` maps each changed field to ``{"before": …, "after": …}`` (for a create, before is
    null). ``limit`` caps the entries per action (previews); None keeps all.
    """
    if plan.empty:
        return []
    plan = plan[(plan["action"] != Action.NOOP.value).to_numpy()]  # usually nearly all: one pass drops them
    entries: list[dict[str, Any]] = []
    for action in REVIEW_ORDER:
        rows = plan[plan["action"] == action.value]
        if limit is not None:
            rows = rows.head(limit)
        for row in rows.to_dict("records"):
            zammad_id = row.get("zammad_id")
            entries.append(
                {
                    "action": action.value,
                    "entra_key": row.get("entra_key") or None,
                    "zammad_id": None if is_missing(zammad_id) else int(zammad_id),
                    "email": row.get("email") or None,
                    "fields": {
                        name: {"before": _plain(change[0]), "after": _plain(change[1])}
                        for name, change in (row.get("changes") or {}).items()
                    },
                    "reason": row.get("reason") or None,
                }
            )
    return entries


def _plain(value: Any) -> Any:
    """JSON-friendly: tuples become lists, missing values null."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return None if is_missing(value) else value
