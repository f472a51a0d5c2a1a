"""Health verdicts and announcements (pure): one message per episode, never one per tick.

The rules: freshness is the age of the last successful *full* run; a profile never synced is
stale only ``max_age_h`` after it was first seen; the latest run failing outranks a blocked plan,
which outranks staleness; stale and recovered are each announced once per episode, and a blocked
streak gets one reminder after ``approval_reminder_h``.
"""

from __future__ import annotations

import pytest

from entrasync_pipeline.freshness import (
    Announcement,
    Episode,
    Facts,
    Limits,
    announced,
    announcements,
    check_changed,
    checked,
    duration,
    verdict,
)

H = 3600.0
NOW = 1_000_000.0
LIMITS = Limits(max_age_h=26, approval_reminder_h=24)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(Facts(NOW, NOW - 2 * H, "ok"), "ok", id="fresh"),
        pytest.param(Facts(NOW, NOW - 26 * H, "ok"), "ok", id="exactly-the-limit"),
        pytest.param(Facts(NOW, NOW - 27 * H, "ok"), "stale", id="too-old"),
        pytest.param(Facts(NOW, None), "stale", id="never-synced"),
        pytest.param(Facts(NOW, None, watching_since=NOW - H), "ok", id="never-synced-just-watched"),
        pytest.param(Facts(NOW, NOW - 2 * H, "failed"), "failing", id="latest-failed"),
        pytest.param(Facts(NOW, NOW - 2 * H, "blocked", "r1", NOW - H), "blocked", id="blocked"),
        pytest.param(Facts(NOW, NOW - 30 * H, "blocked", "r1", NOW - 29 * H), "blocked", id="blocked-and-stale"),
        pytest.param(Facts(NOW, NOW - 30 * H, "failed", "r1", NOW - 29 * H), "failing", id="failing-first"),
    ],
)
def test_verdict(facts: Facts, expected: str) -> None:
    result = verdict(facts, LIMITS)
    assert result.name == expected
    assert result.ok == (expected == "ok") and bool(result.reasons) == (expected != "ok")


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        pytest.param(40, "40 s", id="seconds"),
        pytest.param(25 * 60, "25 min", id="minutes"),
        pytest.param(3.2 * H, "3.2 h", id="hours"),
        pytest.param(26 * H, "26 h", id="whole-hours"),
        pytest.param(2 * 24 * H, "2 d", id="days"),
        pytest.param(-5, "0 s", id="clock-skew"),
    ],
)
def test_a_duration_reads_in_the_unit_that_fits(seconds: float, said: str) -> None:
    assert duration(seconds) == said


def test_a_plan_blocked_minutes_ago_does_not_say_zero_hours() -> None:
    """Found by trying it as an admin: "a plan has waited for approval for 0.0 h"."""
    result = verdict(Facts(NOW, NOW - 2 * H, "blocked", "r1", NOW - 25 * 60), LIMITS)
    assert result.reasons == ("a plan has waited for approval for 25 min",)
    stale = verdict(Facts(NOW, NOW - 3 * 24 * H, "ok"), LIMITS)
    assert stale.reasons == ("the last successful full run ended 3 d ago (limit 26 h)",)


def _tick(episode: Episode, facts: Facts) -> tuple[Episode, list[Announcement], bool]:
    """What the sensor does each tick, with every message delivered."""
    record = check_changed(episode, facts, LIMITS)
    if record:
        episode = checked(episode, facts, LIMITS)
    due = announcements(episode, facts, LIMITS)
    for kind in due:
        episode = announced(episode, kind, facts)
    return episode, due, record


def test_one_stale_and_one_recovered_message_per_episode_and_the_check_recorded_on_change() -> None:
    episode = Episode(watching_since=NOW - 100 * H)
    timeline = [
        (Facts(NOW, NOW - 2 * H), [], True),  # first tick: the check gets its first result
        (Facts(NOW + H, NOW - 2 * H), [], False),
        (Facts(NOW + 30 * H, NOW - 2 * H), [Announcement.STALE], True),
        (Facts(NOW + 31 * H, NOW - 2 * H), [], False),
        (Facts(NOW + 40 * H, NOW - 2 * H), [], False),
        (Facts(NOW + 41 * H, NOW + 40.5 * H), [Announcement.RECOVERED], True),
        (Facts(NOW + 42 * H, NOW + 40.5 * H), [], False),
        (Facts(NOW + 70 * H, NOW + 40.5 * H), [Announcement.STALE], True),  # a new episode
    ]
    for facts, expected, recorded in timeline:
        episode, due, record = _tick(episode, facts)
        assert (due, record) == (expected, recorded), facts


def test_an_undelivered_message_is_due_again() -> None:
    episode = Episode(watching_since=NOW - 100 * H)
    facts = Facts(NOW, NOW - 30 * H)
    assert announcements(episode, facts, LIMITS) == [Announcement.STALE]
    assert announcements(episode, facts, LIMITS) == [Announcement.STALE]  # nothing marked it sent


def test_one_reminder_per_blocked_streak() -> None:
    episode = Episode(watching_since=NOW - 100 * H)
    young = Facts(NOW, NOW - H, "blocked", "run-1", NOW - 2 * H)
    assert _tick(episode, young)[1] == []
    old = Facts(NOW + 23 * H, NOW - H, "blocked", "run-1", NOW - 2 * H)
    episode, due, _ = _tick(episode, old)
    assert due == [Announcement.APPROVAL_REMINDER]
    assert _tick(episode, Facts(NOW + 48 * H, NOW + 47 * H, "blocked", "run-1", NOW - 2 * H))[1] == []
    again = Facts(NOW + 80 * H, NOW + 79 * H, "blocked", "run-9", NOW + 50 * H)  # approved, then a new block
    assert _tick(episode, again)[1] == [Announcement.APPROVAL_REMINDER]


def test_the_episode_survives_its_cursor_and_a_bad_cursor_starts_watching_now() -> None:
    episode = Episode(watching_since=NOW - H, stale_announced=True, check_passed=False, reminded_run="r")
    assert Episode.from_json(episode.to_json(), NOW + H) == episode
    assert Episode.from_json({"stale_announced": True}, NOW) == Episode(watching_since=NOW)
    assert Episode.from_json("garbage", NOW) == Episode(watching_since=NOW)
