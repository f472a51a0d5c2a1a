"""The Graph emulator behaves like Microsoft Graph v1.0 (reference/microsoft-graph-and-msal.md §1–4).

Each test names one documented behaviour or quirk; removing the behaviour from the emulator
makes its test fail.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from entrasync_pipeline.sandbox.directory import USER_DEFAULT_PROPERTIES
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.sandbox.conftest import GraphCaller, assert_graph_error


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
    error = assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", top="1000"), 400, "Request_BadRequest"
    )
    assert "Must be between 1 and 999 inclusive" in error["message"]


def test_small_top_pages_through_every_member_once(graph: GraphCaller) -> None:
    items = graph.all_pages(f"/groups/{graph.group('IT Support')}/members", top="7", select="id")
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == 25  # 20 people + 3 quirky + nested group + device; SP hidden


def test_a_tampered_skiptoken_is_refused(graph: GraphCaller) -> None:
    link = graph.get(f"/groups/{graph.group('Sales')}/members", top="5").json()["@odata.nextLink"]
    assert_graph_error(graph.get(link[:-3] + "AAA"), 400, "Request_BadRequest")


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


def test_employee_hire_date_is_a_select_only_user_property(graph: GraphCaller) -> None:
    """The docs' typed-field example maps employeeHireDate; Graph returns it (null when unset) on $select."""
    body = graph.get(f"/groups/{graph.group('Sales')}/members/microsoft.graph.user", select="employeeHireDate").json()
    assert body["value"] and all("employeeHireDate" in u for u in body["value"])


