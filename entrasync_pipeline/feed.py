"""The change feed: what changed in Entra since the last look, as the Entra ids a run must visit.

Two Graph delta queries per profile (reference §3): ``users/delta`` with the mapped properties
plus ``accountEnabled`` and ``userType`` (a disable, a rename, a deletion), and ``groups/delta``
with ``members`` on every watched group, 50 per filter, as many filters as needed. In transitive
mode the watched groups are the configured ones and every group nested in them; a group joining
or leaving a watched group concerns all its user members. A profile that syncs contacts also
follows ``contacts/delta`` and counts orgContact members as it counts users.

A user change concerns the profile when the audit store knows the user (the profile decided
about them before) or when a membership change of a watched group names them; changes of the
rest of the tenant cost nothing after the delta read. The feed's position (the delta links, the
watched groups, ids waiting for a run) lives in the sensor cursor as JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from entrasync_pipeline.contacts import CONTACT_TYPE, delta_select
from entrasync_pipeline.entra.errors import DeltaResetRequired
from entrasync_pipeline.entra.graph import DELTA_FILTER_LIMIT, GROUP_TYPE, USER_TYPE, DeltaRound, GraphClient
from entrasync_pipeline.settings import ProfileSettings

log = logging.getLogger(__name__)

Known = Callable[[set[str]], set[str]]  # which of these ids the profile knows (the audit store)


@dataclass
class FeedPosition:
    """Where a profile's feed stands; serialised into the sensor cursor."""

    watch: str  # what the links track (groups, membership mode, properties): a change means a new baseline
    users: str  # the users/delta link
    groups: list[list[str]] = field(default_factory=list)  # [[deltaLink, group id, ...], ...]; ≤ 50 ids each
    pending: list[str] = field(default_factory=list)  # ids seen while a run of the profile was busy
    contacts: str = ""  # the contacts/delta link, when the profile syncs contacts

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: object) -> FeedPosition | None:
        """None for anything else (an older cursor format, a hand-edited cursor): a new baseline."""
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                str(raw["watch"]),
                str(raw["users"]),
                list(raw["groups"]),
                list(raw.get("pending", [])),
                str(raw.get("contacts", "")),
            )
        except (KeyError, TypeError):
            return None

    @property
    def key(self) -> str:
        """The delta position as a short stable key: the run key of the run it asks for."""
        links = [self.users, *(chunk[0] for chunk in self.groups), *([self.contacts] if self.contacts else [])]
        return hashlib.sha256("\n".join(links).encode()).hexdigest()[:24]

    @property
    def watched(self) -> set[str]:
        return {g for chunk in self.groups for g in chunk[1:]}


@dataclass
class FeedStep:
    """One look at the feed: the new position, the ids to visit, or why a full run is needed."""

    position: FeedPosition
    targets: set[str] = field(default_factory=set)
    full_run: str | None = None  # the reason, when a targeted run cannot be trusted to cover it
    note: str = ""


