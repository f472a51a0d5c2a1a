"""users/delta and groups/delta behave like Graph's change tracking (reference §3; user-delta.md,
delta-query-users.md, group-delta.md, delta-query-groups.md).

A production change-feed client is tested against these answers, so each test pins one
documented behaviour: paging, the tracked ``$select``, ``Prefer: return=minimal``, ``@removed``
for soft and permanent deletion, restore, the id filter and its limit, ``latest``, expiry (400)
and reset (410), both URL spellings, and the refusal of what delta does not support.
"""

from __future__ import annotations

import statistics
import time
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from entrasync_pipeline.sandbox.directory import USER_DEFAULT_PROPERTIES, Directory
from entrasync_pipeline.sandbox.graph_delta import USERS_DELTA_PAGE, DeltaQueries
from entrasync_pipeline.sandbox.httpd import Request
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.sandbox.conftest import GraphCaller, assert_graph_error

MINIMAL = {"Prefer": "return=minimal"}


def _latest(graph: GraphCaller, **params: str) -> str:
    body = graph.get("/users/delta", deltatoken="latest", **params).json()
    assert body["value"] == []
    return body["@odata.deltaLink"]


def _by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in items}


def test_initial_round_pages_every_user_once_then_an_idle_round_is_empty(graph: GraphCaller, sandbox: Sandbox) -> None:
    graph.create_users(USERS_DELTA_PAGE)  # past one page whatever the seed holds
    users = [i for i, o in sandbox.state("graph")["objects"].items() if o["@odata.type"] == "#microsoft.graph.user"]
    items, delta_link, pages = graph.delta_round("/users/delta?$select=displayName,mail")
    assert len(pages) > 1 and all(len(p["value"]) <= USERS_DELTA_PAGE for p in pages)
    assert sorted(i["id"] for i in items) == sorted(users)
    assert all(set(i) == {"id", "displayName", "mail"} for i in items)
    next_link = urlsplit(pages[0]["@odata.nextLink"])
    assert next_link.path == "/v1.0/users/delta" and set(parse_qs(next_link.query)) == {"$skiptoken"}
    assert "$deltatoken=" in delta_link and all("@odata.deltaLink" not in p for p in pages[:-1])
    quiet, _, quiet_pages = graph.delta_round(delta_link)
    assert quiet == [] and len(quiet_pages) == 1


def test_without_select_the_default_properties_come_back(graph: GraphCaller) -> None:
    items, _, _ = graph.delta_round("/users/delta")
    assert all(set(i) == set(USER_DEFAULT_PROPERTIES) for i in items)
    assert all("@odata.type" not in i for i in items)


@pytest.mark.parametrize(
    "change",
    [
        {"accountEnabled": False},
        {"userType": "Guest"},
        {"mail": "renamed@contoso.example"},
        {"givenName": "Renamed"},
        {"surname": "Renamed"},
        {"displayName": "Renamed Person"},
    ],
    ids=["account-disabled", "user-type", "mail", "given-name", "surname", "display-name"],
)
def test_a_tracked_property_change_returns_the_user_with_all_selected_properties(
    graph: GraphCaller, change: dict[str, Any]
) -> None:
    select = "displayName,givenName,surname,mail,accountEnabled,userType"
    link = _latest(graph, select=select)
    user = graph.user_in("Finance")
    assert graph.write("PATCH", f"/users/{user}", change).status_code == 204
    items, _, _ = graph.delta_round(link)
    assert [i["id"] for i in items] == [user]
    assert set(items[0]) == {"id", *select.split(",")}
    assert all(items[0][k] == v for k, v in change.items())


def test_select_limits_what_is_tracked(graph: GraphCaller) -> None:
    link = _latest(graph, select="displayName,accountEnabled")
    user = graph.user_in("Finance")
    graph.write("PATCH", f"/users/{user}", {"department": "Controlling", "jobTitle": "Analyst"})
    quiet, link, _ = graph.delta_round(link)
    assert quiet == []
    graph.write("PATCH", f"/users/{user}", {"accountEnabled": False})
    changed, _, _ = graph.delta_round(link)
    assert [(i["id"], set(i), i["accountEnabled"]) for i in changed] == [
        (user, {"id", "displayName", "accountEnabled"}, False)
    ]


def test_prefer_minimal_returns_only_the_changed_properties(graph: GraphCaller) -> None:
    link = _latest(graph, select="displayName,jobTitle,mobilePhone")
    user = graph.user_in("Finance")
    graph.write("PATCH", f"/users/{user}", {"displayName": "Vance Adele", "jobTitle": None})
    minimal, _, _ = graph.delta_round(link, headers=MINIMAL)
    assert minimal == [{"id": user, "displayName": "Vance Adele", "jobTitle": None}]
    full, _, _ = graph.delta_round(link)
    assert set(full[0]) == {"id", "displayName", "jobTitle", "mobilePhone"}


