"""JSON batching behaves like Graph's ``$batch`` (concepts/json-batching.md).

Each step is served like a request on the wire (same roles, errors, headers and fault rules), a
step can fail or be throttled on its own while the batch answers 200, responses come back in an
order of the server's choosing, and what Graph refuses for the whole batch is refused before any
step runs. The counters show the batch as one request and its steps apart.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.sandbox.conftest import GraphCaller, assert_graph_error

USER = "GET /v1.0/users/{id}"


def _get(step_id: str, url: str) -> dict[str, Any]:
    return {"id": step_id, "method": "GET", "url": url}


def _responses(response: requests.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {r["id"]: r for r in response.json()["responses"]}


def test_steps_answer_like_direct_requests(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    steps = [
        _get("a", f"/users/{user}?$select=id,mail,department"),
        _get("b", f"users/{user}/memberOf?$select=id"),
        {
            "id": "c",
            "method": "POST",
            "url": f"/users/{user}/checkMemberGroups",
            "headers": {"Content-Type": "application/json"},
            "body": {"groupIds": [graph.group("Sales")]},
        },
    ]
    response = graph.batch(steps)
    assert response.headers["Content-Type"].startswith("application/json")
    by_id = _responses(response)
    assert [r["id"] for r in response.json()["responses"]] != ["a", "b", "c"]  # any order, as Graph may
    direct = graph.get(f"/users/{user}", select="id,mail,department")
    assert by_id["a"]["status"] == 200 and by_id["a"]["body"] == direct.json()
    assert by_id["a"]["headers"]["x-ms-resource-unit"] == direct.headers["x-ms-resource-unit"]
    assert by_id["a"]["headers"]["Content-Type"].startswith("application/json")
    assert by_id["b"]["body"]["value"] == [] and by_id["c"]["body"]["value"] == []


def test_a_missing_user_is_a_404_step_in_a_200_batch(graph: GraphCaller) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    by_id = _responses(graph.batch([_get("1", f"/users/{missing}"), _get("2", f"/users/{graph.user_in('Finance')}")]))
    assert by_id["1"]["status"] == 404 and by_id["2"]["status"] == 200
    error = by_id["1"]["body"]["error"]
    assert error["code"] == "Request_ResourceNotFound" and missing in error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}


def test_a_step_gets_its_own_429_and_the_counters_see_batch_and_steps(graph: GraphCaller, sandbox: Sandbox) -> None:
    sandbox.faults("graph", {"route": USER, "rate": 1.0, "statuses": [429], "retry_after": 3})
    user = graph.user_in("Finance")
    by_id = _responses(graph.batch([_get("1", f"/users/{user}"), _get("2", f"/users/{user}/memberOf")]))
    assert by_id["1"]["status"] == 429 and by_id["1"]["headers"]["Retry-After"] == "3"
    assert by_id["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["2"]["status"] == 200
    stats = sandbox.stats("graph")
    graph_requests = {k: v for k, v in stats["requests"].items() if "/v1.0/" in k}  # the token's request aside
    assert graph_requests == {"POST /v1.0/$batch": 1}
    assert stats["embedded"] == {USER: 1, "GET /v1.0/users/{id}/memberOf": 1}
    assert stats["faults_injected"] == 1


def test_more_than_20_steps_fail_the_whole_batch(graph: GraphCaller, sandbox: Sandbox) -> None:
    user = graph.user_in("Finance")
    assert graph.batch([_get(str(i), f"/users/{user}") for i in range(20)]).status_code == 200
    error = assert_graph_error(graph.batch([_get(str(i), f"/users/{user}") for i in range(21)]), 400, "BadRequest")
    assert error["message"] == "Number of requests inside batch exceeds the limit."
    assert sandbox.stats("graph")["embedded"] == {USER: 20}


@pytest.mark.parametrize(
    "steps, words",
    [
        ([{"id": "1", "method": "POST", "url": "/users", "body": {}}], "does not contain Content-Type header or body"),
        ([_get("1", "/users"), _get("1", "/groups")], "duplicate"),
        ([{**_get("1", "/users"), "dependsOn": ["9"]}], "unknown"),
        ([{"id": "1", "url": "/users"}], "Invalid batch payload"),
        ([], "Invalid batch payload"),
    ],
    ids=["write-without-content-type", "duplicate-id", "unknown-dependency", "no-method", "empty"],
)
def test_malformed_batches_are_refused_before_any_step_runs(
    graph: GraphCaller, sandbox: Sandbox, steps: list[dict[str, Any]], words: str
) -> None:
    error = assert_graph_error(graph.batch(steps), 400, "BadRequest")
    assert words in error["message"]
    assert sandbox.stats("graph")["embedded"] == {}


def test_a_step_depending_on_a_failed_step_is_424(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    steps = [
        {**_get("2", f"/users/{user}"), "dependsOn": ["1"]},
        _get("1", "/users/00000000-0000-0000-0000-000000000000"),
        {**_get("3", f"/users/{user}"), "dependsOn": ["2"]},
    ]
    by_id = _responses(graph.batch(steps))
    assert [by_id[i]["status"] for i in ("1", "2", "3")] == [404, 424, 424]


@pytest.mark.parametrize("url", ["/$batch", "https://graph.microsoft.com/v1.0/users"], ids=["nested", "absolute"])
def test_nested_batches_and_absolute_urls_are_refused_steps(graph: GraphCaller, url: str) -> None:
    step = {"id": "1", "method": "POST", "url": url, "headers": {"Content-Type": "application/json"}, "body": {}}
    if url.startswith("https"):
        step = _get("1", url)
    by_id = _responses(graph.batch([step]))
    assert by_id["1"]["status"] == 400 and by_id["1"]["body"]["error"]["code"] == "BadRequest"


def test_steps_keep_the_batch_tokens_roles(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    step = {
        "id": "1",
        "method": "PATCH",
        "url": f"/users/{user}",
        "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {graph.admin_token}"},
        "body": {"department": "Audit"},
    }
    by_id = _responses(graph.batch([step]))  # the sync app's token: read-only, whatever the step says
    assert by_id["1"]["status"] == 403 and by_id["1"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert graph.get(f"/users/{user}", select="department").json()["department"] == "Finance"


def test_a_batch_without_a_token_is_401(graph: GraphCaller, http: requests.Session) -> None:
    response = http.post(graph.url("/$batch"), json={"requests": [_get("1", "/users")]}, timeout=30)
    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_a_wire_fault_on_a_step_hits_the_whole_batch(graph: GraphCaller, sandbox: Sandbox) -> None:
    sandbox.faults("graph", {"route": USER, "rate": 1.0, "statuses": [502], "html": True})
    response = graph.batch([_get("1", f"/users/{graph.user_in('Finance')}")])
    assert response.status_code == 502 and response.headers["Content-Type"] == "text/html"
