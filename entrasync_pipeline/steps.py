"""The steps of one profile's sync; each asset of the job calls its step here, and nothing else does.

Read Entra, normalize, read Zammad, plan, judge safety, record the approval, apply, notify. The
job (``entrasync_sync_job``) is the only thing that chains them: the CLI, the schedule, the
sensor and the UI all run that job, so every run has the same steps, checks and audit. The
clients and stores come from a ``ProfileRuntime``; the decisions come from the pure core.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from entrasync_pipeline import group_access, organizations
from entrasync_pipeline.apply import ApplyOptions, ApplyResult, apply_plan, empty_counts, example_changes
from entrasync_pipeline.audit import AuditRow, AuditStore
from entrasync_pipeline.contacts import ALL_CONTACTS, ALL_CONTACTS_NAME, CONTACT_TYPE, CUSTOMER_ROLE, contact_select
from entrasync_pipeline.contacts import OBJECT_TYPE as CONTACT_OBJECT
from entrasync_pipeline.entra.graph import USER_TYPE
from entrasync_pipeline.fields import (
    ASSOCIATION_PARAMS,
    FieldSpec,
    absent_fields,
    attribute_spec,
    field_problems,
    setup_states,
)
from entrasync_pipeline.heartbeat import ping
from entrasync_pipeline.normalize import CORE_FIELDS, NormalizeOptions, Rule, ScopeTest, normalize_members
from entrasync_pipeline.notify import Message, summary_message
from entrasync_pipeline.organizations import COLUMN as ORGANIZATION
from entrasync_pipeline.organizations import OrganizationRules
from entrasync_pipeline.plan import (
    COUNT_NAMES,
    OPT_OUT_ATTRIBUTE,
    WRITE_ACTIONS,
    PlanOptions,
    compute_plan,
    hand_edit_candidates,
    missing_ledger,
    relink_candidates,
)
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.safety import SafetyLimits, SafetyVerdict, evaluate, managed_count
from entrasync_pipeline.settings import ConfigError, ProfileSettings, ScopeRule, heartbeat_url
from entrasync_pipeline.targeted import scope_plan
from entrasync_pipeline.zammad.client import ADMIN_ROLE_NAME, ENTRA_ATTRIBUTES
from entrasync_pipeline.zammad.errors import ZammadAuthError

log = logging.getLogger(__name__)

ZAMMAD_COLUMNS = (
    "id",
    "login",
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobile",
    "department",
    "active",
    "role_ids",
    "organization_id",
    "entra_key",
    "entra_object_type",
    "entrasync_profile",
    OPT_OUT_ATTRIBUTE,
)
REQUIRED_ATTRIBUTES = ("entra_key", "entra_object_type", "entrasync_profile")
USER_KEYS = "user_keys"  # attrs of the Zammad users: the keys of a user record (its columns)


@contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a step builds large tables.

    These steps create hundreds of thousands of small containers and no reference cycles, so the
    collector only costs time there (about a fifth of normalize + plan at 100,000 users);
    reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class MissingAdminRole(RuntimeError):
    """Zammad's Admin role is not there (renamed?): protecting admins by role would protect nobody."""


# --- step 1: Entra --------------------------------------------------------------------------------
Progress = Callable[[str, int, "int | None"], None]  # (phase, done, total or None)
PROGRESS_EVERY = 500


def read_entra_members(profile: ProfileRuntime, progress: Progress | None = None) -> pd.DataFrame:
    """Every member of every configured group, one row per (group, member); with ``contacts: all``
    also every contact of the tenant (group ``contacts.ALL_CONTACTS``)."""
    config = profile.config
    select = config.member_select()
    columns = ["group_id", "group_name", "id", "@odata.type", *[c for c in select if c != "id"]]
    values: dict[str, list[Any]] = {c: [] for c in columns}
    graph = profile.graph
    sources = [
        (group.id, group.name or group.id, graph.group_members(group.id, select, config.membership == "transitive"))
        for group in config.groups
    ]
    if config.contacts == "all":
        sources.append((ALL_CONTACTS, ALL_CONTACTS_NAME, graph.contacts(contact_select(select))))
    for group_id, group_name, items in sources:
        count = 0
        with _bulk():
            for item in items:
                item = {"group_id": group_id, "group_name": group_name, **item}
                for column, bucket in values.items():
                    bucket.append(item.get(column))
                count += 1
                if progress is not None and count % PROGRESS_EVERY == 0:
                    progress(f"reading {group_name}", count, None)
        log.info("%s (%s): %d members read", group_name, group_id, count)
    with _bulk():
        _share_repeated_text(values)
        _share_row_copies(values, "mail", "userPrincipalName")
        frame = pd.DataFrame(values, columns=columns).astype({"group_id": str, "id": str, "@odata.type": str})
    if frame.duplicated(subset=["group_id", "id"]).any():  # Graph may repeat an item across pages
        frame = frame.drop_duplicates(subset=["group_id", "id"]).reset_index(drop=True)
    return frame