def test_a_created_user_comes_back_whole_even_under_minimal(graph: GraphCaller) -> None:
    link = _latest(graph, select="displayName,mail")
    [created] = graph.create_users(1, prefix="newhire")
    items, _, _ = graph.delta_round(link, headers=MINIMAL)
    assert items == [{"id": created, "displayName": "Newhire 0", "mail": None}]


def test_delete_restore_and_purge_through_users_and_groups_delta(graph: GraphCaller) -> None:
    user = graph.all_pages(f"/groups/{graph.group('Sales')}/members/microsoft.graph.user", select="id")[0]["id"]
    users_link = _latest(graph, select="displayName")
    groups_link = graph.get(
        "/groups/delta", filter=f"id eq '{graph.group('Sales')}'", select="members", deltatoken="latest"
    ).json()["@odata.deltaLink"]

    assert graph.write("DELETE", f"/users/{user}").status_code == 204
    assert_graph_error(graph.get(f"/users/{user}"), 404, "Request_ResourceNotFound")
    removed, users_link, _ = graph.delta_round(users_link)
    assert removed == [{"id": user, "@removed": {"reason": "changed"}}]
    groups, groups_link, _ = graph.delta_round(groups_link)
    assert groups[0]["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": user, "@removed": {"reason": "deleted"}}
    ]

    restored = graph.write("POST", f"/directory/deletedItems/{user}/restore")
    assert restored.status_code == 200 and restored.json()["id"] == user
    back, users_link, _ = graph.delta_round(users_link)
    assert [set(i) for i in back] == [{"id", "displayName"}] and back[0]["id"] == user
    groups, _, _ = graph.delta_round(groups_link)
    assert groups[0]["members@delta"] == [{"@odata.type": "#microsoft.graph.user", "id": user}]

    graph.write("DELETE", f"/users/{user}")
    assert graph.write("DELETE", f"/directory/deletedItems/{user}").status_code == 204
    gone, _, _ = graph.delta_round(users_link)
    assert gone == [{"id": user, "@removed": {"reason": "deleted"}}]


