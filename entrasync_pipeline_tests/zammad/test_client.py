"""ZammadClient against the sandbox: paging to the empty page, typed errors, which writes retry,
and values read from Zammad rather than assumed (the Admin role's id, attribute positions)."""

from __future__ import annotations

from typing import Iterator

import pytest

from entrasync_pipeline.settings import HttpSettings, SecretValue, ZammadSettings
from entrasync_pipeline.transport import Transport
from entrasync_pipeline.zammad import client as client_module
from entrasync_pipeline.zammad.client import ATTRIBUTE_POSITION_STEP, ENTRA_ATTRIBUTES, ZammadClient
from entrasync_pipeline.zammad.errors import (
    ZammadAuthError,
    ZammadResponseError,
    ZammadServerError,
    ZammadTransportError,
    ZammadValidationError,
)
from entrasync_pipeline_tests.conftest import Sandbox

FAST = HttpSettings(backoff_base_s=0.02, backoff_max_s=0.2)


def _client(sandbox: Sandbox, per_page: int = 1000, token: str | None = None) -> ZammadClient:
    settings = ZammadSettings(url=sandbox.info["zammad_url"], per_page=per_page)
    return ZammadClient(
        settings,
        SecretValue(token or sandbox.info["zammad_token"], "ZAMMAD_TOKEN"),
        Transport(FAST, sandbox.info["ca_bundle"], "zammad"),
    )


@pytest.fixture
def zammad(sandbox: Sandbox) -> Iterator[ZammadClient]:
    with _client(sandbox) as client:
        yield client


def test_pages_until_an_empty_page_even_when_the_server_caps_silently(sandbox: Sandbox) -> None:
    expected = {u["id"] for u in sandbox.state("zammad")["users"]}
    sandbox.control("PUT", "zammad", "settings", {"page_cap": 3})
    with _client(sandbox, per_page=1000) as client:
        ids = [u["id"] for u in client.iter_users()]
    assert set(ids) == expected and len(ids) == len(expected) and 1 in ids
    # 8 users capped at 3 per page: 3 + 3 + 2 (a short page is not the end) + the empty page.
    assert len(expected) == 8 and sandbox.stats("zammad")["requests"]["GET /api/v1/users"] == 4


def test_the_end_is_the_empty_page(sandbox: Sandbox) -> None:
    with _client(sandbox, per_page=4) as client:
        users = list(client.iter_users())
    assert len(users) == 8
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/users"] == 3  # 4 + 4 + empty


def test_validation_errors_keep_zammads_words(zammad: ZammadClient) -> None:
    zammad.create_user({"email": "dup@example.org"})
    with pytest.raises(ZammadValidationError) as info:
        zammad.create_user({"email": "DUP@example.org"})
    assert info.value.status == 422
    assert info.value.message == "Email address 'dup@example.org' is already used for another user."


def test_a_bad_token_is_an_auth_error_without_the_token(sandbox: Sandbox) -> None:
    with _client(sandbox, token="bad-token-value") as client, pytest.raises(ZammadAuthError) as info:
        list(client.iter_users())
    assert info.value.status == 401 and "bad-token-value" not in str(info.value)


def test_a_missing_user_is_none(zammad: ZammadClient) -> None:
    assert zammad.user(999999) is None


def test_creates_are_never_resent_blindly(sandbox: Sandbox, zammad: ZammadClient) -> None:
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 1.0, "statuses": [503]})
    with pytest.raises(ZammadServerError) as info:
        zammad.create_user({"email": "once@example.org"})
    assert info.value.ambiguous
    assert sandbox.stats("zammad")["requests"]["POST /api/v1/users"] == 1


def test_a_reset_during_a_create_is_ambiguous(sandbox: Sandbox, zammad: ZammadClient) -> None:
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 1.0, "reset": True})
    with pytest.raises(ZammadTransportError) as info:
        zammad.create_user({"email": "once@example.org"})
    assert info.value.ambiguous


def test_updates_and_reads_are_retried(sandbox: Sandbox, zammad: ZammadClient) -> None:
    user = zammad.create_user({"email": "retry@example.org"})
    sandbox.faults(
        "zammad", {"route": "*", "rate": 0.5, "statuses": [429, 500, 502, 503, 504], "retry_after": 0.05}, seed=9
    )
    for i in range(5):
        assert zammad.update_user(user["id"], {"phone": str(i)})["phone"] == str(i)
    assert len(list(zammad.iter_users())) == 9


def test_a_proxy_html_page_is_reported_as_such(sandbox: Sandbox) -> None:
    sandbox.faults("zammad", {"route": "GET /api/v1/users", "rate": 1.0, "statuses": [502], "html": True})
    with _client(sandbox) as client, pytest.raises(ZammadServerError) as info:
        list(client.iter_users())
    assert "non-JSON answer (text/html)" in info.value.message


