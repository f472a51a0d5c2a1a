"""Is a profile's sync healthy, and what must be announced about it (pure: facts and times in).

A sync that stops silently is the costliest failure (a run that never starts fails nothing, so
nothing reports it). Health is judged from the runs a profile really had, as plain facts the
wiring reads from the Dagster instance: when the last successful **full** run ended (a targeted
run also materializes ``zammad_sync`` but proves nothing about the rest of the directory), what
the latest run did, and whether a blocked plan waits for approval.

Verdicts, most urgent first: ``failing`` (the latest run failed), ``blocked`` (a plan waits for
approval), ``stale`` (no successful full run within ``freshness.max_age_h``), ``ok``.

Announcements happen once per episode: the health sensor keeps an ``Episode`` per profile in
its cursor (durable across daemon restarts) and only announces a change of state — stale,
recovered, or one approval reminder per blocked streak. Times are epoch seconds; no clock,
Dagster or I/O here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum

HOUR_S = 3600.0
VERDICTS = ("ok", "stale", "failing", "blocked")


class Announcement(StrEnum):
    STALE = "stale"
    RECOVERED = "recovered"
    APPROVAL_REMINDER = "approval_reminder"


@dataclass(frozen=True)
class Limits:
    max_age_h: float
    approval_reminder_h: float


@dataclass(frozen=True)
class Facts:
    """What the instance says about one profile at ``now``."""

    now: float
    last_success: float | None  # end of the last successful full run that counts
    latest: str | None = None  # the latest counted run: ok | failed | blocked (None: no run yet)
    blocked_run: str | None = None  # first run of the current blocked streak (one reminder per streak)
    blocked_since: float | None = None  # when that streak began
    watching_since: float | None = None  # a profile never synced is stale only this long after it was first seen


@dataclass(frozen=True)
class Verdict:
    name: str  # one of VERDICTS
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.name == "ok"


def duration(seconds: float) -> str:
    """A duration for people, in the unit that reads best: ``40 s``, ``25 min``, ``3.2 h``, ``2 d``.

    Hours with one decimal said "0.0 h" for a plan blocked a few minutes ago; minutes below 90,
    hours below two days, days after that (one decimal only where it says something).
    """
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * HOUR_S:
        return f"{_one_decimal(seconds / HOUR_S)} h"
    return f"{_one_decimal(seconds / (24 * HOUR_S))} d"


def _one_decimal(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def is_stale(facts: Facts, limits: Limits) -> bool:
    """No successful full run within ``max_age_h`` (counted from first sight when there never was one)."""
    since = facts.last_success if facts.last_success is not None else facts.watching_since
    return since is None or facts.now - since > limits.max_age_h * HOUR_S


def verdict(facts: Facts, limits: Limits) -> Verdict:
    """The overall verdict and every reason that applies (a stale profile may also be blocked)."""
    reasons = []
    if facts.latest == "failed":
        reasons.append("the latest run failed")
    if facts.blocked_since is not None:
        reasons.append(f"a plan has waited for approval for {duration(facts.now - facts.blocked_since)}")
    stale = is_stale(facts, limits)
    if stale and facts.last_success is None:
        reasons.append("no successful full run yet")
    elif stale and facts.last_success is not None:
        age = duration(facts.now - facts.last_success)
        reasons.append(f"the last successful full run ended {age} ago (limit {limits.max_age_h:g} h)")
    if facts.latest == "failed":
        name = "failing"
    elif facts.blocked_since is not None:
        name = "blocked"
    else:
        name = "stale" if stale else "ok"
    return Verdict(name, tuple(reasons))


@dataclass(frozen=True)
class Episode:
    """What the health sensor has recorded and announced for one profile (its cursor entry)."""

    watching_since: float
    stale_announced: bool = False
    check_passed: bool | None = None  # the freshness check result last recorded (None: never)
    reminded_run: str | None = None  # the blocked streak already reminded about

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: object, now: float) -> Episode:
        """The stored episode, or a new one watched from ``now`` (first tick, or an unreadable entry)."""
        if not isinstance(raw, dict):
            return cls(watching_since=now)
        try:
            return cls(
                watching_since=float(raw["watching_since"]),
                stale_announced=bool(raw.get("stale_announced", False)),
                check_passed=None if raw.get("check_passed") is None else bool(raw["check_passed"]),
                reminded_run=None if raw.get("reminded_run") is None else str(raw["reminded_run"]),
            )
        except (KeyError, TypeError, ValueError):
            return cls(watching_since=now)


def check_changed(episode: Episode, facts: Facts, limits: Limits) -> bool:
    """Record the freshness check when its result differs from the last one recorded (or none was)."""
    return episode.check_passed is None or episode.check_passed == is_stale(facts, limits)


def announcements(episode: Episode, facts: Facts, limits: Limits) -> list[Announcement]:
    """What to tell the profile's channels now; empty while nothing changed since the last tick."""
    due = []
    stale = is_stale(facts, limits)
    if stale and not episode.stale_announced:
        due.append(Announcement.STALE)
    elif not stale and episode.stale_announced:
        due.append(Announcement.RECOVERED)
    if (
        facts.blocked_run is not None
        and facts.blocked_since is not None
        and facts.now - facts.blocked_since > limits.approval_reminder_h * HOUR_S
        and episode.reminded_run != facts.blocked_run
    ):
        due.append(Announcement.APPROVAL_REMINDER)
    return due


def announced(episode: Episode, sent: Announcement, facts: Facts) -> Episode:
    """The episode after ``sent`` was delivered (an undelivered one is tried again next tick)."""
    if sent is Announcement.STALE:
        return replace(episode, stale_announced=True)
    if sent is Announcement.RECOVERED:
        return replace(episode, stale_announced=False)
    return replace(episode, reminded_run=facts.blocked_run)


def checked(episode: Episode, facts: Facts, limits: Limits) -> Episode:
    return replace(episode, check_passed=not is_stale(facts, limits))
