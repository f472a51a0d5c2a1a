"""The control API and fault injection of both sandbox servers (DESIGN.md §4.3)."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox

ZAMMAD_LIST = "GET /api/v1/users"
GRAPH_MEMBERS = "GET /v1.0/groups/{id}/members"


def _zammad_get(sandbox: Sandbox, http: requests.Session, path: str = "/users") -> requests.Response:
    return http.get(
        f"{sandbox.info['zammad_url']}/api/v1{path}",
        timeout=30,
        headers={"Authorization": f"Token token={sandbox.info['zammad_token']}"},
    )


@pytest.mark.parametrize("which", ["graph", "zammad"])
def test_control_api_needs_the_key(sandbox: Sandbox, http: requests.Session, which: str) -> None:
    base = sandbox.info["graph_url" if which == "graph" else "zammad_url"]
    assert http.get(f"{base}/_sandbox/stats").status_code == 401
    assert http.get(f"{base}/_sandbox/stats", headers={"X-Sandbox-Key": "wrong"}).status_code == 401


def test_stats_count_requests_per_route_template(sandbox: Sandbox, http: requests.Session) -> None:
    _zammad_get(sandbox, http)
    _zammad_get(sandbox, http, "/users/3")
    _zammad_get(sandbox, http, "/users/4")
    stats = sandbox.stats("zammad")
    assert stats["requests"] == {ZAMMAD_LIST: 1, "GET /api/v1/users/{id}": 2}
    assert stats["total"] == 3


def test_reset_restores_the_seed_and_clears_faults_and_counters(sandbox: Sandbox, http: requests.Session) -> None:
    headers = {"Authorization": f"Token token={sandbox.info['zammad_token']}"}
    http.post(f"{sandbox.info['zammad_url']}/api/v1/users", json={"email": "tmp@example.org"}, headers=headers)
    sandbox.faults("zammad", {"route": "*", "rate": 1.0, "statuses": [500]})
    sandbox.reset()
    emails = {u["email"] for u in sandbox.state("zammad")["users"]}
    assert "tmp@example.org" not in emails
    assert _zammad_get(sandbox, http).status_code == 200
    assert sandbox.stats("zammad")["total"] == 1


def test_state_shows_everything_the_server_holds(sandbox: Sandbox) -> None:
    graph, zammad = sandbox.state("graph"), sandbox.state("zammad")
    assert graph["tenant_id"] == sandbox.info["tenant_id"] and graph["objects"] and graph["groups"]
    assert {u["id"] for u in zammad["users"]} >= {1, 2, 3, 4}


def test_a_fault_rule_matches_its_route_and_rate(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults("zammad", {"route": ZAMMAD_LIST, "rate": 1.0, "statuses": [502]})
    failed = _zammad_get(sandbox, http)
    assert failed.status_code == 502 and failed.headers["Content-Type"] == "text/html"
    assert _zammad_get(sandbox, http, "/users/3").status_code == 200
    sandbox.control("DELETE", "zammad", "faults")
    assert _zammad_get(sandbox, http).status_code == 200


def test_fault_rate_is_a_share(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults("zammad", {"route": "*", "rate": 0.3, "statuses": [500]}, seed=1)
    statuses = [_zammad_get(sandbox, http, "/users/3").status_code for _ in range(100)]
    assert 15 <= statuses.count(500) <= 45
    assert sandbox.stats("zammad")["faults_injected"] == statuses.count(500)


@pytest.mark.parametrize(
    "retry_after, check",
    [
        (2, lambda v: v == "2"),
        (2.5, lambda v: v == "2.5"),
        ("http-date", lambda v: email.utils.parsedate_to_datetime(v).timestamp() > time.time()),
    ],
    ids=["integer", "fractional", "http-date"],
)
def test_retry_after_forms(sandbox: Sandbox, http: requests.Session, retry_after: object, check) -> None:
    sandbox.faults("graph", {"route": GRAPH_MEMBERS, "rate": 1.0, "statuses": [429], "retry_after": retry_after})
    token = sandbox.sync_token()
    response = http.get(
        f"{sandbox.info['graph_url']}/v1.0/groups/{sandbox.info['groups']['Sales']}/members",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert check(response.headers["Retry-After"])


def test_punish_early_retry_throttles_a_retry_before_retry_after(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults(
        "zammad", {"route": ZAMMAD_LIST, "rate": 0.0, "statuses": [429], "retry_after": 0.5, "punish_early_retry": True}
    )
    # rate 0: nothing fails until a throttle window exists; open one with a rule at rate 1 first.
    sandbox.faults(
        "zammad",
        {"route": ZAMMAD_LIST, "rate": 1.0, "statuses": [429], "retry_after": 0.5, "punish_early_retry": True},
        seed=3,
    )
    assert _zammad_get(sandbox, http).status_code == 429
    early = _zammad_get(sandbox, http)
    assert early.status_code == 429
    assert sandbox.stats("zammad")["early_retries"] == 1


def test_a_patient_client_is_not_punished(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults(
        "zammad",
        {"route": ZAMMAD_LIST, "rate": 0.5, "statuses": [429], "retry_after": 0.3, "punish_early_retry": True},
        seed=5,
    )
    for _ in range(6):
        response = _zammad_get(sandbox, http)
        if response.status_code == 429:
            time.sleep(float(response.headers["Retry-After"]) + 0.05)
    assert sandbox.stats("zammad")["early_retries"] == 0


def test_reset_drops_the_connection(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults("zammad", {"route": ZAMMAD_LIST, "rate": 1.0, "reset": True})
    with pytest.raises(requests.exceptions.ConnectionError):
        _zammad_get(sandbox, http)


def test_truncated_json_body(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults("zammad", {"route": ZAMMAD_LIST, "rate": 1.0, "truncate": True})
    response = _zammad_get(sandbox, http)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_latency_applies_to_every_matching_request(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults("zammad", {"route": ZAMMAD_LIST, "latency_ms": [200, 200]})
    started = time.monotonic()
    assert _zammad_get(sandbox, http).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_token_endpoint_faults_are_entra_shaped(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.faults(
        "graph", {"route": "POST /{tenant}/oauth2/v2.0/token", "rate": 1.0, "statuses": [503], "retry_after": 1}
    )
    response = http.post(f"{sandbox.info['authority']}/oauth2/v2.0/token", data={})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "temporarily_unavailable"


def test_invalid_fault_rules_are_refused(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.put(
        f"{sandbox.info['zammad_url']}/_sandbox/faults",
        json={"rules": [{"statuses": [418]}]},
        headers={"X-Sandbox-Key": sandbox.info["control_key"]},
    )
    assert response.status_code == 400