def test_truncated_json_is_retried_then_reported(sandbox: Sandbox) -> None:
    sandbox.faults("zammad", {"route": "GET /api/v1/users", "rate": 1.0, "truncate": True})
    with _client(sandbox) as client, pytest.raises(ZammadTransportError) as info:
        list(client.iter_users())
    assert info.value.kind == "unreadable-body"
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/users"] == FAST.max_attempts


def test_find_by_attribute_is_exact(sandbox: Sandbox, zammad: ZammadClient) -> None:
    for spec in ENTRA_ATTRIBUTES:
        zammad.create_attribute(spec)
    zammad.execute_migrations()
    zammad.create_user({"email": "a@example.org", "entra_key": "k-1"})
    zammad.create_user({"email": "b@example.org", "entra_key": "k-10"})
    assert [u["email"] for u in zammad.find_by_attribute("entra_key", "k-1")] == ["a@example.org"]
    assert [u["email"] for u in zammad.find_by_email("A@example.org")] == ["a@example.org"]


def test_a_retry_after_beyond_the_bound_is_a_response_error_without_waiting(
    sandbox: Sandbox, zammad: ZammadClient
) -> None:
    sandbox.faults("zammad", {"route": "GET /api/v1/users", "rate": 1.0, "statuses": [429], "retry_after": 3600})
    with pytest.raises(ZammadResponseError) as info:
        list(zammad.iter_users())
    assert info.value.status == 429 and info.value.retry_after_s == 3600
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/users"] == 1


def test_the_admin_role_id_comes_from_zammad(zammad: ZammadClient) -> None:
    assert zammad.admin_role_ids() == frozenset({zammad.roles()["Admin"]})


def test_roles_are_read_page_by_page_until_a_short_page(
    zammad: ZammadClient, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zammad pages /roles like any model index; a first page alone would miss roles past it."""
    sandbox.control("DELETE", "zammad", "stats")
    assert zammad.roles() == {"Admin": 1, "Agent": 2, "Customer": 3}
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/roles"] == 1  # three roles: one short page
    monkeypatch.setattr(client_module, "ROLES_PER_PAGE", 2)
    sandbox.control("DELETE", "zammad", "stats")
    assert zammad.roles() == {"Admin": 1, "Agent": 2, "Customer": 3}
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/roles"] == 2


def test_organizations_are_read_page_by_page_and_a_name_taken_in_any_case_is_refused(
    zammad: ZammadClient, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/organizations is a model index like /roles: a name past the first page would be created twice."""
    created = [zammad.create_organization(name)["id"] for name in ("Fabrikam", "Northwind", "Tailspin")]
    monkeypatch.setattr(client_module, "ORGANIZATIONS_PER_PAGE", 2)
    sandbox.control("DELETE", "zammad", "stats")
    assert [o["id"] for o in zammad.iter_organizations()] == [1, *created]
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/organizations"] == 3  # 2 + 2 + an empty page
    with pytest.raises(ZammadValidationError, match="already been taken"):
        zammad.create_organization("NORTHWIND")


def test_groups_and_agent_roles_are_read_page_by_page(
    zammad: ZammadClient, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group access needs Zammad's group ids by name (inactive ones flagged) and the roles whose
    permissions include ticket.agent (expand=true names them; Admin lacks it, Agent has it)."""
    expected = {
        "Users": {"id": 1, "active": True},
        "2nd Level": {"id": 2, "active": True},
        "Service Desk": {"id": 3, "active": True},
        "Archive": {"id": 4, "active": False},
    }
    assert zammad.groups() == expected
    assert zammad.agent_role_ids() == frozenset({2})
    monkeypatch.setattr(client_module, "ROLES_PER_PAGE", 3)
    sandbox.control("DELETE", "zammad", "stats")
    assert zammad.groups() == expected
    assert sandbox.stats("zammad")["requests"]["GET /api/v1/groups"] == 2


def test_new_attributes_go_after_every_existing_one_in_order(zammad: ZammadClient) -> None:
    highest = max(a["position"] for a in zammad.user_attributes().values())
    for spec in ENTRA_ATTRIBUTES:
        zammad.create_attribute(spec)
    attributes = zammad.user_attributes()
    positions = [attributes[spec["name"]]["position"] for spec in ENTRA_ATTRIBUTES]
    assert positions == [highest + ATTRIBUTE_POSITION_STEP * i for i in range(1, len(ENTRA_ATTRIBUTES) + 1)]


def test_the_opt_out_flag_is_a_boolean_zammad_accepts_and_keeps(zammad: ZammadClient) -> None:
    """entrasync_ignore as zammad-setup creates it: a boolean with options and a default (Zammad
    refuses a boolean without them), set on a user and read back as true."""
    for spec in ENTRA_ATTRIBUTES:
        zammad.create_attribute(spec)
    zammad.execute_migrations()
    flag = zammad.user_attributes()["entrasync_ignore"]
    assert flag["data_type"] == "boolean" and flag["data_option"]["default"] is False
    user = zammad.create_user({"email": "flag@contoso.example", "firstname": "F", "lastname": "Lag"})
    assert zammad.update_user(int(user["id"]), {"entrasync_ignore": True})["entrasync_ignore"] is True
