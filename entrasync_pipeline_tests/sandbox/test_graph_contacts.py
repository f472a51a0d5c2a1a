"""Organizational contacts in the Graph emulator behave like Microsoft Graph v1.0's orgContact.

orgContact (resources/orgcontact.md) has ``phones`` [{number, type}] and ``addresses``, never a
user's mobilePhone or businessPhones; its properties need OrgContact.Read.All (or Directory.*),
without which a contact in a member list comes back with limited information and ``/contacts``
is 403. Contacts are read-only in Graph (Exchange Online owns them): writes are refused, and tests
change them through the sandbox's control API, whose changes delta queries see like any other.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from entrasync_pipeline.sandbox.directory import CONTACT_PROPERTIES
from entrasync_pipeline.sandbox.graph_delta import CONTACT_DELTA_DEFAULT_PROPERTIES
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.sandbox.conftest import GraphCaller, assert_graph_error
from entrasync_pipeline_tests.tenant import Admin

CONTACT = "#microsoft.graph.orgContact"
EVENTUAL = {"ConsistencyLevel": "eventual"}
ACME_PHONES = [{"number": "+49 30 999", "type": "business"}, {"number": "+49 171 999", "type": "mobile"}]


@pytest.fixture
def admin(sandbox: Sandbox, http: requests.Session) -> Admin:
    return Admin(sandbox, http)


def _vendor(graph: GraphCaller) -> str:
    """The demo seed's contact in Sales."""
    members = graph.get(f"/groups/{graph.group('Sales')}/members", top="999").json()["value"]
    return next(m["id"] for m in members if m["@odata.type"] == CONTACT)


def _token(sandbox: Sandbox, app_name: str) -> str:
    app = sandbox.app(app_name)
    return sandbox.graph_token(app["client_id"], app["client_secret"])


# --- shape -------------------------------------------------------------------------------------------
def test_a_contact_has_orgcontact_properties_and_no_user_phone_properties(graph: GraphCaller) -> None:
    body = graph.get(f"/contacts/{_vendor(graph)}").json()
    assert body["@odata.context"].endswith("/$metadata#contacts/$entity")
    assert set(body) == {"@odata.context", *CONTACT_PROPERTIES}
    assert not {"mobilePhone", "businessPhones", "accountEnabled", "userPrincipalName"} & set(body)
    assert body["companyName"] == "Vendor Ltd" and body["department"] == "Customer Support"
    assert {p["type"] for p in body["phones"]} == {"business", "mobile"}
    assert set(body["addresses"][0]) == {"city", "countryOrRegion", "officeLocation", "postalCode", "state", "street"}
    assert body["onPremisesSyncEnabled"] is None and body["serviceProvisioningErrors"] == []


def test_a_contact_member_without_select_has_every_contact_property(graph: GraphCaller) -> None:
    members = graph.get(f"/groups/{graph.group('Sales')}/members").json()["value"]
    contact = next(m for m in members if m["@odata.type"] == CONTACT)
    assert set(contact) == {"@odata.type", *CONTACT_PROPERTIES}


@pytest.mark.parametrize("relation", ["members", "transitiveMembers"])
def test_select_on_mixed_members_leaves_out_what_a_type_lacks(graph: GraphCaller, relation: str) -> None:
    items = graph.get(
        f"/groups/{graph.group('Sales')}/{relation}", select="id,mail,phones,businessPhones,companyName", top="999"
    ).json()["value"]
    contact = next(i for i in items if i["@odata.type"] == CONTACT)
    user = next(i for i in items if i["@odata.type"] == "#microsoft.graph.user")
    assert set(contact) == {"@odata.type", "id", "mail", "phones", "companyName"}
    assert set(user) == {"@odata.type", "id", "mail", "businessPhones", "companyName"}
    assert contact["phones"][0] == {"number": "+44 20 7946 0018", "type": "business"}