def read_targeted_members(profile: ProfileRuntime, targets: tuple[str, ...]) -> pd.DataFrame:
    """The targeted objects' rows as the full read would have them: one per configured group they are in.

    Users and memberships come in JSON batches (``GraphClient.targeted_read``); with contacts
    synced, an id Graph has no user for is asked again as a contact. The frame's
    ``attrs["targets"]`` says, per target, whether Entra still has it (for the run's trace).
    """
    config = profile.config
    select = config.graph_select()
    columns = ["group_id", "group_name", "id", "@odata.type", *[c for c in config.member_select() if c != "id"]]
    names = {g.id: g.name or g.id for g in config.groups}
    transitive = config.membership == "transitive"
    found, groups = profile.graph.targeted_read(list(targets), select, list(names), transitive)
    kinds = {uid: USER_TYPE for uid, user in found.items() if user is not None}
    absent = [uid for uid, user in found.items() if user is None]
    if absent and config.contacts != "none":
        contacts, contact_groups = profile.graph.targeted_read(
            absent, contact_select(config.member_select()), list(names), transitive, entity="contacts"
        )
        for cid, contact in contacts.items():
            if contact is not None:
                found[cid], groups[cid], kinds[cid] = contact, contact_groups[cid], CONTACT_TYPE
                if config.contacts == "all":
                    names.setdefault(ALL_CONTACTS, ALL_CONTACTS_NAME)
                    groups[cid] = groups[cid] | {ALL_CONTACTS}
    rows = [
        {"group_id": gid, "group_name": names[gid], "@odata.type": kinds[uid], **user}
        for uid, user in found.items()
        if user is not None
        for gid in names
        if gid in groups[uid]
    ]
    frame = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
    frame = frame.astype({"group_id": str, "id": str, "@odata.type": str})
    frame.attrs["targets"] = {
        uid: {
            "found": user is not None,
            "upn": (user or {}).get("userPrincipalName") or (user or {}).get("mail"),
            "groups": sorted(names[g] for g in groups.get(uid, ())),
        }
        for uid, user in found.items()
    }
    log.info(
        "targeted read: %d of %d found, %d member rows",
        sum(u is not None for u in found.values()),
        len(targets),
        len(frame),
    )
    return frame


def with_neighbours(profile: ProfileRuntime, targets: tuple[str, ...]) -> tuple[str, ...]:
    """The targets and the users whose decision can hang on theirs: those who shared an email with
    them (a conflict over an address, a leaver kept active by another user's conflict). A full run
    decides them together; so does a targeted run."""
    neighbours = profile.audit.email_neighbours(profile.name, targets)
    return targets + tuple(sorted(neighbours))


def resolve_targets(profile: ProfileRuntime, names: list[str]) -> tuple[list[str], list[str]]:
    """Entra object ids for users named by object id, UPN or mail (and contacts, when synced, by
    object id or mail): (ids, names not found).

    A user deleted from Entra is still found through the Zammad user linked to it (by email or
    login), or by its object id when this profile's audit knows it, so offboarding on demand works
    after the account is gone.
    """
    ids: list[str] = []
    missing: list[str] = []
    for name in names:
        found = profile.graph.find_user_id(name)
        if found is None and profile.config.contacts != "none":
            found = profile.graph.find_user_id(name, entity="contacts")
        if found is None and "@" in name:
            linked = [z for z in profile.zammad.find_by_email(name) if z.get("entrasync_profile") == profile.name]
            found = str(linked[0]["entra_key"]) if len(linked) == 1 and linked[0].get("entra_key") else None
        elif found is None and name in profile.audit.known_users(profile.name, [name]):
            found = name  # an object id Graph no longer has, which this profile synced: its offboarding
        if found is None:
            missing.append(name)
        else:
            ids.append(found)
    return list(dict.fromkeys(ids)), missing


