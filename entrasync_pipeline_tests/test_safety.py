"""Safety rules: an empty or partial read never deactivates; thresholds block until approved."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ],
    ids=["count-over", "count-at-limit", "share-over", "share-at-limit", "single-leaver-small-tenant"],
)
def test_thresholds(deactivations: int, managed: int, blocked: bool) -> None:
    verdict = evaluate(_plan(deactivations), managed, {"IT": managed}, LIMITS)
    assert verdict.blocked is blocked


def test_an_empty_read_blocks_even_with_approval() -> None:
    verdict = evaluate(_plan(40), managed=40, members_per_group={"IT": 0, "Sales": 0}, limits=LIMITS, approved=40)
    assert verdict.blocked and "no members" in verdict.summary


def test_an_empty_group_blocks_deactivations_unless_approved() -> None:
    plan = _plan(1, 30)
    assert evaluate(plan, 30, {"IT": 30, "Sales": 0}, LIMITS).blocked
    assert not evaluate(plan, 30, {"IT": 30, "Sales": 0}, LIMITS, approved=1).blocked


def test_approval_for_n_never_authorizes_more_than_n() -> None:
    assert evaluate(_plan(10), 1000, {"IT": 990}, LIMITS, approved=10).blocked is False
    verdict = evaluate(_plan(11), 1000, {"IT": 989}, LIMITS, approved=10)
    assert verdict.blocked and "approval for 10 does not cover them" in verdict.summary


def test_managed_count_is_this_profiles_active_keyed_users() -> None:
    zammad = pd.DataFrame(
        {
            "entra_key": ["a", "b", None, "d", "e"],
            "entrasync_profile": ["p", "p", "p", "q", "p"],
            "active": [True, False, True, True, True],
        }
    )
    assert managed_count(zammad, "p") == 2


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 500), st.integers(0, 2000), st.integers(0, 600))
def test_no_deactivation_ever_passes_an_empty_read(deactivations: int, managed: int, approved: int) -> None:
    verdict = evaluate(_plan(deactivations), managed, {"IT": 0}, LIMITS, approved)
    if managed and deactivations:
        assert verdict.blocked