def test_selecting_an_unknown_property_is_a_bad_request(graph: GraphCaller) -> None:
    assert_graph_error(
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
    assert_graph_error(
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
    error = assert_graph_error(graph.get(path), 400, "Request_BadRequest")
    assert error["message"] == "$count is not currently supported."
    counted = graph.get(path, headers={"ConsistencyLevel": "eventual"})
    assert counted.headers["Content-Type"].startswith("text/plain") and int(counted.text) == 29


def test_users_filter_by_mail_or_upn_is_a_default_query_other_filters_are_refused(graph: GraphCaller) -> None:
    found = graph.get("/users", filter="mail eq 'ANNA.SCHMIDT@contoso.example'", select="id,mail").json()["value"]
    assert [u["mail"] for u in found] == ["anna.schmidt@contoso.example"]
    upn = found[0]["id"]
    by_upn = graph.get("/users", filter="userPrincipalName eq 'anna.schmidt@contoso.example'", select="id").json()
    assert [u["id"] for u in by_upn["value"]] == [upn]
    assert graph.get("/users", filter="mail eq 'nobody@contoso.example'").json()["value"] == []
    assert_graph_error(graph.get("/users", filter="startswith(mail,'anna')"), 400, "Request_UnsupportedQuery")


def test_search_needs_consistency_level(graph: GraphCaller) -> None:
    assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", search='"displayName:Sa"'), 400, "Request_UnsupportedQuery"
    )


EVENTUAL = {"ConsistencyLevel": "eventual"}


def test_search_is_applied_with_consistency_level_and_counted(graph: GraphCaller) -> None:
    """Tokenized on displayName (a word prefix, never "contains"); startswith on other properties."""
    names = graph.get("/users", headers=EVENTUAL, search='"displayName:schm"', count="true", select="displayName")
    assert sorted(u["displayName"] for u in names.json()["value"]) == ["Anna Schmidt", "Felix Schmitt"]
    assert names.json()["@odata.count"] == 2
    assert graph.get("/users", headers=EVENTUAL, search='"displayName:chmidt"').json()["value"] == []
    mail = graph.get("/users", headers=EVENTUAL, search='"mail:anna.s"', select="mail").json()["value"]
    assert [u["mail"] for u in mail] == ["anna.schmidt@contoso.example"]
    either = graph.get("/users", headers=EVENTUAL, search='"displayName:anna" OR "mail:jonas"', select="displayName")
    assert sorted(u["displayName"] for u in either.json()["value"]) == ["Anna Schmidt", "Jonas Weber"]
    both = graph.get("/users", headers=EVENTUAL, search='"displayName:anna" AND "mail:jonas"')
    assert both.json()["value"] == []


def test_search_on_members_member_of_and_groups(graph: GraphCaller) -> None:
    members = graph.get(f"/groups/{graph.group('IT Support')}/members", headers=EVENTUAL, search='"displayName:tier"')
    assert [m["id"] for m in members.json()["value"]] == [graph.group("IT Support Tier 2")]
    groups = graph.get("/groups", headers=EVENTUAL, search='"displayName:support" AND "displayName:tier"')
    assert [g["displayName"] for g in groups.json()["value"]] == ["IT Support Tier 2"]
    nested = graph.get(f"/groups/{graph.group('IT Support Tier 2')}/members/graph.user", select="id").json()["value"]
    of = graph.get(f"/users/{nested[0]['id']}/transitiveMemberOf", headers=EVENTUAL, search='"displayName:tier"')
    assert [g["id"] for g in of.json()["value"]] == [graph.group("IT Support Tier 2")]


@pytest.mark.parametrize(
    ("search", "status", "code"),
    [
        ("displayName:anna", 400, "Request_UnsupportedQuery"),
        ('"displayName:anna" and "mail:a"', 400, "Request_UnsupportedQuery"),
        ('("displayName:anna"', 400, "Request_UnsupportedQuery"),
        ('"displayName"', 400, "Request_UnsupportedQuery"),
        ('"favouriteColour:blue"', 400, "Request_BadRequest"),
    ],
    ids=["unquoted", "lower-case-and", "unbalanced", "no-colon", "unknown-property"],
)
def test_malformed_search_is_refused_never_ignored(graph: GraphCaller, search: str, status: int, code: str) -> None:
    assert_graph_error(graph.get("/users", headers=EVENTUAL, search=search), status, code)


def test_groups_list_pages_filters_and_omits_the_type(graph: GraphCaller, sandbox: Sandbox) -> None:
    listed = graph.get("/groups", top="2").json()
    assert listed["@odata.context"].endswith("$metadata#groups") and len(listed["value"]) == 2
    every = graph.all_pages("/groups", top="2")
    assert {g["displayName"]: g["id"] for g in every} == sandbox.info["groups"]
    assert all("@odata.type" not in g for g in every)
    sales = graph.get("/groups", filter="displayName eq 'sales'", select="id,displayName").json()
    assert sales["value"] == [{"id": graph.group("Sales"), "displayName": "Sales"}]
    assert_graph_error(graph.get("/groups", filter="startswith(displayName,'S')"), 400, "Request_UnsupportedQuery")
    no_group_read = sandbox.app("users_only_app")
    token = sandbox.graph_token(no_group_read["client_id"], no_group_read["client_secret"])
    assert_graph_error(graph.get("/groups", token=token), 403, "Authorization_RequestDenied")


def test_the_sdk_cast_alias_graph_user_is_the_full_cast(graph: GraphCaller) -> None:
    group = graph.group("IT Support")
    full = graph.get(f"/groups/{group}/members/microsoft.graph.user", top="999").json()
    alias = graph.get(f"/groups/{group}/members/graph.user", top="999").json()
    assert alias["value"] == full["value"] and alias["@odata.context"] == full["@odata.context"]
    counted = graph.get(f"/groups/{group}/transitiveMembers/graph.user/$count", headers=EVENTUAL)
    assert int(counted.text) == len(
        graph.get(f"/groups/{group}/transitiveMembers/graph.user", top="999").json()["value"]
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
    error = assert_graph_error(
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
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert error["message"] == message
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_expired_tokens_are_401(graph: GraphCaller, sandbox: Sandbox) -> None:
    sandbox.control("PUT", "graph", "settings", {"token_lifetime_s": 1})
    token = sandbox.sync_token()
    time.sleep(1.2)
    error = assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members", token=token), 401, "InvalidAuthenticationToken"
    )
    assert error["message"] == "Access token has expired or is not yet valid."


def test_unknown_group_is_404_resource_not_found(graph: GraphCaller) -> None:
    error = assert_graph_error(
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
    assert_graph_error(graph.get("/users/nobody@contoso.example"), 404, "Request_ResourceNotFound")


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
    assert_graph_error(graph.get(f"/users/{user_id}"), 404, "Request_ResourceNotFound")


def test_writes_accept_the_odata_type_of_the_entity_written(graph: GraphCaller, sandbox: Sandbox) -> None:
    body = {
        "@odata.type": "#microsoft.graph.user",
        "accountEnabled": True,
        "displayName": "Typed User",
        "mailNickname": "typed",
        "userPrincipalName": "typed@contoso.example",
        "passwordProfile": {"@odata.type": "#microsoft.graph.passwordProfile", "password": "x"},
    }
    created = graph.write("POST", "/users", body)
    assert created.status_code == 201, created.text
    user = created.json()["id"]
    assert (
        graph.write("PATCH", f"/users/{user}", {"@odata.type": "microsoft.graph.user", "city": "Graz"}).status_code
        == 204
    )
    assert sandbox.state("graph")["objects"][user]["city"] == "Graz"
    wrong = graph.write("PATCH", f"/users/{user}", {"@odata.type": "#microsoft.graph.group", "city": "Linz"})
    assert assert_graph_error(wrong, 400, "BadRequest")["message"].startswith("The type 'microsoft.graph.group'")
    unknown = graph.write("PATCH", f"/users/{user}", {"@odata.type": "#microsoft.graph.nothing", "city": "Linz"})
    assert "could not be resolved by the model" in assert_graph_error(unknown, 400, "BadRequest")["message"]
    assert sandbox.state("graph")["objects"][user]["city"] == "Graz"


def test_write_api_validates_required_properties_and_uniqueness(graph: GraphCaller) -> None:
    assert_graph_error(graph.write("POST", "/users", {"displayName": "x"}), 400, "Request_BadRequest")
    body = {
        "accountEnabled": True,
        "displayName": "A",
        "mailNickname": "a",
        "userPrincipalName": "ANNA.SCHMIDT@contoso.example",
        "passwordProfile": {"password": "x"},
    }
    assert_graph_error(graph.write("POST", "/users", body), 400, "Request_BadRequest")


def test_membership_refs_add_and_remove(graph: GraphCaller, sandbox: Sandbox) -> None:
    sales = graph.group("Sales")
    finance_user = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance_user}"}
    assert graph.write("POST", f"/groups/{sales}/members/$ref", ref).status_code == 204
    assert_graph_error(graph.write("POST", f"/groups/{sales}/members/$ref", ref), 400, "Request_BadRequest")
    assert graph.write("DELETE", f"/groups/{sales}/members/{finance_user}/$ref").status_code == 204
    assert_graph_error(
        graph.write("DELETE", f"/groups/{sales}/members/{finance_user}/$ref"), 404, "Request_ResourceNotFound"
    )


def test_the_read_only_sync_app_cannot_write(graph: GraphCaller) -> None:
    response = graph.http.patch(
        f"{graph.sandbox.info['graph_url']}/v1.0/users/x", json={}, headers={"Authorization": f"Bearer {graph.token}"}
    )
    assert_graph_error(response, 403, "Authorization_RequestDenied")


# --- delta ------------------------------------------------------------------------------------------
def test_group_delta_initial_round_then_changes_then_nothing(graph: GraphCaller, sandbox: Sandbox) -> None:
    sales = graph.group("Sales")
    start = f"{sandbox.info['graph_url']}/v1.0/groups/delta?$filter=id eq '{sales}'&$select=displayName,members"
    items, delta_link, _ = graph.delta_round(start)
    assert {i["id"] for i in items} == {sales}
    initial = [m for i in items for m in i.get("members@delta", [])]
    assert len(initial) == 29 and not any("@removed" in m for m in initial)

    quiet, delta_link, _ = graph.delta_round(delta_link)
    assert quiet == []

    finance_user = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    leaver = initial[0]["id"]
    graph.write(
        "POST",
        f"/groups/{sales}/members/$ref",
        {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance_user}"},
    )
    graph.write("DELETE", f"/groups/{sales}/members/{leaver}/$ref")
    changed, delta_link, _ = graph.delta_round(delta_link)
    members = {m["id"]: m for i in changed for m in i["members@delta"]}
    assert "@removed" not in members[finance_user]
    assert members[leaver]["@removed"] == {"reason": "deleted"}


def test_group_delta_filter_allows_only_id_eq(graph: GraphCaller) -> None:
    assert_graph_error(graph.get("/groups/delta", filter="displayName eq 'Sales'"), 400, "Request_UnsupportedQuery")
    assert_graph_error(graph.get("/groups/delta", top="5"), 400, "Request_UnsupportedQuery")


def test_expired_delta_token_is_sync_state_not_found(graph: GraphCaller, sandbox: Sandbox) -> None:
    _, delta_link, _ = graph.delta_round(f"{sandbox.info['graph_url']}/v1.0/groups/delta?$select=members")
    sandbox.control("POST", "graph", "delta/expire")
    assert_graph_error(graph.get(delta_link), 400, "syncStateNotFound")


def test_forced_reset_is_410_with_location(graph: GraphCaller, sandbox: Sandbox) -> None:
    _, delta_link, _ = graph.delta_round(f"{sandbox.info['graph_url']}/v1.0/groups/delta?$select=members")
    sandbox.control("POST", "graph", "delta/reset")
    response = graph.get(delta_link)
    assert_graph_error(response, 410, "resyncRequired")
    assert response.headers["Location"].endswith("$deltatoken=")


def test_delta_latest_returns_only_a_delta_link(graph: GraphCaller) -> None:
    body = graph.get("/groups/delta", deltatoken="latest").json()
    assert body["value"] == [] and "@odata.deltaLink" in body


def test_large_groups_are_split_across_delta_pages() -> None:
    from entrasync_pipeline.sandbox.graph_delta import DELTA_MEMBERS_PER_PAGE, split_delta_pages

    members = [{"id": str(i)} for i in range(DELTA_MEMBERS_PER_PAGE * 2 + 1)]
    pages = split_delta_pages([({"id": "big"}, members), ({"id": "small"}, [{"id": "x"}])])
    big = [entry for page in pages for entry in page if entry["id"] == "big"]
    assert len(big) == 3
    assert sum(len(e["members@delta"]) for e in big) == len(members)


# --- a user's groups ---------------------------------------------------------------------------------
def _tier2_user(graph: GraphCaller) -> str:
    return graph.get(f"/groups/{graph.group('IT Support Tier 2')}/members", select="id").json()["value"][0]["id"]


@pytest.mark.parametrize("base", ["/users", "/directoryObjects"])
def test_check_member_groups_is_transitive_through_nested_groups(graph: GraphCaller, base: str) -> None:
    user = _tier2_user(graph)
    it_support, tier2, sales = graph.group("IT Support"), graph.group("IT Support Tier 2"), graph.group("Sales")
    response = graph.post(f"{base}/{user}/checkMemberGroups", {"groupIds": [sales, it_support, tier2]})
    body = response.json()
    assert response.status_code == 200 and body["@odata.context"].endswith("$metadata#Collection(Edm.String)")
    assert body["value"] == [it_support, tier2]


def test_check_member_groups_takes_at_most_20_ids(graph: GraphCaller) -> None:
    ids = [f"{i:08d}-0000-0000-0000-000000000000" for i in range(21)]
    user = _tier2_user(graph)
    assert graph.post(f"/users/{user}/checkMemberGroups", {"groupIds": ids[:20]}).json()["value"] == []
    assert_graph_error(graph.post(f"/users/{user}/checkMemberGroups", {"groupIds": ids}), 400, "Request_BadRequest")
    assert_graph_error(graph.post(f"/users/{user}/checkMemberGroups", {}), 400, "Request_BadRequest")


@pytest.mark.parametrize(
    "app", ["members_only_app", "users_only_app", "basic_app"], ids=["no-user-read", "no-group-read", "basic-only"]
)
def test_membership_checks_need_user_and_group_read(graph: GraphCaller, sandbox: Sandbox, app: str) -> None:
    credentials = sandbox.app(app)
    token = sandbox.graph_token(credentials["client_id"], credentials["client_secret"])
    user = _tier2_user(graph)
    for call in ("checkMemberGroups", "getMemberGroups"):
        body = {"groupIds": []} if call == "checkMemberGroups" else {"securityEnabledOnly": False}
        assert_graph_error(graph.post(f"/users/{user}/{call}", body, token=token), 403, "Authorization_RequestDenied")


def test_get_member_groups_lists_transitive_groups_and_filters_security_groups(graph: GraphCaller) -> None:
    tier2_user = _tier2_user(graph)
    groups = graph.post(f"/users/{tier2_user}/getMemberGroups", {"securityEnabledOnly": False}).json()["value"]
    assert sorted(groups) == sorted([graph.group("IT Support"), graph.group("IT Support Tier 2")])
    sales_user = graph.get(f"/groups/{graph.group('Sales')}/members", select="id").json()["value"][0]["id"]
    everything = graph.post(f"/users/{sales_user}/getMemberGroups", {"securityEnabledOnly": False}).json()
    security = graph.post(f"/users/{sales_user}/getMemberGroups", {"securityEnabledOnly": True}).json()
    assert everything["value"] == [graph.group("Sales")] and security["value"] == []  # Sales: a Microsoft 365 group
    assert_graph_error(graph.post(f"/users/{sales_user}/getMemberGroups", {}), 400, "Request_BadRequest")


def test_member_of_is_direct_and_transitive_member_of_follows_nesting(graph: GraphCaller) -> None:
    user = _tier2_user(graph)
    direct = graph.get(f"/users/{user}/memberOf").json()
    assert direct["@odata.context"].endswith("$metadata#directoryObjects")
    assert [(g["@odata.type"], g["id"]) for g in direct["value"]] == [
        ("#microsoft.graph.group", graph.group("IT Support Tier 2"))
    ]
    assert direct["value"][0]["displayName"] == "IT Support Tier 2"
    first = graph.get(f"/users/{user}/transitiveMemberOf", select="id,displayName", top="1").json()
    assert set(first["value"][0]) == {"@odata.type", "id", "displayName"} and "@odata.nextLink" in first
    everything = graph.all_pages(f"/users/{user}/transitiveMemberOf", select="id", top="1")
    assert sorted(g["id"] for g in everything) == sorted([graph.group("IT Support"), graph.group("IT Support Tier 2")])
    assert_graph_error(graph.get(f"/users/{user}/memberOf", top="1000"), 400, "Request_BadRequest")


def test_member_of_without_group_read_returns_limited_information(graph: GraphCaller, sandbox: Sandbox) -> None:
    app = sandbox.app("users_only_app")
    token = sandbox.graph_token(app["client_id"], app["client_secret"])
    groups = graph.get(f"/users/{_tier2_user(graph)}/memberOf", token=token, select="id,displayName").json()["value"]
    assert groups == [
        {"@odata.type": "#microsoft.graph.group", "id": graph.group("IT Support Tier 2"), "displayName": None}
    ]


# --- deletion as Entra does it --------------------------------------------------------------------------
def test_a_deleted_user_is_gone_from_reads_and_restored_with_its_groups(graph: GraphCaller) -> None:
    user = _tier2_user(graph)
    tier2 = graph.group("IT Support Tier 2")
    assert graph.write("DELETE", f"/users/{user}").status_code == 204
    assert_graph_error(graph.get(f"/users/{user}"), 404, "Request_ResourceNotFound")
    assert user not in {u["id"] for u in graph.all_pages("/users", select="id")}
    assert user not in {m["id"] for m in graph.all_pages(f"/groups/{tier2}/transitiveMembers", select="id")}
    assert_graph_error(
        graph.post(f"/users/{user}/checkMemberGroups", {"groupIds": [tier2]}), 404, "Request_ResourceNotFound"
    )
    deleted = graph.get(f"/directory/deletedItems/{user}", select="id,deletedDateTime").json()
    assert deleted["@odata.type"] == "#microsoft.graph.user" and deleted["deletedDateTime"]

    restored = graph.write("POST", f"/directory/deletedItems/{user}/restore")
    assert restored.status_code == 200
    assert restored.json()["@odata.context"].endswith("$metadata#directoryObjects/$entity")
    assert graph.get(f"/users/{user}").status_code == 200
    assert [g["id"] for g in graph.get(f"/users/{user}/memberOf").json()["value"]] == [tier2]
    assert_graph_error(graph.write("POST", f"/directory/deletedItems/{user}/restore"), 404, "Request_ResourceNotFound")


def test_a_purged_user_cannot_be_restored(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    graph.write("DELETE", f"/users/{user}")
    assert graph.write("DELETE", f"/directory/deletedItems/{user}").status_code == 204
    assert_graph_error(graph.write("POST", f"/directory/deletedItems/{user}/restore"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.write("DELETE", f"/directory/deletedItems/{user}"), 404, "Request_ResourceNotFound")


def test_a_restore_that_would_duplicate_a_upn_is_refused(graph: GraphCaller, sandbox: Sandbox) -> None:
    user = graph.user_in("Finance")
    upn = sandbox.state("graph")["objects"][user]["userPrincipalName"]
    graph.write("DELETE", f"/users/{user}")
    body = {"accountEnabled": True, "displayName": "Successor", "mailNickname": "s", "userPrincipalName": upn}
    assert graph.write("POST", "/users", {**body, "passwordProfile": {"password": "x"}}).status_code == 201
    assert_graph_error(graph.write("POST", f"/directory/deletedItems/{user}/restore"), 400, "Request_BadRequest")


def test_deleting_and_restoring_needs_write_permission(graph: GraphCaller) -> None:
    user = graph.user_in("Finance")
    url = f"{graph.sandbox.info['graph_url']}/v1.0/users/{user}"
    assert_graph_error(
        graph.http.delete(url, headers={"Authorization": f"Bearer {graph.token}"}), 403, "Authorization_RequestDenied"
    )
    graph.write("DELETE", f"/users/{user}")
    assert_graph_error(graph.post(f"/directory/deletedItems/{user}/restore", None), 403, "Authorization_RequestDenied")