def test_the_contact_cast_lists_only_contacts_and_checks_their_properties(graph: GraphCaller) -> None:
    body = graph.get(f"/groups/{graph.group('Sales')}/members/microsoft.graph.orgContact", select="id,phones").json()
    assert body["@odata.context"].endswith("/$metadata#contacts(id,phones)")
    assert [i["@odata.type"] for i in body["value"]] == [CONTACT]
    error = assert_graph_error(
        graph.get(f"/groups/{graph.group('Sales')}/members/microsoft.graph.orgContact", select="mobilePhone"),
        400,
        "Request_BadRequest",
    )
    assert "'mobilePhone' on type 'microsoft.graph.orgContact'" in error["message"]


# --- permissions -------------------------------------------------------------------------------------
def test_without_orgcontact_read_a_contact_member_has_limited_information(graph: GraphCaller, sandbox: Sandbox) -> None:
    token = _token(sandbox, "no_contacts_app")  # GroupMember.Read.All + User.Read.All
    items = graph.get(
        f"/groups/{graph.group('Sales')}/members", token=token, select="id,displayName,mail,phones"
    ).json()["value"]
    contact = next(i for i in items if i["@odata.type"] == CONTACT)
    assert contact == {"@odata.type": CONTACT, "id": contact["id"], "displayName": None, "mail": None, "phones": []}
    user = next(i for i in items if i["@odata.type"] == "#microsoft.graph.user")
    assert user["mail"]


def test_the_sync_app_reads_contact_members_with_orgcontact_read(graph: GraphCaller) -> None:
    items = graph.get(f"/groups/{graph.group('Sales')}/members", select="id,mail").json()["value"]
    assert next(i for i in items if i["@odata.type"] == CONTACT)["mail"] == "support@vendor.example"


@pytest.mark.parametrize("path", ["/contacts", "/contacts/{vendor}", "/contacts/delta", "/contacts/{vendor}/memberOf"])
def test_contact_reads_without_orgcontact_read_are_forbidden(graph: GraphCaller, sandbox: Sandbox, path: str) -> None:
    token = _token(sandbox, "no_contacts_app")
    response = graph.get(path.format(vendor=_vendor(graph)), token=token)
    error = assert_graph_error(response, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."


# --- /contacts ---------------------------------------------------------------------------------------
def test_contacts_page_like_users_with_an_opaque_skiptoken(graph: GraphCaller, admin: Admin) -> None:
    created = {admin.contact(f"partner.{n}", company="Acme") for n in ("one", "two", "three")}
    first = graph.get("/contacts", top="2", select="id,displayName").json()
    assert first["@odata.context"].endswith("/$metadata#contacts(id,displayName)")
    assert len(first["value"]) == 2 and all("@odata.type" not in i for i in first["value"])
    query = parse_qs(urlsplit(first["@odata.nextLink"]).query)
    assert query["$top"] == ["2"] and query["$select"] == ["id,displayName"] and "$skiptoken" in query
    ids = [i["id"] for i in graph.all_pages("/contacts", top="2")]
    assert len(ids) == len(set(ids)) == 4 and created < set(ids)
    assert_graph_error(graph.get("/contacts", top="1000"), 400, "Request_BadRequest")
    assert_graph_error(graph.get("/contacts", select="id,businessPhones"), 400, "Request_BadRequest")


def test_contacts_filter_by_mail_count_and_search(graph: GraphCaller, admin: Admin) -> None:
    admin.contact("wanda.walker", company="Acme")
    found = graph.get("/contacts", filter="mail eq 'SUPPORT@vendor.example'").json()["value"]
    assert [c["displayName"] for c in found] == ["Vendor Support"]
    by_company = graph.get("/contacts", filter="companyName eq 'acme'").json()["value"]
    assert [c["displayName"] for c in by_company] == ["Wanda Walker"]
    assert_graph_error(graph.get("/contacts", filter="startswith(mail,'s')"), 400, "Request_UnsupportedQuery")
    assert_graph_error(graph.get("/contacts/$count"), 400, "Request_BadRequest")
    assert graph.get("/contacts/$count", headers=EVENTUAL).text == "2"
    searched = graph.get("/contacts", headers=EVENTUAL, search='"displayName:wa"', count="true").json()
    assert searched["@odata.count"] == 1 and searched["value"][0]["displayName"] == "Wanda Walker"


def test_unknown_or_non_contact_ids_are_404(graph: GraphCaller) -> None:
    assert_graph_error(graph.get("/contacts/00000000-0000-0000-0000-000000000000"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get(f"/contacts/{graph.user_in('Sales')}"), 404, "Request_ResourceNotFound")


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/contacts", "Create"),
        ("PATCH", "/contacts/{vendor}", "Update"),
        ("DELETE", "/contacts/{vendor}", "Delete"),
    ],
)
def test_contacts_are_read_only_in_graph(graph: GraphCaller, method: str, path: str, operation: str) -> None:
    response = graph.write(method, path.format(vendor=_vendor(graph)), {"displayName": "X"})
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert error["message"] == (
        f"Data contract version does not allow '{operation}' operations against instances of resource 'OrgContact'."
    )
    assert graph.get(f"/contacts/{_vendor(graph)}").json()["displayName"] == "Vendor Support"