def _share_repeated_text(values: dict[str, list[Any]]) -> None:
    """One string object per distinct value in the columns that repeat a few values.

    JSON parsing makes a new string for every occurrence: 100,000 users would otherwise hold
    100,000 copies of "#microsoft.graph.user", "Member", "user", the profile name and each
    department, some 45 MB of the sync's memory. Columns that are mostly distinct are left alone.
    """
    for name, column in values.items():
        sample = [v for v in column[:512] if v.__class__ is str]
        if not sample or len(set(sample)) * 4 > len(sample):
            continue
        canonical: dict[str, str] = {}
        values[name] = [canonical.setdefault(v, v) if v.__class__ is str else v for v in column]


def _share_row_copies(values: dict[str, list[Any]], original: str, copy: str) -> None:
    """Where a row's ``copy`` column equals its ``original`` (login = email, userPrincipalName = mail), one object.

    JSON parsing makes two equal strings; at 100,000 users each such pair costs some 7 MB.
    """
    if original in values and copy in values:
        values[copy] = [a if a == b and a.__class__ is str else b for a, b in zip(values[original], values[copy])]


def members_per_group(members: pd.DataFrame, profile: ProfileSettings) -> dict[str, int]:
    """Synced members (users; contacts when synced) per configured group (0 for groups that returned none)."""
    synced = [USER_TYPE, CONTACT_TYPE] if profile.contacts != "none" else [USER_TYPE]
    groups = members.loc[members["@odata.type"].isin(synced), "group_id"] if not members.empty else None
    counts = groups.value_counts().to_dict() if groups is not None and not groups.empty else {}
    return {g.name or g.id: int(counts.get(g.id, 0)) for g in profile.groups}


def contacts_read(members: pd.DataFrame) -> int:
    """Distinct organizational contacts in the snapshot (0 when the profile does not sync them)."""
    return 0 if members.empty else int(members.loc[members["@odata.type"] == CONTACT_TYPE, "id"].nunique())


# --- step 2: normalize ----------------------------------------------------------------------------
def normalize_options(config: ProfileSettings) -> NormalizeOptions:
    mapping = {
        target: Rule(
            tuple(rule.source),
            rule.constant,
            tuple(rule.transforms),
            rule.default,
            rule.type,
            tuple(rule.options.items()),
        )
        for target, rule in config.mapping.items()
    }
    if config.organization is not None:  # normalized like a mapped value; the plan resolves it (organizations.py)
        org = config.organization
        mapping[ORGANIZATION] = Rule(tuple(org.source), org.constant, ("first", "strip"))
    roles = {g.id: tuple(g.roles) for g in config.groups}
    return NormalizeOptions(
        mapping,
        roles,
        config.sync_users_without_email,
        include=tuple(map(_scope_test, config.scope.include)),
        exclude=tuple(map(_scope_test, config.scope.exclude)),
        phone_format=config.phones.format,
        phone_region=config.phones.default_region,
        contacts=config.contacts != "none",
    )


def _scope_test(rule: ScopeRule) -> ScopeTest:
    one_of = tuple(rule.one_of) if rule.one_of is not None else None
    return ScopeTest(rule.attribute, rule.equals, one_of, rule.matches)


def universal_users(members: pd.DataFrame, config: ProfileSettings) -> pd.DataFrame:
    with _bulk():
        users = normalize_members(members, normalize_options(config))
    # A targeted run whose users all left has no rows: the columns still have their types.
    return users.astype({"active": bool}) if users.empty else users


