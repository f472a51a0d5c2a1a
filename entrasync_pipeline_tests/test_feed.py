"""What a change-feed position was taken for (``watch_key``): another scope means another baseline,
and a profile without scope rules keeps the key it had before they existed (no needless full run)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from entrasync_pipeline.feed import watch_key
from entrasync_pipeline.settings import ProfileSettings

GUID = "9a0f1b7c-0000-4000-8000-000000000001"


def _profile(**extra: Any) -> ProfileSettings:
    return ProfileSettings(
        entra={"tenant_id": GUID, "client_id": GUID},
        groups=[{"id": GUID}],
        zammad={"url": "https://helpdesk.example.com"},
        **extra,
    )


def test_without_scope_rules_the_key_is_the_one_before_scope_rules_existed() -> None:
    profile = _profile()
    before = json.dumps([[GUID], "direct", profile.graph_select(), profile.entra.graph_url])
    assert watch_key(profile) == hashlib.sha256(before.encode()).hexdigest()[:16]


def test_other_scope_rules_are_another_baseline() -> None:
    guests = _profile(scope={"exclude": [{"attribute": "userType", "equals": "Guest"}]})
    members = _profile(scope={"exclude": [{"attribute": "userType", "equals": "Member"}]})
    assert len({watch_key(_profile()), watch_key(guests), watch_key(members)}) == 3