# --- a contact's groups ------------------------------------------------------------------------------
def test_member_of_and_transitive_member_of_of_a_contact(graph: GraphCaller, admin: Admin) -> None:
    contact = admin.contact("nora.nested", group=graph.group("IT Support Tier 2"))
    direct = graph.get(f"/contacts/{contact}/memberOf", select="id,displayName").json()
    assert [g["displayName"] for g in direct["value"]] == ["IT Support Tier 2"]
    assert direct["value"][0]["@odata.type"] == "#microsoft.graph.group"
    transitive = graph.get(f"/contacts/{contact}/transitiveMemberOf", select="id").json()["value"]
    assert {g["id"] for g in transitive} == {graph.group("IT Support Tier 2"), graph.group("IT Support")}


def test_check_and_get_member_groups_of_a_contact_need_directory_read(graph: GraphCaller, sandbox: Sandbox) -> None:
    vendor, sales, it = _vendor(graph), graph.group("Sales"), graph.group("IT Support")
    assert_graph_error(
        graph.post(f"/contacts/{vendor}/checkMemberGroups", {"groupIds": [sales]}), 403, "Authorization_RequestDenied"
    )
    token = _token(sandbox, "directory_reader_app")
    checked = graph.post(f"/contacts/{vendor}/checkMemberGroups", {"groupIds": [sales, it]}, token=token).json()
    assert checked["value"] == [sales]
    groups = graph.post(f"/contacts/{vendor}/getMemberGroups", {"securityEnabledOnly": False}, token=token).json()
    assert groups["value"] == [sales]
    via_directory = graph.post(f"/directoryObjects/{vendor}/checkMemberGroups", {"groupIds": [sales]}, token=token)
    assert via_directory.json()["value"] == [sales]


# --- delta -------------------------------------------------------------------------------------------
def _contacts_delta(graph: GraphCaller, sandbox: Sandbox, query: str = "") -> tuple[list[dict[str, Any]], str]:
    items, delta_link, _ = graph.delta_round(f"{sandbox.info['graph_url']}/v1.0/contacts/delta{query}")
    return items, delta_link


def test_contacts_delta_initial_round_has_the_documented_default_properties(
    graph: GraphCaller, sandbox: Sandbox
) -> None:
    items, delta_link = _contacts_delta(graph, sandbox)
    assert [set(i) for i in items] == [set(CONTACT_DELTA_DEFAULT_PROPERTIES)]
    assert "/contacts/delta?$deltatoken=" in delta_link
    assert _contacts_delta(graph, sandbox, "?$deltatoken=latest")[0] == []
    assert_graph_error(graph.get("/contacts/delta", select="mobilePhone"), 400, "Request_BadRequest")