# --- step 3: Zammad -------------------------------------------------------------------------------
def read_zammad_users(profile: ProfileRuntime, progress: Progress | None = None) -> pd.DataFrame:
    """Every Zammad user, collected column by column (a 100,000-user helpdesk stays small in memory)."""
    with _bulk():
        keys: set[str] = set()
        frame, has_attributes = _users_frame(profile, profile.zammad.iter_users(), progress, keys)
    frame.attrs["has_entra_attributes"] = has_attributes
    frame.attrs[USER_KEYS] = sorted(keys)
    log.info("zammad: %d users read", len(frame))
    return frame


def read_targeted_zammad_users(profile: ProfileRuntime, targets: tuple[str, ...]) -> pd.DataFrame:
    """The Zammad users linked to the targets, read live.

    By Zammad id where the audit knows it (checked: the user must still carry the key), else by
    ``entra_key``. Users to adopt or in the way by email are added when planning
    (``with_email_matches``), where the Entra emails are known.
    """
    zammad = profile.zammad
    known = profile.audit.known_users(profile.name, targets)
    found: dict[int, dict[str, Any]] = {}
    for key in targets:
        linked = zammad.user(known[key]) if known.get(key) else None
        if linked is not None and linked.get("entra_key") == key:
            found[int(linked["id"])] = linked
        else:
            found.update({int(h["id"]): h for h in zammad.find_by_attribute("entra_key", key)})
    frame, has_attributes = _users_frame(profile, iter(found.values()))
    frame.attrs[USER_KEYS] = _first_keys(found.values())
    if not found:  # nobody to look at: ask the object manager whether the attributes are usable
        attributes = zammad.user_attributes()
        has_attributes = all(a in attributes and not attributes[a].get("to_migrate") for a in REQUIRED_ATTRIBUTES)
    frame.attrs["has_entra_attributes"] = has_attributes
    log.info("zammad: %d users linked to %d targets", len(frame), len(targets))
    return frame


def with_email_matches(profile: ProfileRuntime, users: pd.DataFrame, zammad: pd.DataFrame) -> pd.DataFrame:
    """The targeted Zammad users plus those holding a target's email: whom a full run would match.

    Only where the email is not already the linked user's: a new hire to adopt (by email, or by
    login when nobody has the email), a re-hire to relink, or an address another user holds (a
    conflict, as a full run would report it).
    """
    linked = {str(k): str(e or "").lower() for k, e in zammad[["entra_key", "email"]].itertuples(index=False)}
    seen = set(zammad["id"].tolist())
    extra: dict[int, dict[str, Any]] = {}
    for key, email in users[["entra_key", "email"]].itertuples(index=False):
        if isinstance(email, str) and email and linked.get(key) != email.lower():
            # Nobody with the email: a Zammad user without one whose login is the address (adoption by login).
            hits = profile.zammad.find_by_email(email) or profile.zammad.find_by_attribute("login", email.lower())
            extra.update({int(h["id"]): h for h in hits if int(h["id"]) not in seen})
    if not extra:
        return zammad
    more, _ = _users_frame(profile, iter(extra.values()))
    merged = pd.concat([zammad, more], ignore_index=True)
    merged.attrs.update(zammad.attrs)
    return merged