def test_the_initial_round_lists_soft_deleted_users_as_removed(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    graph.write("DELETE", f"/users/{user}")
    items, _, _ = graph.delta_round("/users/delta?$select=mail")
    assert _by_id(items)[user] == {"id": user, "@removed": {"reason": "changed"}}


def test_the_id_filter_tracks_only_the_named_users(graph: GraphCaller) -> None:
    finance = [i["id"] for i in graph.all_pages("/users", select="id,department") if i["department"] == "Finance"]
    assert len(finance) == 2
    items, link, _ = graph.delta_round(f"/users/delta?$filter=id eq '{finance[0]}'&$select=department")
    assert items == [{"id": finance[0], "department": "Finance"}]
    for user in finance:
        graph.write("PATCH", f"/users/{user}", {"department": "Audit"})
    changed, _, _ = graph.delta_round(link)
    assert changed == [{"id": finance[0], "department": "Audit"}]


def test_the_id_filter_takes_at_most_50_ids_and_nothing_else(graph: GraphCaller) -> None:
    ids = " or ".join(f"id eq '{i:08d}-0000-0000-0000-000000000000'" for i in range(51))
    error = assert_graph_error(graph.get("/users/delta", filter=ids), 400, "Request_UnsupportedQuery")
    assert "50" in error["message"]
    assert_graph_error(graph.get("/users/delta", filter="mail eq 'x@y'"), 400, "Request_UnsupportedQuery")


@pytest.mark.parametrize("option", ["top", "expand", "orderby", "count", "search"])
def test_options_delta_does_not_support_are_refused_not_ignored(graph: GraphCaller, option: str) -> None:
    value = {"top": "5", "expand": "manager", "orderby": "displayName", "count": "true", "search": '"mail:x"'}
    assert_graph_error(graph.get("/users/delta", **{option: value[option]}), 400, "Request_UnsupportedQuery")


def test_a_delta_link_carries_its_query_and_takes_no_other_options(graph: GraphCaller) -> None:
    link = _latest(graph, select="mail")
    assert_graph_error(graph.get(link, select="displayName"), 400, "Request_UnsupportedQuery")


def test_selecting_an_unknown_property_is_a_bad_request(graph: GraphCaller) -> None:
    assert_graph_error(graph.get("/users/delta", select="shoeSize"), 400, "Request_BadRequest")


def test_latest_starts_from_now(graph: GraphCaller) -> None:
    link = _latest(graph, select="mail")
    assert graph.delta_round(link)[0] == []
    user = graph.user_in("Finance")
    graph.write("PATCH", f"/users/{user}", {"mail": "now@contoso.example"})
    assert graph.delta_round(link)[0] == [{"id": user, "mail": "now@contoso.example"}]


def test_users_delta_needs_user_read_all(graph: GraphCaller, sandbox: Sandbox) -> None:
    app = sandbox.app("basic_app")  # GroupMember.Read.All + User.ReadBasic.All
    token = sandbox.graph_token(app["client_id"], app["client_secret"])
    assert_graph_error(graph.get("/users/delta", token=token), 403, "Authorization_RequestDenied")


@pytest.mark.parametrize("entity_set", ["users", "groups"])
def test_an_expired_token_is_sync_state_not_found(graph: GraphCaller, sandbox: Sandbox, entity_set: str) -> None:
    _, link, _ = graph.delta_round(f"/{entity_set}/delta?$select=id")
    sandbox.control("POST", "graph", "delta/expire")
    error = assert_graph_error(graph.get(link), 400, "syncStateNotFound")
    assert error["message"].startswith("The sync state generation is not found.")


@pytest.mark.parametrize("entity_set", ["users", "groups"])
def test_a_reset_is_410_with_a_location_that_restarts(graph: GraphCaller, sandbox: Sandbox, entity_set: str) -> None:
    _, link, _ = graph.delta_round(f"/{entity_set}/delta?$select=id")
    sandbox.control("POST", "graph", "delta/reset")
    response = graph.get(link)
    assert_graph_error(response, 410, "resyncRequired")
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/v1.0/{entity_set}/delta" and location.endswith("$deltatoken=")
    assert_graph_error(graph.get(link), 410, "resyncRequired")  # the old state stays invalid
    assert graph.get(f"/{entity_set}/delta", select="id").status_code == 200


def test_a_round_in_progress_expires_too(graph: GraphCaller, sandbox: Sandbox) -> None:
    graph.create_users(USERS_DELTA_PAGE)
    first = graph.get("/users/delta", select="id").json()
    sandbox.control("POST", "graph", "delta/expire")
    assert_graph_error(graph.get(first["@odata.nextLink"]), 400, "syncStateNotFound")


def test_a_tampered_token_is_sync_state_not_found(graph: GraphCaller) -> None:
    link = _latest(graph)
    assert_graph_error(graph.get(link[:-4] + "AAAA"), 400, "syncStateNotFound")


@pytest.mark.parametrize("path", ["/users/delta", "/users/delta()", "/groups/delta", "/groups/delta()"])
def test_both_spellings_work_and_links_keep_the_spelling(graph: GraphCaller, path: str) -> None:
    _, link, _ = graph.delta_round(f"{path}?$select=id")
    assert urlsplit(link).path == f"/v1.0{path}"
    assert graph.delta_round(link)[0] == []


def test_group_delta_reports_member_groups_of_a_filtered_group(graph: GraphCaller) -> None:
    it_support, tier2, sales = graph.group("IT Support"), graph.group("IT Support Tier 2"), graph.group("Sales")
    start = f"/groups/delta?$filter=id eq '{it_support}'&$select=displayName,members"
    items, link, _ = graph.delta_round(start)
    initial = {m["id"]: m for i in items for m in i.get("members@delta", [])}
    assert initial[tier2]["@odata.type"] == "#microsoft.graph.group"
    graph.write("DELETE", f"/groups/{it_support}/members/{tier2}/$ref")
    graph.write("POST", f"/groups/{it_support}/members/$ref", graph.member_ref(sales))
    changed, _, _ = graph.delta_round(link)
    assert [i["id"] for i in changed] == [it_support]
    assert sorted(changed[0]["members@delta"], key=lambda m: m["id"]) == sorted(
        [
            {"@odata.type": "#microsoft.graph.group", "id": tier2, "@removed": {"reason": "deleted"}},
            {"@odata.type": "#microsoft.graph.group", "id": sales},
        ],
        key=lambda m: m["id"],
    )


def test_group_delta_under_minimal_sends_only_the_id_and_member_changes(graph: GraphCaller) -> None:
    sales = graph.group("Sales")
    link = graph.get(
        "/groups/delta", filter=f"id eq '{sales}'", select="displayName,members", deltatoken="latest"
    ).json()["@odata.deltaLink"]
    finance = graph.user_in("Finance")
    graph.write("POST", f"/groups/{sales}/members/$ref", graph.member_ref(finance))
    changed, _, _ = graph.delta_round(link, headers=MINIMAL)
    assert changed == [{"id": sales, "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": finance}]}]


# --- cost: an idle round does not depend on the tenant's size -------------------------------------
def _request(url: str) -> Request:
    split = urlsplit(url)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    return Request("GET", split.path, split.query, query, Message(), b"", "https://graph.test")


def test_an_idle_users_delta_on_100000_users_takes_a_few_milliseconds() -> None:
    directory = Directory()
    for i in range(100_000):
        directory.add_object("user", {"id": f"{i:08d}-0000-4000-8000-000000000000", "mail": f"u{i}@contoso.example"})
    directory.forget_history()
    delta = DeltaQueries()
    link = delta.users(_request("/v1.0/users/delta?$select=mail&$deltatoken=latest"), directory)["@odata.deltaLink"]
    idle = _request(link.removeprefix("https://graph.test"))
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert delta.users(idle, directory)["value"] == []
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.005, timings
    directory.update_object("00000042-0000-4000-8000-000000000000", {"mail": "changed@contoso.example"})
    started = time.perf_counter()
    assert delta.users(idle, directory)["value"] == [
        {"id": "00000042-0000-4000-8000-000000000000", "mail": "changed@contoso.example"}
    ]
    assert time.perf_counter() - started < 0.05