def test_contacts_delta_sees_created_updated_and_deleted_contacts(
    graph: GraphCaller, sandbox: Sandbox, admin: Admin
) -> None:
    _, delta_link = _contacts_delta(graph, sandbox, "?$select=displayName,companyName,phones")
    vendor = _vendor(graph)
    new = admin.contact("carl.created", company="Acme", phones=ACME_PHONES)
    admin.patch_contact(vendor, companyName="Vendor Group plc")
    changed, delta_link, _ = graph.delta_round(delta_link)
    by_id = {i["id"]: i for i in changed}
    assert by_id[new] == {"id": new, "displayName": "Carl Created", "companyName": "Acme"}  # phones: never
    assert by_id[vendor]["companyName"] == "Vendor Group plc"

    admin.patch_contact(vendor, phones=[{"number": "+44 1", "type": "business"}])
    quiet, delta_link, _ = graph.delta_round(delta_link)
    assert quiet == []  # contacts/delta does not track phones (docs/sandbox.md)

    admin.delete_contact(new)
    removed, _, _ = graph.delta_round(delta_link)
    assert removed == [{"id": new, "@removed": {"reason": "deleted"}}]


def test_contacts_delta_minimal_returns_only_changed_properties(
    graph: GraphCaller, sandbox: Sandbox, admin: Admin
) -> None:
    _, delta_link = _contacts_delta(graph, sandbox)
    admin.patch_contact(_vendor(graph), jobTitle="Escalations")
    changed, _, _ = graph.delta_round(delta_link, headers={"Prefer": "return=minimal"})
    assert changed == [{"id": _vendor(graph), "jobTitle": "Escalations"}]


def test_an_expired_contacts_delta_token_is_sync_state_not_found(graph: GraphCaller, sandbox: Sandbox) -> None:
    _, delta_link = _contacts_delta(graph, sandbox)
    sandbox.control("POST", "graph", "delta/expire")
    assert_graph_error(graph.get(delta_link), 400, "syncStateNotFound")


def test_group_delta_reports_contact_members_with_their_type(
    graph: GraphCaller, sandbox: Sandbox, admin: Admin
) -> None:
    sales = graph.group("Sales")
    start = f"{sandbox.info['graph_url']}/v1.0/groups/delta?$filter=id eq '{sales}'&$select=members"
    items, delta_link, _ = graph.delta_round(start)
    initial = [m for i in items for m in i["members@delta"]]
    assert {"@odata.type": CONTACT, "id": _vendor(graph)} in initial
    joiner = admin.contact("jo.joiner", group=sales)
    admin.delete_contact(_vendor(graph))
    changed, _, _ = graph.delta_round(delta_link)
    members = {m["id"]: m for i in changed for m in i["members@delta"]}
    assert members[joiner] == {"@odata.type": CONTACT, "id": joiner}
    assert next(m for m in members.values() if "@removed" in m)["@odata.type"] == CONTACT


# --- $batch ------------------------------------------------------------------------------------------
def test_contact_requests_run_inside_a_batch(graph: GraphCaller) -> None:
    vendor = _vendor(graph)
    steps = [
        {"id": "get", "method": "GET", "url": f"/contacts/{vendor}?$select=id,phones"},
        {"id": "groups", "method": "GET", "url": f"contacts/{vendor}/memberOf?$select=id"},
        {"id": "list", "method": "GET", "url": "/contacts?$top=1"},
        {"id": "delta", "method": "GET", "url": "/contacts/delta?$select=mail"},
        {
            "id": "check",
            "method": "POST",
            "url": f"/contacts/{vendor}/checkMemberGroups",
            "headers": {"Content-Type": "application/json"},
            "body": {"groupIds": [graph.group("Sales")]},
        },
    ]
    responses = {r["id"]: r for r in graph.batch(steps).json()["responses"]}
    assert responses["get"]["status"] == 200 and len(responses["get"]["body"]["phones"]) == 2
    assert responses["groups"]["body"]["value"] == [
        {"@odata.type": "#microsoft.graph.group", "id": graph.group("Sales")}
    ]
    assert responses["list"]["status"] == 200 and "@odata.deltaLink" in responses["delta"]["body"]
    assert responses["check"]["status"] == 403  # Directory.Read.All only, as on the wire