def _first_keys(users: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(next(iter(users), {}))


def _users_frame(
    profile: ProfileRuntime,
    records: Iterator[dict[str, Any]],
    progress: Progress | None = None,
    keys: set[str] | None = None,
) -> tuple[pd.DataFrame, bool]:
    """The users' columns as a frame, and whether they carry the custom attributes (``keys``:
    filled with the first user's keys, every column Zammad has)."""
    extra = [f for f in profile.config.mapping if f not in CORE_FIELDS]
    extra += ["group_ids"] if manages_group_access(profile.config) else []
    columns = list(dict.fromkeys([*ZAMMAD_COLUMNS, *extra]))
    values: dict[str, list[Any]] = {c: [] for c in columns}
    has_attributes = _collect_users(records, values, progress, keys)
    role_sets: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # Zammad's role ids are ints: a few distinct sets
    values["role_ids"] = [role_sets.setdefault(r, r) for r in (tuple(sorted(v or ())) for v in values["role_ids"])]
    _share_repeated_text(values)
    _share_row_copies(values, "email", "login")
    frame = pd.DataFrame(values, columns=columns, dtype=object)  # empty columns stay object, like full ones
    return frame.astype({"id": int, "active": bool}), has_attributes


def _collect_users(
    records: Iterator[dict[str, Any]],
    values: dict[str, list[Any]],
    progress: Progress | None = None,
    keys: set[str] | None = None,
) -> bool:
    """Append every user's columns; True when the users carry the custom attributes.

    A migrated attribute is a column of every user, so the first user tells.
    """
    has_attributes: bool | None = None
    for user in records:
        if has_attributes is None:
            has_attributes = all(a in user for a in REQUIRED_ATTRIBUTES)
            if keys is not None:
                keys.update(user)
        for column, bucket in values.items():
            bucket.append(user.get(column))
        if progress is not None and len(values["id"]) % PROGRESS_EVERY == 0:
            progress("reading Zammad", len(values["id"]), None)
    return bool(has_attributes)


def entra_attribute_problems(zammad: pd.DataFrame) -> list[str]:
    """Why Zammad cannot hold the links yet: the identity attributes ``zammad-setup`` creates, by name.

    Without them Zammad silently drops ``entra_key`` and every run would create duplicates, so a
    plan (dry or not) is held like one with a mapped field Zammad lacks (``sync_plan_fields``).
    A migrated attribute is a key of every user record, so the first user's keys say which are
    missing; with no user to look at, all of them are named. The opt-out flag is named with them
    when it is missing too (one command creates all), but alone it holds nothing back.
    """
    if zammad.attrs.get("has_entra_attributes", False):
        return []
    keys = set(zammad.attrs.get(USER_KEYS) or ())
    missing = [name for name in (*REQUIRED_ATTRIBUTES, OPT_OUT_ATTRIBUTE) if name not in keys]
    return [
        f"Zammad lacks (or has not migrated) the user attribute(s) {', '.join(missing)}: run "
        "'entrasync zammad-setup --config ...' once (needs a token with admin.object), then sync again; "
        "without them Zammad silently drops entra_key and every run would create duplicates"
    ]


# --- step 4: plan ---------------------------------------------------------------------------------
def plan_options(
    profile: ProfileRuntime,
    role_ids: Mapping[str, int],
    now: datetime | None = None,
    missing_since: Mapping[str, datetime] | None = None,
) -> PlanOptions:
    """``role_ids``: Zammad's role ids by name, read from Zammad (never assumed). ``now`` and
    ``missing_since`` (the audit store's first-missing times) measure the grace period."""
    config = profile.config
    protected = config.protected
    manages_roles = any(g.roles for g in config.groups)
    return PlanOptions(
        profile=profile.name,
        fields=tuple(config.mapping),
        adopt_by_email=config.adopt_by_email,
        protected_ids=frozenset(protected.ids),
        protected_logins=frozenset(x.lower() for x in protected.logins),
        protected_emails=frozenset(e.lower() for e in protected.emails),
        protect_admins=protected.admins,
        admin_role_ids=frozenset(i for name, i in role_ids.items() if name == ADMIN_ROLE_NAME),
        role_ids=role_ids if manages_roles else None,
        contacts=config.contacts != "none",
        customer_role_ids=frozenset(i for name, i in role_ids.items() if name == CUSTOMER_ROLE),
        group_roles={g.id: tuple(g.roles) for g in config.groups},
        relink_deleted=config.relink_deleted,
        drift_default=config.drift.default,
        drift_fields=dict(config.drift.fields),
        manual_deactivation=config.drift.manual_deactivation,
        on_leave=config.on_leave,
        grace=timedelta(days=config.grace_days),
        now=now,
        missing_since=dict(missing_since or {}),
        field_types={f: rule.type for f, rule in config.mapping.items() if rule.type != "text"},
        group_access={g.id: {n: tuple(a) for n, a in g.zammad_groups.items()} for g in config.groups},
    )


# --- agent group access (group_access.py) ------------------------------------------------------------
def manages_group_access(config: ProfileSettings) -> bool:
    return any(g.zammad_groups for g in config.groups)


def zammad_group_problems(profile: ProfileRuntime) -> tuple[list[str], dict[str, Any]]:
    """Every configured Zammad group that is missing or inactive (the plan is held, naming it), and
    the plan options group access needs: the managed groups' ids and the roles granting ticket.agent.
    Costs no request when no group grants access."""
    config = profile.config
    if not manages_group_access(config):
        return [], {}
    names = group_access.managed_names({g.id: g.zammad_groups for g in config.groups})
    try:
        groups = profile.zammad.groups()
    except ZammadAuthError as exc:  # GroupsControllerPolicy: admin.user alone may not list groups
        why = f"cannot read Zammad's groups ({exc}): groups[].zammad_groups needs a token with ticket.agent or admin.group"
        return [why], {}
    problems = group_access.missing_groups(names, {n: g["active"] for n, g in groups.items()})
    ids = {n: groups[n]["id"] for n in names if n in groups}
    return problems, {"zammad_group_ids": ids, "agent_role_ids": profile.zammad.agent_role_ids()}


def zammad_roles(profile: ProfileRuntime) -> dict[str, int]:
    """Role ids by name, when the plan needs them (Admin protection, a group → role mapping, or
    contacts, which never take over a staff account).

    Without an Admin role, admin protection would silently protect nobody: that stops the plan.
    """
    config = profile.config
    if not config.protected.admins and not any(g.roles for g in config.groups) and config.contacts == "none":
        return {}
    roles = profile.zammad.roles()
    if config.protected.admins and ADMIN_ROLE_NAME not in roles:
        raise MissingAdminRole(
            f"Zammad has no role named {ADMIN_ROLE_NAME!r} (roles: {', '.join(sorted(roles))}); "
            "admins cannot be protected. Set protected.admins: false only if that is intended."
        )
    return roles


def compute_sync_plan(
    profile: ProfileRuntime,
    users: pd.DataFrame,
    zammad: pd.DataFrame,
    targets: Sequence[str] | None = None,
    remember: bool = False,
    group_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The plan (only the targets' decisions in a targeted run). ``remember``: keep the first-missing
    times it found in the audit store, so the grace period runs across runs (not in a dry run).
    ``group_options``: what ``zammad_group_problems`` read (read here when not given)."""
    grace = profile.config.grace_days > 0
    now = datetime.now(timezone.utc)
    missing_since = profile.audit.missing_since(profile.name) if grace else {}
    options = plan_options(profile, zammad_roles(profile), now, missing_since)
    options = dataclasses.replace(options, organizations=zammad_organizations(profile))
    if group_options is None:
        _, group_options = zammad_group_problems(profile)
    if group_options:
        options = dataclasses.replace(options, **group_options)
    candidates = sorted(relink_candidates(users, zammad, options))
    if candidates:  # re-hires: Zammad users linked to an object that may be gone, their email on a new one
        deleted = _deleted_objects(profile, zammad, candidates)
        log.info("relink: %d of %d linked Entra objects are deleted", len(deleted), len(candidates))
        options = dataclasses.replace(options, deleted_keys=frozenset(deleted))
    with _bulk():
        plan = compute_plan(users, zammad, options)
        edited = hand_edit_candidates(plan)
        written = profile.audit.last_written(profile.name, edited) if edited else {}
        if written or (edited and options.organizations):  # a hand edit since decides per drift settings;
            audited = _audited(options)  # an organization is cleared only when entrasync set it
            plan = compute_plan(users, zammad, dataclasses.replace(audited, last_written=written))
    if targets is not None:
        plan = scope_plan(plan, targets)
    if remember and (grace or targets is None):  # without a grace period, a full run clears the times
        decided = None if targets is None else [*targets, *plan["entra_key"].dropna().tolist()]
        profile.audit.update_missing(profile.name, missing_ledger(plan, options) if grace else {}, decided)
    return plan


def _deleted_objects(profile: ProfileRuntime, zammad: pd.DataFrame, keys: list[str]) -> set[str]:
    """The keys Graph has no object for, each asked where its Zammad user says it lives (a user or a contact)."""
    linked = zammad.loc[zammad["entra_key"].isin(keys)] if "entra_key" in zammad.columns else zammad.iloc[0:0]
    types = dict(zip(linked["entra_key"].astype(str), linked.get("entra_object_type", pd.Series(dtype=object))))
    contacts = [k for k in keys if types.get(k) == CONTACT_OBJECT]
    users = [k for k in keys if k not in set(contacts)]
    deleted = profile.graph.deleted_users(users) if users else set()
    return deleted | (profile.graph.deleted_users(contacts, entity="contacts") if contacts else set())


def zammad_organizations(profile: ProfileRuntime) -> OrganizationRules | None:
    """Zammad's organizations by name, every page, when the profile manages them (else None)."""
    config = profile.config.organization
    if config is None:
        return None
    ids = organizations.index(profile.zammad.iter_organizations())
    log.info("organizations: %d in Zammad", len(ids))
    return OrganizationRules(ids, config.create_missing)


def _audited(options: PlanOptions) -> PlanOptions:
    if options.organizations is None:
        return options
    return dataclasses.replace(options, organizations=dataclasses.replace(options.organizations, audited=True))


def judge(
    profile: ProfileRuntime,
    plan: pd.DataFrame,
    per_group: Mapping[str, int],
    zammad: pd.DataFrame,
    approved: int,
    managed: int | None = None,
) -> SafetyVerdict:
    """``per_group``: user members per configured group, from ``members_per_group`` ({} in a
    targeted run: its groups hold only the targets). ``managed``: the managed users the share
    limit is taken of, when ``zammad`` is not all of them (a targeted run)."""
    safety = profile.config.safety
    limits = SafetyLimits(safety.max_deactivations, safety.max_deactivation_share)
    population = managed_count(zammad, profile.name) if managed is None else managed
    return evaluate(plan, population, per_group, limits, approved)


# --- step 5: apply --------------------------------------------------------------------------------
def record_approval(audit: AuditStore, run_id: str, profile: str, verdict: SafetyVerdict, dry_run: bool) -> None:
    """An operator's approval is part of the audit trail, whether or not it was needed."""
    if verdict.approved:
        audit.record(
            [
                AuditRow(
                    run_id,
                    profile,
                    "approval",
                    "info",
                    dry_run,
                    reason=f"deactivations approved: up to {verdict.approved} (plan has {verdict.deactivations})",
                )
            ]
        )


def apply(
    profile: ProfileRuntime,
    plan: pd.DataFrame,
    run_id: str,
    dry_run: bool,
    blocked: str | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Write the plan, or record it as "would" (dry run) or "blocked" rows: one audit row per decision."""
    safety = profile.config.safety
    options = ApplyOptions(
        run_id=run_id,
        profile=profile.name,
        dry_run=dry_run,
        workers=profile.settings.workers,
        failure_share=safety.failure_share,
        failure_min_attempts=safety.failure_min_attempts,
    )
    writing = (lambda done, total: progress("writing", done, total)) if progress else None
    return apply_plan(plan, profile.zammad, profile.audit, options, blocked=blocked, progress=writing)


def remember_links(profile: ProfileRuntime, plan: pd.DataFrame) -> int:
    """After a full run: every Entra id the plan decided about, with its Zammad id (None for a create:
    the audit row of the create has it). The change feed and targeted runs read these."""
    rows = plan[["entra_key", "zammad_id"]].dropna(subset=["entra_key"]) if not plan.empty else plan
    current = {
        str(key): None if pd.isna(zammad_id) else int(zammad_id) for key, zammad_id in rows.itertuples(index=False)
    }
    return profile.audit.replace_links(profile.name, current)


def notify(
    profile: ProfileRuntime,
    plan: pd.DataFrame,
    result: ApplyResult | None,
    run_url: str | None,
    failure: str | None = None,
) -> Message | None:
    """Send the run's message when the profile wants one for this outcome; never raises."""
    settings = profile.config.notifications
    counts = result.counts if result else empty_counts()
    wrote = any(counts.get(COUNT_NAMES[a], 0) for a in WRITE_ACTIONS) or counts.get("failed", 0)
    wanted = (
        (failure and settings.on_failure)
        or (result and result.blocked and settings.on_blocked)
        or (result and wrote and settings.on_changes)
    )
    if not wanted:
        return None
    message = summary_message(
        profile.name,
        counts,
        example_changes(plan, settings.max_examples),
        run_url,
        bool(result and result.dry_run),
        result.blocked if result else None,
        failure or (result.stopped if result else None),
    )
    try:
        profile.notifier().send(message)
    except Exception as exc:  # configuration errors of notifications never fail the sync
        log.warning("notification not sent: %s", exc)
    return message


def heartbeat(profile: ProfileRuntime, failed: bool = False) -> bool | None:
    """Ping the profile's heartbeat URL (``heartbeat_fail_suffix`` appended after a failed run).

    None when there is nothing to send (no URL, or a failure without a suffix); False when it
    was not delivered. Never raises: the heartbeat never fails a run.
    """
    settings = profile.config.notifications
    suffix = settings.heartbeat_fail_suffix or ""
    try:
        url = heartbeat_url(settings, profile.environ)
    except ConfigError as exc:  # names the missing variable, never the URL
        log.warning("heartbeat not sent: %s", exc)
        return False
    if url is None or (failed and not suffix):
        return None
    http, ca_bundle = profile.settings.http, profile.settings.tls.ca_bundle
    return ping(url, http, ca_bundle, settings.heartbeat_timeout_s, suffix if failed else "")


# --- Zammad's fields --------------------------------------------------------------------------------
def mapped_fields(config: ProfileSettings) -> list[FieldSpec]:
    """The mapped fields Zammad must hold as attributes besides its own text fields: every custom
    or typed one (not ``organization``, which Zammad looks up by name)."""
    return [
        FieldSpec(name, rule.type, tuple(rule.options.items()))
        for name, rule in config.mapping.items()
        if name not in CORE_FIELDS and name not in ASSOCIATION_PARAMS  # the settings keep CORE_FIELDS text
    ]


def zammad_field_problems(profile: ProfileRuntime, zammad: pd.DataFrame) -> tuple[list[str], str]:
    """What keeps Zammad from storing the mapped fields (fields.field_problems), and how it was seen.

    Reads the object manager (GET /object_manager_attributes, needs admin.object). A token
    without it (the least-privilege sync token) still sees which fields a user record lacks, not
    their types; the second value says which of the two was checked. The default mapping fills
    only Zammad's own fields and costs no request.
    """
    wanted = mapped_fields(profile.config)
    if not wanted:
        return [], "no custom fields mapped"
    try:
        attributes = profile.zammad.user_attributes()
    except ZammadAuthError as exc:
        keys = zammad.attrs.get(USER_KEYS) or []
        log.warning("object manager not readable (%s): checking the mapped fields' presence only", exc)
        if not keys:
            return [], "not checked: no object-manager access and no user record to look at"
        return absent_fields(wanted, frozenset(keys)), "presence only (the token lacks admin.object)"
    return field_problems(wanted, attributes), "object manager"


# --- one-time setup ---------------------------------------------------------------------------------
def setup_zammad(profile: ProfileRuntime) -> list[str]:
    """Create the identity attributes and every mapped field Zammad lacks (with its type), then run
    the migrations; idempotent. Returns what it created.

    A field that exists with another type is left alone: changing it would recast every user's
    value. The plan names it (``zammad_field_problems``).
    """
    zammad = profile.zammad
    existing = zammad.user_attributes()
    specs = [*ENTRA_ATTRIBUTES, *(attribute_spec(f) for f in mapped_fields(profile.config))]
    created = []
    for spec in specs:
        if spec["name"] not in existing:
            zammad.create_attribute(spec)
            created.append(spec["name"])
    names = {spec["name"] for spec in specs}
    pending = created or [n for n, a in existing.items() if n in names and (a.get("to_migrate") or a.get("to_create"))]
    if pending:
        zammad.execute_migrations()
    return created


def setup_report(profile: ProfileRuntime, created: list[str]) -> list[tuple[str, str, list[str]]]:
    """Per attribute, what ``setup_zammad`` found or created, and what still keeps Zammad from
    storing a mapped field (fields.setup_states): a field of another type, or a select without an
    option, which setup leaves for a person to decide."""
    identity = [spec["name"] for spec in ENTRA_ATTRIBUTES]
    return setup_states(identity, mapped_fields(profile.config), profile.zammad.user_attributes(), created)
