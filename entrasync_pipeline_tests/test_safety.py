"""Safety rules: an empty or partial read never deactivates; thresholds (a count, and a share of the
managed users never under one) block until approved; an approval for N never covers more."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from entrasync_pipeline.plan import PLAN_COLUMNS
from entrasync_pipeline.safety import SafetyLimits, evaluate, managed_count

LIMITS = SafetyLimits(max_deactivations=5, max_deactivation_share=0.2)


def _plan(deactivations: int, other: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"action": ["deactivate"] * deactivations + ["noop"] * other})


def test_within_limits_passes() -> None:
    assert not evaluate(_plan(2, 50), managed=50, members_per_group={"IT": 50}, limits=LIMITS).blocked


@pytest.mark.parametrize(
    "deactivations, managed, blocked",
    [
        (6, 1000, True),
        (5, 1000, False),
        (3, 10, True),
        (2, 10, False),
        (1, 3, False),
        (2, 3, True),
        (0, 0, False),
    ],
    ids=[
        "count-over",
        "count-at-limit",
        "share-over",
        "share-at-limit",
        "single-leaver-small-tenant",
        "two-leavers-small-tenant",
        "nothing-managed-nothing-to-do",
    ],
)
def test_thresholds(deactivations: int, managed: int, blocked: bool) -> None:
    verdict = evaluate(_plan(deactivations), managed, {"IT": managed}, LIMITS)
    assert verdict.blocked is blocked
    assert (verdict.deactivations, verdict.managed, verdict.approved) == (deactivations, managed, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 3000), st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]))
@example(managed=1, deactivations=2, share=0.2)
@example(managed=3, deactivations=2, share=0.2)
def test_the_share_limit_is_a_share_of_the_managed_users_but_never_under_one(
    managed: int, deactivations: int, share: float
) -> None:
    """Only the share applies here (the count limit is out of reach): one leaver always passes."""
    limits = SafetyLimits(max_deactivations=10_000, max_deactivation_share=share)
    verdict = evaluate(_plan(deactivations), managed, {"IT": managed}, limits)
    assert verdict.blocked is (deactivations > max(share * managed, 1))


@pytest.mark.parametrize("deactivations, blocked", [(5, False), (6, True)], ids=["at-count", "over-count"])
def test_without_managed_users_only_the_count_limit_applies(deactivations: int, blocked: bool) -> None:
    """No managed users known: a share of them means nothing, the count still holds."""
    assert evaluate(_plan(deactivations), 0, {"IT": 3}, LIMITS).blocked is blocked


@pytest.mark.parametrize(
    "plan", [pd.DataFrame(), pd.DataFrame(columns=PLAN_COLUMNS)], ids=["no-columns", "plan-columns"]
)
def test_an_empty_plan_deactivates_nobody_and_passes(plan: pd.DataFrame) -> None:
    verdict = evaluate(plan, 10, {"IT": 10}, SafetyLimits(max_deactivations=0, max_deactivation_share=0.0))
    assert verdict.deactivations == 0 and not verdict.blocked and verdict.summary == "within limits"


def test_a_blocked_plan_says_which_threshold_and_which_approval_it_needs() -> None:
    verdict = evaluate(_plan(6, 994), 1000, {"IT": 994}, LIMITS)
    assert verdict.summary == (
        "6 deactivations exceed the threshold (at most 5 or 20% of 1000 managed users); they need an approval for 6"
    )


def test_an_empty_read_blocks_even_with_approval() -> None:
    verdict = evaluate(_plan(40), managed=40, members_per_group={"IT": 0, "Sales": 0}, limits=LIMITS, approved=40)
    assert verdict.blocked and "no members" in verdict.summary


def test_an_empty_group_blocks_deactivations_unless_approved() -> None:
    plan = _plan(1, 30)
    verdict = evaluate(plan, 30, {"Sales": 0, "IT": 30, "HR": 0}, LIMITS)
    assert verdict.blocked
    assert verdict.summary == "group(s) HR, Sales returned no members; refusing to deactivate on that read"
    assert not evaluate(plan, 30, {"IT": 30, "Sales": 0}, LIMITS, approved=1).blocked


def test_approval_for_n_never_authorizes_more_than_n() -> None:
    assert evaluate(_plan(10), 1000, {"IT": 990}, LIMITS, approved=10).blocked is False
    verdict = evaluate(_plan(11), 1000, {"IT": 989}, LIMITS, approved=10)
    assert verdict.blocked and verdict.summary.endswith("; the approval for 10 does not cover them")
    assert (verdict.deactivations, verdict.managed, verdict.approved) == (11, 1000, 10)


def test_managed_count_is_this_profiles_active_keyed_users() -> None:
    zammad = pd.DataFrame(
        {
            "entra_key": ["a", "b", None, "d", "e"],
            "entrasync_profile": ["p", "p", "p", "q", "p"],
            "active": [True, False, True, True, True],
        }
    )
    assert managed_count(zammad, "p") == 2


@pytest.mark.parametrize(
    "zammad",
    [
        pd.DataFrame(),
        pd.DataFrame(columns=["id", "entra_key", "entrasync_profile", "active"]),
        pd.DataFrame({"id": [2, 3], "active": [True, True]}),
        pd.DataFrame({"id": [2, 3], "entra_key": ["a", "b"], "active": [True, True]}),
        pd.DataFrame({"id": [2, 3], "entrasync_profile": ["p", "p"], "active": [True, True]}),
    ],
    ids=["empty-zammad", "no-users", "attributes-not-set-up", "no-profile-attribute", "no-key-attribute"],
)
def test_a_zammad_without_keyed_users_of_the_profile_has_no_managed_users(zammad: pd.DataFrame) -> None:
    assert managed_count(zammad, "p") == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 500), st.integers(0, 2000), st.integers(0, 600))
def test_no_deactivation_ever_passes_an_empty_read(deactivations: int, managed: int, approved: int) -> None:
    verdict = evaluate(_plan(deactivations), managed, {"IT": 0}, LIMITS, approved)
    if managed and deactivations:
        assert verdict.blocked


def test_the_threshold_counts_what_is_deactivated_now_not_the_users_in_their_grace_period() -> None:
    """40 leavers in their grace period and 3 whose period is over: only the 3 are judged."""
    plan = pd.DataFrame({"action": ["grace"] * 40 + ["deactivate"] * 3 + ["opted_out"] * 9 + ["noop"] * 948})
    verdict = evaluate(plan, managed=1000, members_per_group={"IT": 960}, limits=LIMITS)
    assert not verdict.blocked and verdict.deactivations == 3
    over = pd.DataFrame({"action": ["grace"] * 2 + ["deactivate"] * 6 + ["noop"] * 992})
    assert evaluate(over, managed=1000, members_per_group={"IT": 994}, limits=LIMITS).deactivations == 6