# --- control API and the tenant helpers --------------------------------------------------------------
def test_admin_helpers_create_change_and_delete_a_contact(graph: GraphCaller, admin: Admin) -> None:
    sales = graph.group("Sales")
    contact = admin.contact("petra.partner", group=sales, company="Partner Ltd", phones=ACME_PHONES, jobTitle="Buyer")
    body = graph.get(f"/contacts/{contact}").json()
    assert body["mail"] == "petra.partner@partner.example" and body["givenName"] == "Petra"
    assert body["companyName"] == "Partner Ltd" and body["jobTitle"] == "Buyer" and body["phones"] == ACME_PHONES
    assert contact in admin.members(sales)

    admin.patch_contact(contact, department="Procurement", phones=[])
    assert graph.get(f"/contacts/{contact}", select="department,phones").json()["phones"] == []

    admin.delete_contact(contact)
    assert_graph_error(graph.get(f"/contacts/{contact}"), 404, "Request_ResourceNotFound")
    assert contact not in admin.members(sales)
    assert_graph_error(
        graph.write("POST", f"/directory/deletedItems/{contact}/restore"), 404, "Request_ResourceNotFound"
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"displayName": "X", "mobilePhone": "+1"}, "'mobilePhone' is not a writable orgContact property"),
        ({"displayName": "X", "phones": [{"number": "1", "type": "cell"}]}, "with type one of"),
        (
            {"displayName": "X", "phones": [{"number": "1", "type": "mobile"}, {"number": "2", "type": "mobile"}]},
            "a second 'mobile' phone",
        ),
        ({"displayName": "X", "addresses": [{"town": "Leeds"}]}, "address {'town': 'Leeds'} may only have"),
        ({"mail": "x@example.org"}, "displayName is required"),
    ],
)
def test_the_control_api_refuses_what_exchange_would_not_keep(
    sandbox: Sandbox, body: dict[str, Any], words: str
) -> None:
    with pytest.raises(requests.HTTPError) as caught:
        sandbox.control("POST", "graph", "contacts", body)
    assert caught.value.response.status_code == 400
    assert words in caught.value.response.json()["error"]


def test_the_control_api_names_an_unknown_contact(sandbox: Sandbox, graph: GraphCaller) -> None:
    for method, payload in (("PATCH", {"jobTitle": "x"}), ("DELETE", None)):
        with pytest.raises(requests.HTTPError) as caught:
            sandbox.control(method, "graph", f"contacts/{graph.user_in('Sales')}", payload)
        assert (
            caught.value.response.status_code == 404 and "no such orgContact" in caught.value.response.json()["error"]
        )
    with pytest.raises(requests.HTTPError) as caught:
        sandbox.control("PATCH", "graph", f"contacts/{_vendor(graph)}", {"id": "other"})
    assert caught.value.response.status_code == 400


def test_control_api_changes_bump_the_directory_version(sandbox: Sandbox, graph: GraphCaller) -> None:
    before = sandbox.state("graph")["version"]
    created = sandbox.control("POST", "graph", "contacts", {"displayName": "Versioned", "phones": ACME_PHONES})
    assert created["@odata.type"] == CONTACT and set(created) == {"@odata.type", *CONTACT_PROPERTIES}
    updated = sandbox.control("PATCH", "graph", f"contacts/{created['id']}", {"jobTitle": "New", "phones": ACME_PHONES})
    assert updated == {"id": created["id"], "changed": ["jobTitle"], "version": before + 2}
    deleted = sandbox.control("DELETE", "graph", f"contacts/{created['id']}")
    assert deleted == {"id": created["id"], "deleted": True, "version": before + 3}
