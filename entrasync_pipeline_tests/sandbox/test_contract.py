"""Contract tests: the emulators answer like the real recorded responses in ../shared/fixtures.

Zammad: decoded zammad_py cassettes and zammadoo logs (real Zammad 6.x). Graph: the v1.0
documentation's example responses. Same keys, types, nullability and status codes; values that
are instance-specific (ids, timestamps, tokens) are compared by type only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests

from entrasync_pipeline.sandbox.graph_delta import USERS_DELTA_PAGE
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.sandbox.conftest import GraphCaller

FIXTURES = Path(os.environ.get("ENTRASYNC_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "fixtures"))
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared fixtures not found at {FIXTURES}")


def _load(kind: str, name: str) -> Any:
    return json.loads((FIXTURES / kind / name).read_text())


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _same_shape(real: dict[str, Any], ours: dict[str, Any], ignore: set[str] = frozenset()) -> None:
    missing = set(real) - set(ours) - ignore
    assert not missing, f"keys missing in the emulator: {sorted(missing)}"
    for key in set(real) - ignore:
        assert _type_name(real[key]) == _type_name(ours[key]), (key, real[key], ours[key])


@pytest.fixture
def zammad(sandbox: Sandbox, http: requests.Session):
    def call(method: str, uri: str, body: Any = None) -> requests.Response:
        return http.request(
            method,
            f"{sandbox.info['zammad_url']}{uri}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Token token={sandbox.info['zammad_token']}"},
        )

    return call


def test_zammad_create_update_matches_zammad_py_recording(zammad) -> None:
    recorded = _load("zammad", "zammad_py_test_users.json")
    create, update = recorded[3], recorded[4]
    response = zammad("POST", "/api/v1/users", create["request"]["body"])
    assert response.status_code == create["response"]["status"] == 201
    ours = response.json()
    _same_shape(create["response"]["body"], ours)
    assert set(ours) == set(create["response"]["body"])
    for key in ("email", "department", "address", "role_ids", "group_ids", "active", "firstname", "lastname"):
        assert ours[key] == create["response"]["body"][key], key
    assert ours["login"].startswith("auto-")
    updated = zammad("PUT", f"/api/v1/users/{ours['id']}", update["request"]["body"])
    assert updated.status_code == update["response"]["status"] == 200
    _same_shape(update["response"]["body"], updated.json())
    assert updated.json()["firstname"] == "TestUser1"


def test_zammad_seeded_customer_matches_the_recorded_list_entry(zammad) -> None:
    recorded = _load("zammad", "zammad_py_test_users.json")[0]
    nicole = next(u for u in recorded["response"]["body"] if u["id"] == 2)
    ours = next(u for u in zammad("GET", "/api/v1/users?page=1&per_page=10&expand=true").json() if u["id"] == 2)
    _same_shape(nicole, ours, ignore={"preferences"})
    for key in ("login", "email", "department", "address", "roles", "organization", "created_by", "role_ids"):
        assert ours[key] == nicole[key], key
    system = recorded["response"]["body"][0]
    assert {
        k: v for k, v in zammad("GET", "/api/v1/users/1").json().items() if k in ("login", "firstname", "active")
    } == {k: system[k] for k in ("login", "firstname", "active")}


def test_zammad_expanded_users_omit_an_unset_organization_like_the_recording(zammad) -> None:
    recorded = _load("zammad", "zammad_py_test_users.json")[0]["response"]["body"]
    real_without = [u for u in recorded if u["organization_id"] is None]
    assert real_without and not any("organization" in u for u in real_without)
    ours = zammad("GET", "/api/v1/users?page=1&per_page=10&expand=true").json()
    assert [set(u) - {"organization"} == set(u) for u in ours] == [u["organization_id"] is None for u in ours]
    system_real, system_ours = recorded[0], ours[0]
    assert set(system_real) - {"preferences"} <= set(system_ours)
    assert not set(system_ours) - set(system_real)


def test_zammad_pagination_recording_replays(zammad) -> None:
    recorded = _load("zammad", "zammad_py_test_pagination.json")
    created = []
    for interaction in recorded[:5]:
        response = zammad("POST", "/api/v1/users", interaction["request"]["body"])
        assert response.status_code == interaction["response"]["status"]
        body, real = response.json(), interaction["response"]["body"]
        assert (body["login"], body["firstname"], body["lastname"]) == (
            real["login"],
            real["firstname"],
            real["lastname"],
        )
        created.append(body["id"])
    total = len(zammad("GET", "/api/v1/users?per_page=1000").json())
    last_page = (total + 1) // 2
    assert zammad("GET", f"/api/v1/users?per_page=2&expand=true&page={last_page + 1}").json() == []
    for user_id, interaction in zip(created, recorded[-5:]):
        response = zammad("DELETE", f"/api/v1/users/{user_id}")
        assert (response.status_code, response.json()) == (
            interaction["response"]["status"],
            interaction["response"]["body"],
        )


def test_zammad_explicit_nulls_match_zammadoo_recording(zammad) -> None:
    recorded = _load("zammad", "zammadoo_test_create_user.json")[0]
    ours = zammad("POST", "/api/v1/users", recorded["request"]["body"]).json()
    _same_shape(recorded["response"]["body"], ours, ignore=set())
    assert ours["email"] is None and ours["phone"] is None and ours["mobile"] == ""


@pytest.mark.parametrize(
    "name", ["zammadoo_test_raise_if_user_cannot_be_found.json", "zammadoo_test_raise_api_exception.json"]
)
def test_zammad_error_bodies_match_recordings(zammad, name: str) -> None:
    for interaction in _load("zammad", name):
        uri = interaction["request"]["uri"].split("?")[0]
        response = zammad(interaction["request"]["method"], uri)
        assert response.status_code == interaction["response"]["status"]
        assert response.json() == interaction["response"]["body"]


# --- Graph ----------------------------------------------------------------------------------------------
@pytest.fixture
def graph(sandbox: Sandbox, http: requests.Session):
    token = sandbox.sync_token()

    def get(path: str) -> requests.Response:
        return http.get(f"{sandbox.info['graph_url']}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    return get


def test_graph_user_default_properties_match_user_get(graph, sandbox: Sandbox) -> None:
    real = _load("graph", "user-get__1.json")["body"]
    user_id = next(iter(sandbox.state("graph")["objects"]))
    ours = graph(f"/v1.0/users/{user_id}").json()
    assert set(ours) - {"@odata.context"} == set(real) - {"@odata.context"}
    for key in real:
        if key != "@odata.context":
            assert _type_name(ours[key]) in (_type_name(real[key]), "null"), key


def test_graph_unset_properties_match_the_room_account_listing(graph, sandbox: Sandbox) -> None:
    real = _load("graph", "user-list__1.json")["body"]["value"][0]
    assert real["businessPhones"] == [] and real["givenName"] is None
    ulf = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("displayName") == "Ulf Unlisted")
    ours = graph(f"/v1.0/users/{ulf}").json()
    assert ours["businessPhones"] == [] and ours["mobilePhone"] is None and ours["jobTitle"] is None


def test_graph_member_listing_shape_matches_the_docs(graph, sandbox: Sandbox) -> None:
    real = _load("graph", "group-list-members__1.json")["body"]
    ours = graph(f"/v1.0/groups/{sandbox.info['groups']['Sales']}/members").json()
    assert ours["@odata.context"].endswith(real["@odata.context"].split("/v1.0")[1])
    assert set(real["value"][0]) <= set(ours["value"][0])
    transitive = _load("graph", "group-list-transitivemembers__1.json")["body"]["value"][0]
    assert set(transitive) <= set(ours["value"][0]) and ours["value"][0]["@odata.type"] == transitive["@odata.type"]
    cast = _load("graph", "group-list-members__2.json")["body"]
    ours_cast = graph(
        f"/v1.0/groups/{sandbox.info['groups']['Sales']}/members/microsoft.graph.user?$select=displayName,id"
    ).json()
    assert ours_cast["@odata.context"].endswith(cast["@odata.context"].split("/v1.0")[1])


def test_graph_search_with_count_matches_the_docs(sandbox: Sandbox, http: requests.Session) -> None:
    """user-list.md Example 6 without its $orderby (refused by the sandbox: docs/sandbox.md)."""
    real = _load("graph", "user-list__5.json")
    query = real["request"].split("?", 1)[1].replace("&$orderby=displayName", "")
    ours = http.get(
        f"{sandbox.info['graph_url']}/v1.0/users?{query.replace('displayName:wa', 'displayName:schmid')}",
        headers={"Authorization": f"Bearer {sandbox.sync_token()}", **real["request_headers"]},
        timeout=30,
    ).json()
    assert set(ours) == set(real["body"]) and ours["@odata.count"] == len(ours["value"]) == 1
    assert set(real["body"]["value"][0]) <= set(ours["value"][0])


def test_graph_throttling_body_matches_the_docs(sandbox: Sandbox, graph) -> None:
    real = _load("graph", "throttling__1.json")["body"]
    sandbox.faults("graph", {"route": "GET /v1.0/users/{id}", "rate": 1.0, "statuses": [429], "retry_after": 2.128})
    response = graph("/v1.0/users/x")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2.128"
    ours = response.json()
    assert set(ours["error"]) == set(real["error"])
    assert set(ours["error"]["innerError"]) >= set(real["error"]["innerError"])
    assert ours["error"]["code"] == real["error"]["code"] and ours["error"]["message"] == real["error"]["message"]


def test_graph_error_body_matches_the_documented_shape(graph) -> None:
    real = _load("graph", "errors__1.json")["body"]
    ours = graph("/v1.0/groups/00000000-0000-0000-0000-000000000000/members").json()
    assert set(ours) == set(real) and set(real["error"]) <= set(ours["error"])
    assert set(real["error"]["innerError"]) <= set(ours["error"]["innerError"])


def test_graph_delta_shapes_match_the_docs(graph, sandbox: Sandbox) -> None:
    initial = _load("graph", "delta-query-groups__1.json")["body"]
    changes = _load("graph", "delta-query-groups__5.json")["body"]
    sales = sandbox.info["groups"]["Sales"]
    first = graph(f"/v1.0/groups/delta?$filter=id eq '{sales}'&$select=displayName,description,members").json()
    assert first["@odata.context"].endswith("$metadata#groups(displayName,description)")
    ours_group = first["value"][0]
    real_group = initial["value"][0]
    assert set(real_group) == set(ours_group)
    assert set(real_group["members@delta"][0]) == set(ours_group["members@delta"][0])
    removed = next(m for m in changes["value"][0]["members@delta"] if "@removed" in m)
    assert removed["@removed"] == {"reason": "deleted"}
    assert "@odata.deltaLink" in first and "$deltatoken=" in first["@odata.deltaLink"]


# --- Graph delta queries: users/delta, groups/delta ------------------------------------------------------
@pytest.fixture
def api(sandbox: Sandbox, http: requests.Session) -> GraphCaller:
    return GraphCaller(sandbox, http, sandbox.sync_token())


def _same_keys_and_types(real: dict[str, Any], ours: dict[str, Any], always: set[str] = frozenset({"id"})) -> None:
    """The documented item's keys (plus ``id``, which delta always returns; the doc examples are
    shortened); a value the docs show is of the same type in ours, a documented null may hold one."""
    assert set(ours) == set(real) | always, (sorted(ours), sorted(real))
    for key, value in real.items():
        if value is not None:
            assert _type_name(ours[key]) == _type_name(value), (key, value, ours[key])


def _page_keys(page: dict[str, Any]) -> set[str]:
    return set(page) - {"@odata.nextLink", "@odata.deltaLink"}


def _set_all_default_properties(api: GraphCaller) -> str:
    user = api.user_in("Finance")
    changes = {
        "businessPhones": ["+1 425 555 0109"],
        "jobTitle": "Retail Manager",
        "mobilePhone": "+1 425 555 0109",
        "officeLocation": "18/2111",
        "preferredLanguage": "en-US",
    }
    assert api.write("PATCH", f"/users/{user}", changes).status_code == 204
    return user


def test_graph_user_delta_default_page_matches_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "user-delta__1.json")["body"]
    user = _set_all_default_properties(api)
    api.create_users(USERS_DELTA_PAGE)  # a second page, so the first carries a nextLink as in the doc
    first = api.get("/users/delta").json()
    assert set(first) == set(real) and first["@odata.context"].endswith("$metadata#users")
    assert "/v1.0/users/delta?$skiptoken=" in first["@odata.nextLink"]
    items, _, _ = api.delta_round("/users/delta")
    ours = next(i for i in items if i["id"] == user)
    _same_keys_and_types(real["value"][0], ours)


def test_graph_user_delta_select_matches_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "user-delta__2.json")
    select = real["request"].split("$select=")[1]
    user = api.user_in("Finance")
    api.write("PATCH", f"/users/{user}", {"jobTitle": "Retail Manager"})
    items, _, pages = api.delta_round(f"/users/delta?$select={select}")
    assert _page_keys(pages[0]) == _page_keys(real["body"])
    _same_keys_and_types(real["body"]["value"][0], next(i for i in items if i["id"] == user))


def test_graph_user_delta_minimal_matches_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "user-delta__3.json")
    select = real["request"].split("$select=")[1]
    link = api.get("/users/delta", select=select, deltatoken="latest").json()["@odata.deltaLink"]
    user = api.user_in("Finance")
    api.write("PATCH", f"/users/{user}", {"displayName": "Vance Adele", "jobTitle": "Product Marketing Manager"})
    items, _, _ = api.delta_round(link, headers=real["request_headers"])
    assert len(items) == 1
    _same_keys_and_types(real["body"]["value"][0], items[0])


def test_graph_user_delta_removed_matches_the_concept_page(api: GraphCaller) -> None:
    # delta-query-users.md: {"id": …, "@removed": {"reason": "changed" | "deleted"}} and nothing else
    link = api.get("/users/delta", select="displayName", deltatoken="latest").json()["@odata.deltaLink"]
    user = api.user_in("Finance")
    api.write("DELETE", f"/users/{user}")
    items, _, _ = api.delta_round(link)
    assert items == [{"id": user, "@removed": {"reason": "changed"}}]


def test_graph_group_delta_default_properties_match_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "group-delta__1.json")["body"]
    sales = api.group("Sales")
    first = api.get("/groups/delta", filter=f"id eq '{sales}'").json()
    assert _page_keys(first) == _page_keys(real) and first["@odata.context"].endswith("$metadata#groups")
    ours = first["value"][0]
    # The doc's item omits id (shortened); every other key is there with the documented type.
    _same_keys_and_types(real["value"][0], ours, always={"id", "mailEnabled", "mailNickname", "securityEnabled"})
    assert set(ours["members@delta"][0]) == set(real["value"][0]["members@delta"][0])


def test_graph_group_delta_select_and_minimal_match_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "group-delta__2.json")
    select = real["request"].split("$select=")[1]
    sales = api.group("Sales")
    first = api.get("/groups/delta", filter=f"id eq '{sales}'", select=select).json()
    _same_keys_and_types(real["body"]["value"][0], first["value"][0])
    minimal = _load("graph", "group-delta__3.json")
    link = api.get("/groups/delta", filter=f"id eq '{sales}'", select=f"{select},members", deltatoken="latest").json()[
        "@odata.deltaLink"
    ]
    api.write("POST", f"/groups/{sales}/members/$ref", api.member_ref(api.user_in("Finance")))
    items, _, _ = api.delta_round(link, headers=minimal["request_headers"])
    # Only what changed: the sandbox cannot change group properties, so members@delta alone.
    assert set(items[0]) <= set(minimal["body"]["value"][0]) | {"id", "members@delta"}
    assert set(items[0]) == {"id", "members@delta"}


def test_graph_group_delta_idle_round_matches_the_docs(api: GraphCaller) -> None:
    real = _load("graph", "delta-query-groups__4.json")["body"]
    _, link, _ = api.delta_round(f"/groups/delta?$filter=id eq '{api.group('Sales')}'&$select=members")
    quiet = api.get(link).json()
    assert set(quiet) == set(real) and quiet["value"] == real["value"] == []


def test_graph_group_delta_large_group_pages_match_the_docs(api: GraphCaller) -> None:
    first_real = _load("graph", "delta-query-groups__6.json")["body"]
    second_real = _load("graph", "delta-query-groups__7.json")["body"]
    sales = api.group("Sales")
    for start in range(0, 520, 20):  # grow Sales past one page of members@delta
        ids = api.create_users(20, prefix=f"big{start}x")
        steps = [
            {
                "id": str(n),
                "method": "POST",
                "url": f"/groups/{sales}/members/$ref",
                "headers": {"Content-Type": "application/json"},
                "body": api.member_ref(user),
            }
            for n, user in enumerate(ids)
        ]
        assert all(r["status"] == 204 for r in api.batch(steps, token=api.admin_token).json()["responses"])
    items, _, pages = api.delta_round(f"/groups/delta?$filter=id eq '{sales}'&$select=displayName,description,members")
    assert len(pages) >= 2 and set(pages[0]) == set(first_real) and _page_keys(pages[1]) == _page_keys(second_real)
    for page, real in ((pages[0], first_real), (pages[1], second_real)):
        assert [set(i) for i in page["value"]] == [set(real["value"][0])]  # the group fills the whole page
    assert len({m["id"] for i in items for m in i["members@delta"]}) == 29 + 520
