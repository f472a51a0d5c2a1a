"""GraphClient against the sandbox over TLS: msal tokens, every page, retries, 401 refresh, delta."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from entrasync_pipeline.entra.credential import EntraCredential
from entrasync_pipeline.entra.errors import DeltaResetRequired, EntraAuthError, GraphNotFoundError, GraphResponseError
from entrasync_pipeline.entra.graph import GraphClient
from entrasync_pipeline.settings import EntraCredentialMaterial, EntraSettings, HttpSettings, SecretValue
from entrasync_pipeline.transport import Transport
from entrasync_pipeline_tests.conftest import Sandbox, start_sandbox_process, stop_process

MEMBERS = "GET /v1.0/groups/{id}/members"
SELECT = ["id", "mail", "displayName", "accountEnabled", "department"]
FAST = HttpSettings(backoff_base_s=0.05, backoff_max_s=0.5)


def _client(info: dict, secret: str | None = None, http: HttpSettings = FAST) -> GraphClient:
    entra = EntraSettings(
        tenant_id=info["tenant_id"],
        client_id=info["sync_app"]["client_id"],
        credential="secret",
        authority_host=info["graph_url"],
        graph_url=info["graph_url"],
    )
    material = EntraCredentialMaterial("secret", secret=SecretValue(secret or info["sync_app"]["client_secret"], "S"))
    transport = Transport(http, info["ca_bundle"], "graph")
    return GraphClient(entra, EntraCredential(entra, material, transport), transport)


@pytest.fixture
def graph(sandbox: Sandbox) -> Iterator[GraphClient]:
    with _client(sandbox.info) as client:
        yield client


@pytest.fixture(scope="module")
def big_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    state = tmp_path_factory.mktemp("big")
    proc, info = start_sandbox_process(state, seed="bench:2100:0")
    yield Sandbox(info, state)
    stop_process(proc)


def test_every_page_is_read_with_top_999(big_sandbox: Sandbox) -> None:
    big_sandbox.reset()
    group = big_sandbox.info["groups"]["All Staff"]
    with _client(big_sandbox.info) as client:
        items = list(client.group_members(group, SELECT))
    assert len(items) == len({i["id"] for i in items}) == 2100
    assert big_sandbox.stats("graph")["requests"][MEMBERS] == 3  # ceil(2100 / 999)
    assert set(items[0]) == {"@odata.type", *SELECT}


def test_transitive_members_include_nested_groups(sandbox: Sandbox, graph: GraphClient) -> None:
    direct = list(graph.group_members(sandbox.info["groups"]["IT Support"], SELECT))
    flat = list(graph.group_members(sandbox.info["groups"]["IT Support"], SELECT, transitive=True))
    assert (
        len([i for i in flat if i["@odata.type"].endswith("user")])
        == len([i for i in direct if i["@odata.type"].endswith("user")]) + 6
    )


def test_throttling_is_survived_without_a_single_early_retry(sandbox: Sandbox, graph: GraphClient) -> None:
    sandbox.faults(
        "graph", {"route": MEMBERS, "rate": 0.5, "statuses": [429, 503], "retry_after": 0.2, "punish_early_retry": True}
    )
    for _ in range(4):
        assert len(list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))) == 29
    stats = sandbox.stats("graph")
    assert stats["faults_injected"] > 0 and stats["early_retries"] == 0


@pytest.mark.parametrize("retry_after", [1, 0.4, "http-date"], ids=["integer", "fractional", "http-date"])
def test_retry_after_is_honoured_in_every_form(sandbox: Sandbox, graph: GraphClient, retry_after: object) -> None:
    sandbox.faults(
        "graph",
        {"route": MEMBERS, "rate": 0.6, "statuses": [429], "retry_after": retry_after, "punish_early_retry": True},
        seed=11,
    )
    assert len(list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))) == 29
    assert sandbox.stats("graph")["early_retries"] == 0


def test_server_errors_resets_and_truncated_bodies_are_retried(sandbox: Sandbox, graph: GraphClient) -> None:
    for rule in ({"statuses": [500, 502, 504]}, {"reset": True}, {"truncate": True}, {"html": True, "statuses": [502]}):
        sandbox.faults("graph", {"route": MEMBERS, "rate": 0.5, **rule}, seed=3)
        assert len(list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))) == 29


def test_token_endpoint_faults_are_retried(sandbox: Sandbox) -> None:
    sandbox.faults(
        "graph",
        {"route": "POST /{tenant}/oauth2/v2.0/token", "rate": 0.7, "statuses": [503, 429], "retry_after": 0.1},
        seed=2,
    )
    with _client(sandbox.info) as client:
        client.credential.drop_cached_token()
        assert len(list(client.group_members(sandbox.info["groups"]["Sales"], SELECT))) == 29


def test_a_revoked_token_is_replaced_once(sandbox: Sandbox, graph: GraphClient) -> None:
    list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))
    sandbox.control("POST", "graph", "tokens/revoke")
    assert len(list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))) == 29


def test_wrong_secret_is_an_entra_auth_error_without_the_secret(sandbox: Sandbox) -> None:
    with _client(sandbox.info, secret="wrong-secret-value") as client, pytest.raises(EntraAuthError) as info:
        list(client.group_members(sandbox.info["groups"]["Sales"], SELECT))
    assert info.value.error == "invalid_client" and "wrong-secret-value" not in str(info.value)


def test_unknown_group_is_not_found(graph: GraphClient) -> None:
    with pytest.raises(GraphNotFoundError) as info:
        list(graph.group_members("00000000-0000-0000-0000-000000000000", SELECT))
    assert info.value.code == "Request_ResourceNotFound" and info.value.request_id


def test_the_certificate_credential_works(sandbox: Sandbox) -> None:
    info = sandbox.info
    entra = EntraSettings(
        tenant_id=info["tenant_id"],
        client_id=info["sync_app"]["client_id"],
        authority_host=info["graph_url"],
        graph_url=info["graph_url"],
    )
    material = EntraCredentialMaterial(
        "certificate",
        certificate_pem=Path(info["sync_app"]["certificate_path"]).read_text(),
        private_key=SecretValue(Path(info["sync_app"]["private_key_path"]).read_text(), "K"),
    )
    transport = Transport(FAST, info["ca_bundle"], "graph")
    with GraphClient(entra, EntraCredential(entra, material, transport), transport) as client:
        assert len(list(client.group_members(info["groups"]["Sales"], SELECT))) == 29


def test_group_delta_baseline_changes_and_reset(sandbox: Sandbox, graph: GraphClient, http) -> None:
    sales = sandbox.info["groups"]["Sales"]
    link = graph.group_delta_latest([sales])
    quiet = graph.group_delta([sales], link)
    assert not quiet.changed
    finance = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    http.post(
        f"{sandbox.info['graph_url']}/v1.0/groups/{sales}/members/$ref",
        headers={"Authorization": f"Bearer {sandbox.admin_token()}"},
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance}"},
    )
    changed = graph.group_delta([sales], quiet.delta_link)
    assert changed.changed and changed.added == {sales: {finance}}
    sandbox.control("POST", "graph", "delta/expire")
    with pytest.raises(DeltaResetRequired):
        graph.group_delta([sales], changed.delta_link)
    full = graph.group_delta([sales], None)
    assert len(full.added[sales]) == 30


def test_a_retry_after_beyond_the_bound_is_a_response_error_without_waiting(
    sandbox: Sandbox, graph: GraphClient
) -> None:
    sandbox.faults("graph", {"route": MEMBERS, "rate": 1.0, "statuses": [429], "retry_after": 3600})
    with pytest.raises(GraphResponseError) as info:
        list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))
    assert info.value.status == 429 and not isinstance(info.value, DeltaResetRequired)
    assert sandbox.stats("graph")["requests"][MEMBERS] == 1


def test_a_server_error_that_outlasts_the_retries_is_a_response_error(sandbox: Sandbox, graph: GraphClient) -> None:
    sandbox.faults("graph", {"route": MEMBERS, "rate": 1.0, "statuses": [503]})
    with pytest.raises(GraphResponseError) as info:
        list(graph.group_members(sandbox.info["groups"]["Sales"], SELECT))
    assert info.value.status == 503
    assert sandbox.stats("graph")["requests"][MEMBERS] == FAST.max_attempts


def test_deleted_users_are_those_graph_answers_404_for(sandbox: Sandbox, graph: GraphClient, http) -> None:
    """A relink rests on Graph's word that the old object is gone: a soft-deleted user and an id that
    never existed are deleted, a living user is not, and it takes one $batch request."""
    from entrasync_pipeline_tests.tenant import Admin

    members = graph.group_members(sandbox.info["groups"]["IT Support"], ["id"])
    living = [m for m in members if m["@odata.type"] == "#microsoft.graph.user"][:2]
    Admin(sandbox, http).delete(living[1]["id"])
    never = "00000000-0000-4000-8000-00000000dead"
    before = sandbox.stats("graph")["requests"].get("POST /v1.0/$batch", 0)
    assert graph.deleted_users([living[0]["id"], living[1]["id"], never]) == {living[1]["id"], never}
    assert sandbox.stats("graph")["requests"].get("POST /v1.0/$batch", 0) == before + 1
