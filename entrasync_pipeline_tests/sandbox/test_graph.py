"""The Graph emulator behaves like Microsoft Graph v1.0 (reference/microsoft-graph-and-msal.md §1–4).

Each test names one documented behaviour or quirk; removing the behaviour from the emulator
makes its test fail.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from entrasync_pipeline.sandbox.directory import USER_DEFAULT_PROPERTIES
from entrasync_pipeline_tests.conftest import Sandbox


@pytest.fixture
def graph(sandbox: Sandbox, http: requests.Session) -> "GraphCaller":
    return GraphCaller(sandbox, http, sandbox.sync_token())


class GraphCaller:
    def __init__(self, sandbox: Sandbox, http: requests.Session, token: str) -> None:
        self.sandbox, self.http, self.token = sandbox, http, token

    def get(
        self, path: str, headers: dict[str, str] | None = None, token: str | None = None, **params: Any
    ) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.sandbox.info['graph_url']}/v1.0{path}"
        auth = {"Authorization": f"Bearer {token or self.token}"}
        return self.http.get(
            url, params={f"${k}": v for k, v in params.items()} or None, headers={**auth, **(headers or {})}, timeout=30
        )

    def write(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(
            method,
            f"{self.sandbox.info['graph_url']}/v1.0{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.sandbox.admin_token()}"},
            timeout=30,
        )

    def group(self, name: str) -> str:
        return self.sandbox.info["groups"][name]

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items, response = [], self.get(path, **params)
        while True:
            body = response.json()
            items += body["value"]
            if "@odata.nextLink" not in body:
                return items
            response = self.get(body["@odata.nextLink"])


def _assert_graph_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    return error


def test_members_default_page_is_100_with_opaque_next_link_keeping_parameters(
    graph: GraphCaller, sandbox: Sandbox
) -> None:
    # Grow "Sales" past 100 members through the write API so the default page size shows.
    admin_token = sandbox.admin_token()
    for i in range(90):
        user = graph.http.post(
            f"{sandbox.info['graph_url']}/v1.0/users",
            headers={"Authorization": f"Bearer {admin_token}"},
            json={
                "accountEnabled": True,
                "displayName": f"Temp {i}",
                "mailNickname": f"temp{i}",
                "userPrincipalName": f"temp{i}@contoso.example",
                "passwordProfile": {"password": "x"},
            },
        ).json()
        graph.http.post(
            f"{sandbox.info['graph_url']}/v1.0/groups/{graph.group('Sales')}/members/$ref",
            headers={"Authorization": f"Bearer {admin_token}"},
            json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user['id']}"},
        )
    first = graph.get(f"/groups/{graph.group('Sales')}/members", select="id,mail").json()
    assert len(first["value"]) == 100
    link = urlsplit(first["@odata.nextLink"])
    query = parse_qs(link.query)
    assert query["$select"] == ["id,mail"] and "$skiptoken" in query
    assert "offset" not in link.query and not query["$skiptoken"][0].isdigit()
    rest = graph.get(first["@odata.nextLink"]).json()
    assert "@odata.nextLink" not in rest
    assert len(first["value"]) + len(rest["value"]) == 29 + 90  # seeded members (incl. a contact) + temps


def test_top_999_is_the_maximum_and_1000_is_refused(graph: GraphCaller) -> None:
    assert graph.get(f"/groups/{graph.group('Sales')}/members", top="999").status_code == 200
    error = _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", top="1000"), 400, "Request_BadRequest"
    )
    assert "Must be between 1 and 999 inclusive" in error["message"]


def test_small_top_pages_through_every_member_once(graph: GraphCaller) -> None:
    items = graph.all_pages(f"/groups/{graph.group('IT Support')}/members", top="7", select="id")
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == 25  # 20 people + 3 quirky + nested group + device; SP hidden


def test_a_tampered_skiptoken_is_refused(graph: GraphCaller) -> None:
    link = graph.get(f"/groups/{graph.group('Sales')}/members", top="5").json()["@odata.nextLink"]
    _assert_graph_error(graph.get(link[:-3] + "AAA"), 400, "Request_BadRequest")


def test_default_property_set_without_select(graph: GraphCaller) -> None:
    users = [
        i
        for i in graph.get(f"/groups/{graph.group('Sales')}/members").json()["value"]
        if i["@odata.type"] == "#microsoft.graph.user"
    ]
    assert set(users[0]) == {"@odata.type", *USER_DEFAULT_PROPERTIES}
    assert "department" not in users[0] and "accountEnabled" not in users[0]


def test_select_returns_only_selected_properties_nulls_and_empty_lists(graph: GraphCaller) -> None:
    body = graph.get(
        f"/groups/{graph.group('Sales')}/members/microsoft.graph.user",
        select="displayName,department,otherMails,accountEnabled,mobilePhone",
    ).json()
    assert body["@odata.context"].endswith(
        "$metadata#users(displayName,department,otherMails,accountEnabled,mobilePhone)"
    )
    ulf = next(u for u in body["value"] if u["displayName"] == "Ulf Unlisted")
    assert set(ulf) == {"@odata.type", "id", "displayName", "department", "otherMails", "accountEnabled", "mobilePhone"}
    assert ulf["department"] is None and ulf["mobilePhone"] is None and ulf["otherMails"] == []


def test_selecting_an_unknown_property_is_a_bad_request(graph: GraphCaller) -> None:
    _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members/microsoft.graph.user", select="shoeSize"),
        400,
        "Request_BadRequest",
    )


def test_members_mix_types_and_the_user_cast_filters_them(graph: GraphCaller) -> None:
    mixed = graph.get(f"/groups/{graph.group('IT Support')}/members", top="999").json()
    types = {i["@odata.type"] for i in mixed["value"]}
    assert types == {"#microsoft.graph.user", "#microsoft.graph.group", "#microsoft.graph.device"}
    assert mixed["@odata.context"].endswith("$metadata#directoryObjects")
    users = graph.get(f"/groups/{graph.group('IT Support')}/members/microsoft.graph.user", top="999").json()
    assert {i["@odata.type"] for i in users["value"]} == {"#microsoft.graph.user"}
    assert users["@odata.context"].endswith("$metadata#users")


def test_service_principals_are_not_listed_as_members_in_v1(graph: GraphCaller, sandbox: Sandbox) -> None:
    state = sandbox.state("graph")
    sp_ids = [i for i, o in state["objects"].items() if o["@odata.type"] == "#microsoft.graph.servicePrincipal"]
    assert sp_ids and sp_ids[0] in state["groups"][graph.group("IT Support")]
    listed = {i["id"] for i in graph.get(f"/groups/{graph.group('IT Support')}/members", top="999").json()["value"]}
    assert sp_ids[0] not in listed


def test_unsupported_cast_is_refused(graph: GraphCaller) -> None:
    _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members/microsoft.graph.application"),
        400,
        "Request_UnsupportedQuery",
    )


def test_transitive_members_flatten_nested_groups(graph: GraphCaller) -> None:
    direct = graph.get(f"/groups/{graph.group('IT Support')}/members/microsoft.graph.user", top="999").json()["value"]
    flat = graph.get(f"/groups/{graph.group('IT Support')}/transitiveMembers", top="999").json()["value"]
    flat_users = [i for i in flat if i["@odata.type"] == "#microsoft.graph.user"]
    assert len(flat_users) == len(direct) + 6
    assert any(i["@odata.type"] == "#microsoft.graph.group" for i in flat)
    cost_header = graph.get(f"/groups/{graph.group('IT Support')}/transitiveMembers").headers["x-ms-resource-unit"]
    assert cost_header == "5"


def test_count_segment_needs_consistency_level(graph: GraphCaller) -> None:
    path = f"/groups/{graph.group('Sales')}/members/$count"
    error = _assert_graph_error(graph.get(path), 400, "Request_BadRequest")
    assert error["message"] == "$count is not currently supported."
    counted = graph.get(path, headers={"ConsistencyLevel": "eventual"})
    assert counted.headers["Content-Type"].startswith("text/plain") and int(counted.text) == 29


def test_search_needs_consistency_level(graph: GraphCaller) -> None:
    _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", search='"displayName:Sa"'), 400, "Request_UnsupportedQuery"
    )


def test_members_without_user_read_come_back_with_limited_information(graph: GraphCaller, sandbox: Sandbox) -> None:
    app = sandbox.app("members_only_app")
    token = sandbox.graph_token(app["client_id"], app["client_secret"])
    items = graph.get(
        f"/groups/{graph.group('Sales')}/members", token=token, select="id,displayName,mail,businessPhones"
    ).json()["value"]
    user = next(i for i in items if i["@odata.type"] == "#microsoft.graph.user")
    assert user["id"] and user["displayName"] is None and user["mail"] is None and user["businessPhones"] == []


def test_user_read_basic_fills_only_the_basic_properties(graph: GraphCaller, sandbox: Sandbox) -> None:
    app = sandbox.app("basic_app")
    token = sandbox.graph_token(app["client_id"], app["client_secret"])
    items = graph.get(
        f"/groups/{graph.group('Sales')}/members/microsoft.graph.user", token=token, select="id,mail,department"
    ).json()["value"]
    assert items[0]["mail"] and items[0]["department"] is None


def test_members_without_group_member_read_are_forbidden(graph: GraphCaller, sandbox: Sandbox) -> None:
    app = sandbox.app("users_only_app")
    token = sandbox.graph_token(app["client_id"], app["client_secret"])
    error = _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", token=token), 403, "Authorization_RequestDenied"
    )
    assert error["message"] == "Insufficient privileges to complete the operation."


@pytest.mark.parametrize(
    "token, message",
    [
        ("", "Access token is empty."),
        ("not-a-jwt", "CompactToken parsing failed with error code: 80049217"),
        (
            jwt.encode(
                {"tid": "x", "roles": ["GroupMember.Read.All"], "exp": 9999999999},
                "forged-key-of-32-bytes-or-more!!",
                algorithm="HS256",
            ),
            "Access token validation failure.",
        ),
    ],
    ids=["missing", "garbage", "forged"],
)
def test_bad_tokens_are_401_invalid_authentication_token(graph: GraphCaller, token: str, message: str) -> None:
    url = f"{graph.sandbox.info['graph_url']}/v1.0/groups/{graph.group('Sales')}/members"
    response = graph.http.get(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    error = _assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert error["message"] == message
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_expired_tokens_are_401(graph: GraphCaller, sandbox: Sandbox) -> None:
    sandbox.control("PUT", "graph", "settings", {"token_lifetime_s": 1})
    token = sandbox.sync_token()
    time.sleep(1.2)
    error = _assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", token=token), 401, "InvalidAuthenticationToken"
    )
    assert error["message"] == "Access token has expired or is not yet valid."


def test_unknown_group_is_404_resource_not_found(graph: GraphCaller) -> None:
    error = _assert_graph_error(
        graph.get("/groups/00000000-0000-0000-0000-000000000000/members"), 404, "Request_ResourceNotFound"
    )
    assert "00000000-0000-0000-0000-000000000000" in error["message"]


def test_client_request_id_is_echoed(graph: GraphCaller) -> None:
    response = graph.get(f"/groups/{graph.group('Sales')}/members", headers={"client-request-id": "abc-123"})
    assert response.headers["client-request-id"] == "abc-123"
    assert response.headers["request-id"] != "abc-123"
    assert response.headers["Content-Type"].startswith("application/json;odata.metadata=minimal")


def test_get_user_by_id_and_upn(graph: GraphCaller, sandbox: Sandbox) -> None:
    users = graph.get(
        f"/groups/{graph.group('Sales')}/members/microsoft.graph.user", select="id,userPrincipalName"
    ).json()["value"]
    by_id = graph.get(f"/users/{users[0]['id']}", select="id,department").json()
    assert by_id["@odata.context"].endswith("/$entity") and "department" in by_id
    by_upn = graph.get(f"/users/{users[0]['userPrincipalName']}").json()
    assert by_upn["id"] == users[0]["id"]
    _assert_graph_error(graph.get("/users/nobody@contoso.example"), 404, "Request_ResourceNotFound")


# --- write API (admin app) ------------------------------------------------------------------------
def test_write_api_creates_updates_and_deletes_users(graph: GraphCaller) -> None:
    created = graph.write(
        "POST",
        "/users",
        {
            "accountEnabled": True,
            "displayName": "New Hire",
            "mailNickname": "new.hire",
            "userPrincipalName": "new.hire@contoso.example",
            "mail": "new.hire@contoso.example",
            "givenName": "New",
            "surname": "Hire",
            "passwordProfile": {"password": "x"},
        },
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert graph.write("PATCH", f"/users/{user_id}", {"department": "Sales"}).status_code == 204
    assert graph.get(f"/users/{user_id}", select="department").json()["department"] == "Sales"
    assert graph.write("DELETE", f"/users/{user_id}").status_code == 204
    _assert_graph_error(graph.get(f"/users/{user_id}"), 404, "Request_ResourceNotFound")


def test_write_api_validates_required_properties_and_uniqueness(graph: GraphCaller) -> None:
    _assert_graph_error(graph.write("POST", "/users", {"displayName": "x"}), 400, "Request_BadRequest")
    body = {
        "accountEnabled": True,
        "displayName": "A",
        "mailNickname": "a",
        "userPrincipalName": "ANNA.SCHMIDT@contoso.example",
        "passwordProfile": {"password": "x"},
    }
    _assert_graph_error(graph.write("POST", "/users", body), 400, "Request_BadRequest")


def test_membership_refs_add_and_remove(graph: GraphCaller, sandbox: Sandbox) -> None:
    sales = graph.group("Sales")
    finance_user = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance_user}"}
    assert graph.write("POST", f"/groups/{sales}/members/$ref", ref).status_code == 204
    _assert_graph_error(graph.write("POST", f"/groups/{sales}/members/$ref", ref), 400, "Request_BadRequest")
    assert graph.write("DELETE", f"/groups/{sales}/members/{finance_user}/$ref").status_code == 204
    _assert_graph_error(
        graph.write("DELETE", f"/groups/{sales}/members/{finance_user}/$ref"), 404, "Request_ResourceNotFound"
    )


def test_the_read_only_sync_app_cannot_write(graph: GraphCaller) -> None:
    response = graph.http.patch(
        f"{graph.sandbox.info['graph_url']}/v1.0/users/x", json={}, headers={"Authorization": f"Bearer {graph.token}"}
    )
    _assert_graph_error(response, 403, "Authorization_RequestDenied")


# --- delta ------------------------------------------------------------------------------------------
def _delta_round(graph: GraphCaller, url: str) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    response = graph.get(url)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"]
        response = graph.get(body["@odata.nextLink"])


def test_group_delta_initial_round_then_changes_then_nothing(graph: GraphCaller, sandbox: Sandbox) -> None:
    sales = graph.group("Sales")
    start = f"{sandbox.info['graph_url']}/v1.0/groups/delta?$filter=id eq '{sales}'&$select=displayName,members"
    items, delta_link = _delta_round(graph, start)
    assert {i["id"] for i in items} == {sales}
    initial = [m for i in items for m in i.get("members@delta", [])]
    assert len(initial) == 29 and not any("@removed" in m for m in initial)

    quiet, delta_link = _delta_round(graph, delta_link)
    assert quiet == []

    finance_user = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    leaver = initial[0]["id"]
    graph.write(
        "POST",
        f"/groups/{sales}/members/$ref",
        {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance_user}"},
    )
    graph.write("DELETE", f"/groups/{sales}/members/{leaver}/$ref")
    changed, delta_link = _delta_round(graph, delta_link)
    members = {m["id"]: m for i in changed for m in i["members@delta"]}
    assert "@removed" not in members[finance_user]
    assert members[leaver]["@removed"] == {"reason": "deleted"}


def test_group_delta_filter_allows_only_id_eq(graph: GraphCaller) -> None:
    _assert_graph_error(graph.get("/groups/delta", filter="displayName eq 'Sales'"), 400, "Request_UnsupportedQuery")
    _assert_graph_error(graph.get("/groups/delta", top="5"), 400, "Request_UnsupportedQuery")


def test_expired_delta_token_is_sync_state_not_found(graph: GraphCaller, sandbox: Sandbox) -> None:
    _, delta_link = _delta_round(graph, f"{sandbox.info['graph_url']}/v1.0/groups/delta?$select=members")
    sandbox.control("POST", "graph", "delta/expire")
    _assert_graph_error(graph.get(delta_link), 400, "syncStateNotFound")


def test_forced_reset_is_410_with_location(graph: GraphCaller, sandbox: Sandbox) -> None:
    _, delta_link = _delta_round(graph, f"{sandbox.info['graph_url']}/v1.0/groups/delta?$select=members")
    sandbox.control("POST", "graph", "delta/reset")
    response = graph.get(delta_link)
    _assert_graph_error(response, 410, "resyncRequired")
    assert response.headers["Location"].endswith("$deltatoken=")


def test_delta_latest_returns_only_a_delta_link(graph: GraphCaller) -> None:
    body = graph.get("/groups/delta", deltatoken="latest").json()
    assert body["value"] == [] and "@odata.deltaLink" in body


def test_large_groups_are_split_across_delta_pages() -> None:
    from entrasync_pipeline.sandbox.graph import DELTA_MEMBERS_PER_PAGE, _split_delta_pages

    members = [{"id": str(i)} for i in range(DELTA_MEMBERS_PER_PAGE * 2 + 1)]
    pages = _split_delta_pages([({"id": "big"}, members), ({"id": "small"}, [{"id": "x"}])])
    big = [entry for page in pages for entry in page if entry["id"] == "big"]
    assert len(big) == 3
    assert sum(len(e["members@delta"]) for e in big) == len(members)
