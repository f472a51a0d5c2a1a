"""Agent group access: Entra groups → Zammad group access, as Zammad stores it (pure).

A profile's group names Zammad groups with access lists (``groups[].zammad_groups``). A member
gets the union over their Entra groups. Zammad keeps a user's access as ``group_ids``, a map
``{"<group id>": ["full"], ...}`` that a PUT replaces whole (has_groups.rb
``group_ids_access_map=``), so the desired map is the user's current one with the *managed*
groups (those named anywhere in the config) replaced by the union: access granted by hand to
other groups is kept, and leaving an Entra group takes back what it gave.

Zammad shows ``{}`` for a user without the ``ticket.agent`` permission or an inactive one
(``groups_access_map``), whatever it stores. Planning access for a customer would therefore flap
on every run: access is only planned for agents, and an inactive group cannot be granted either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ACCESS_LEVELS = ("full", "read", "create", "change", "overview")  # Zammad's group access verbs
AGENT_PERMISSION = "ticket.agent"
NOT_AGENT_NOTE = "group access not set: the user holds no role with ticket.agent, so Zammad would ignore it"

AccessMap = dict[str, list[str]]  # Zammad's group_ids: group id (text) → access verbs


def managed_names(group_access: Mapping[str, Mapping[str, Iterable[str]]]) -> list[str]:
    """Every Zammad group named in the config (``group_access``: Entra group id → name → access)."""
    return sorted({name for names in group_access.values() for name in names})


def wanted_access(
    source_groups: Iterable[str], group_access: Mapping[str, Mapping[str, Iterable[str]]]
) -> dict[str, list[str]]:
    """The union over the member's Entra groups: Zammad group name → sorted access verbs."""
    union: dict[str, set[str]] = {}
    for group in source_groups:
        for name, access in group_access.get(group, {}).items():
            union.setdefault(name, set()).update(access)
    return {name: sorted(access) for name, access in sorted(union.items()) if access}


def stored_map(value: Any) -> AccessMap:
    """A ``group_ids`` value as Zammad stores it: text keys, each access list sorted and unique;
    anything that is not a map (missing, NaN) is no access."""
    if not isinstance(value, Mapping):
        return {}
    out: AccessMap = {}
    for key, access in value.items():
        verbs = [access] if isinstance(access, str) else list(access or ())
        if verbs:
            out[str(key)] = sorted(set(map(str, verbs)))
    return dict(sorted(out.items()))


def desired_map(current: Any, wanted: Mapping[str, list[str]], group_ids: Mapping[str, int]) -> AccessMap:
    """The user's ``group_ids`` after the sync: their current map less every managed group, plus
    the wanted access (``group_ids``: the managed groups' Zammad ids by name; a missing one holds
    the plan before any write, see ``missing_groups``)."""
    managed = {str(group_ids[name]) for name in group_ids}
    kept = {key: access for key, access in stored_map(current).items() if key not in managed}
    granted = {str(group_ids[name]): list(access) for name, access in wanted.items() if name in group_ids}
    return stored_map({**kept, **granted})


def same(current: Any, desired: Any) -> bool:
    """Two ``group_ids`` maps grant the same access (key types and verb order aside)."""
    return stored_map(current) == stored_map(desired)


def is_agent(role_ids: Iterable[Any] | None, agent_role_ids: frozenset[int]) -> bool:
    """The user holds a role with ``ticket.agent``: the only users whose group access Zammad keeps."""
    return any(int(r) in agent_role_ids for r in role_ids or ())


def missing_groups(names: Iterable[str], zammad_groups: Mapping[str, bool]) -> list[str]:
    """A problem per configured Zammad group that does not exist or is inactive
    (``zammad_groups``: name → active). Access to either would never show in Zammad."""
    problems = []
    for name in names:
        if name not in zammad_groups:
            known = ", ".join(sorted(zammad_groups)) or "none"
            problems.append(f"Zammad group {name!r} (groups[].zammad_groups) does not exist (Zammad's groups: {known})")
        elif not zammad_groups[name]:
            problems.append(f"Zammad group {name!r} (groups[].zammad_groups) is inactive: Zammad ignores access to it")
    return problems


def access_change_count(plan_changes: Iterable[Mapping[str, Any]]) -> int:
    """Decisions that change a user's group access (their ``changes`` name ``group_ids``)."""
    return sum(1 for changes in plan_changes if isinstance(changes, Mapping) and "group_ids" in changes)