def watch_key(config: ProfileSettings) -> str:
    """What a feed position was taken for; another configuration (or Graph endpoint: the links are
    absolute URLs) needs another baseline."""
    raw = json.dumps(
        [
            sorted(g.id for g in config.groups),
            config.membership,
            config.graph_select(),
            config.entra.graph_url,
            # Other scope rules put other users in scope (no rules: the key of the releases before them).
            *(
                [config.scope.model_dump(mode="json", by_alias=True)]
                if config.scope.include or config.scope.exclude
                else []
            ),
            *([f"contacts:{config.contacts}"] if config.contacts != "none" else []),
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def baseline(graph: GraphClient, config: ProfileSettings, pending: Iterable[str] = ()) -> FeedPosition:
    """Links that start "from now" (``$deltatoken=latest``): nothing is downloaded."""
    users = graph.user_delta_latest(config.graph_select())
    groups = _watched_groups(graph, config)
    chunks = [sorted(groups)[i : i + DELTA_FILTER_LIMIT] for i in range(0, len(groups), DELTA_FILTER_LIMIT)]
    links = [[graph.group_delta_latest(chunk), *chunk] for chunk in chunks]
    contacts = (
        graph.user_delta_latest(delta_select(config.graph_select()), "contacts") if config.contacts != "none" else ""
    )
    return FeedPosition(watch_key(config), users, links, sorted(set(pending)), contacts)


def _watched_groups(graph: GraphClient, config: ProfileSettings) -> set[str]:
    groups = {g.id for g in config.groups}
    if config.membership == "transitive":
        for group in config.groups:
            groups |= graph.nested_group_ids(group.id)
    return groups


def advance(graph: GraphClient, config: ProfileSettings, position: FeedPosition | None, known: Known) -> FeedStep:
    """Follow every link once; the ids whose change concerns the profile.

    An expired or reset link (DeltaResetRequired) cannot say what was missed: a new baseline,
    and a full run to reconcile. So does a position taken for another configuration.
    """
    if position is None:
        return FeedStep(baseline(graph, config), note="baseline taken")
    if position.watch != watch_key(config):
        fresh = baseline(graph, config)
        return FeedStep(fresh, full_run="the configured groups, mapping or scope rules changed; new baseline")
    try:
        users = graph.user_delta(position.users)
        rounds = [(chunk, graph.group_delta(chunk[1:], chunk[0])) for chunk in position.groups]
        contacts = graph.user_delta(position.contacts, "contacts") if position.contacts else None
    except DeltaResetRequired as exc:
        fresh = baseline(graph, config, position.pending)
        return FeedStep(fresh, full_run=f"delta state reset by Graph ({exc.code or exc.status}); new baseline")
    members, nested_changed = _membership_targets(graph, config, [r for _, r in rounds])
    changed = users.ids
    relevant = (changed & members) | known(changed - members)
    if contacts is not None:  # with contacts: all, every contact is in scope
        every = config.contacts == "all"
        relevant |= contacts.ids if every else (contacts.ids & members) | known(contacts.ids - members)
        changed = changed | contacts.ids
    groups = [[round_.delta_link, *chunk[1:]] for chunk, round_ in rounds]
    link = contacts.delta_link if contacts is not None else ""
    fresh = FeedPosition(position.watch, users.delta_link, groups, position.pending, link)
    if nested_changed:
        fresh = _rewatch(graph, config, fresh)
    targets = members | relevant | set(position.pending)
    contacts_changed = len(contacts.ids) if contacts is not None else 0
    who = f"{len(changed) - contacts_changed} users" + (f" and {contacts_changed} contacts" if contacts_changed else "")
    note = f"{who} changed ({len(relevant)} of this profile), {len(members)} by membership"
    return FeedStep(fresh, targets, note=note)


def _membership_targets(graph: GraphClient, config: ProfileSettings, rounds: list[DeltaRound]) -> tuple[set[str], bool]:
    """Users (and contacts, when synced) whose membership in a watched group changed; a nested
    group's change names its members."""
    transitive = config.membership == "transitive"
    synced = (USER_TYPE, CONTACT_TYPE) if config.contacts != "none" else (USER_TYPE,)
    targets: set[str] = set()
    nested_changed = False
    for round_ in rounds:
        for changes in (round_.added, round_.removed):
            for member_ids in changes.values():
                for member in member_ids:
                    kind = round_.types.get(member, USER_TYPE)
                    if kind in synced:
                        targets.add(member)
                    elif kind == GROUP_TYPE and transitive:
                        nested_changed = True
                        targets |= graph.user_ids_in(member, transitive=True, kinds=synced)
    return targets, nested_changed


def _rewatch(graph: GraphClient, config: ProfileSettings, position: FeedPosition) -> FeedPosition:
    """Watch groups newly nested (from now on); groups no longer nested stay watched, harmlessly."""
    new = sorted(_watched_groups(graph, config) - position.watched)
    for i in range(0, len(new), DELTA_FILTER_LIMIT):
        chunk = new[i : i + DELTA_FILTER_LIMIT]
        position.groups.append([graph.group_delta_latest(chunk), *chunk])
    if new:
        log.info("now also watching %d newly nested groups", len(new))
    return position
