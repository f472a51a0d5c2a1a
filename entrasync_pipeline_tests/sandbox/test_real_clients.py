"""The vendors' own clients against the sandbox: Microsoft's ``msgraph-sdk`` with ``azure-identity``,
and the community ``zammad_py``.

Our clients were written from the same reference documents as the emulators, so an emulator that
follows our client's habits would pass our tests and still fail the real clients. These clients
were written against the real services; what they send (the ``graph.user`` cast alias,
``delta()``, ``@odata.type`` in every write, ``sort_by``/``order_by``, ``expand=true`` on every
list, paging that ends on a short page) the sandbox must answer as Graph and Zammad do. Both talk
to the session's sandbox over loopback HTTPS with its CA and fetch real tokens from its token
endpoint; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Awaitable, Callable, TypeVar

import httpx
import pytest
from azure.identity import CertificateCredential, ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.org_contact import OrgContact
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.phone_type import PhoneType
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.user import User
from msgraph.generated.users.item.check_member_groups.check_member_groups_post_request_body import (
    CheckMemberGroupsPostRequestBody,
)
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory, PageIterator
from requests import HTTPError
from zammad_py import ZammadAPI

from entrasync_pipeline_tests.conftest import Sandbox

T = TypeVar("T")
MAX_PAGES = 50  # a paging loop that has not ended by then never will


# --- msgraph-sdk + azure-identity ------------------------------------------------------------------
def _credential(sandbox: Sandbox, app: str = "sync_app", certificate: bool = False) -> Any:
    """An azure-identity credential against the sandbox's authority, trusting its CA.

    ``authority`` is the authority host; azure-identity appends the tenant. Instance discovery
    would ask login.microsoftonline.com whether the host is an Entra cloud: off.
    """
    info = sandbox.info
    host, tenant = info["authority"].rsplit("/", 1)
    options = {"authority": host, "disable_instance_discovery": True, "connection_verify": info["ca_bundle"]}
    if certificate:
        with open(info[app]["private_key_path"], "rb") as key, open(info[app]["certificate_path"], "rb") as cert:
            pem = key.read() + cert.read()
        return CertificateCredential(tenant, info[app]["client_id"], certificate_data=pem, **options)
    if app in info:
        return ClientSecretCredential(tenant, info[app]["client_id"], info[app]["client_secret"], **options)
    registration = sandbox.app(app)
    return ClientSecretCredential(tenant, registration["client_id"], registration["client_secret"], **options)


def _graph_client(sandbox: Sandbox, credential: Any) -> GraphServiceClient:
    """A GraphServiceClient whose httpx client trusts the sandbox CA and ignores proxy variables.

    The token scope is ``<graph base>/.default``, as for a national cloud; the auth provider only
    sends tokens to the hosts it is told about.
    """
    graph = sandbox.info["graph_url"]
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[f"{graph}/.default"], allowed_hosts=["127.0.0.1"])
    tls = ssl.create_default_context(cafile=sandbox.info["ca_bundle"])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=tls, trust_env=False, base_url=f"{graph}/v1.0", timeout=30)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{graph}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def _run(sandbox: Sandbox, work: Callable[[GraphServiceClient], Awaitable[T]], credential: Any = None) -> T:
    """Run ``work`` with a fresh client in its own event loop (httpx clients belong to one loop)."""

    async def main() -> T:
        return await work(_graph_client(sandbox, credential or _credential(sandbox)))

    return asyncio.run(main())


def _eventual(query: Any) -> RequestConfiguration:
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("ConsistencyLevel", "eventual")
    return config


async def _all_pages(client: GraphServiceClient, first: Any) -> list[Any]:
    """Every item of a collection through the SDK's PageIterator (it follows @odata.nextLink)."""
    items: list[Any] = []

    def keep(item: Any) -> bool:
        items.append(item)
        return True

    await PageIterator(first, client.request_adapter).iterate(keep)
    return items


def _live_members(sandbox: Sandbox, group: str, kind: str | None = None) -> set[str]:
    """Direct members as v1.0 lists them (no service principals), optionally of one type."""
    state = sandbox.state("graph")
    types = {oid: obj["@odata.type"] for oid, obj in state["objects"].items()}
    wanted = {f"#microsoft.graph.{kind}"} if kind else set(types.values()) - {"#microsoft.graph.servicePrincipal"}
    return {m for m in state["groups"][sandbox.info["groups"][group]] if types[m] in wanted}


@pytest.mark.parametrize("certificate", [False, True], ids=["client-secret", "certificate"])
def test_members_page_by_page_with_page_iterator(sandbox: Sandbox, certificate: bool) -> None:
    group = sandbox.info["groups"]["IT Support"]
    query = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(top=5, select=["id", "displayName"])

    async def work(client: GraphServiceClient) -> list[Any]:
        first = await client.groups.by_group_id(group).members.get(RequestConfiguration(query_parameters=query))
        assert first.odata_next_link and len(first.value) == 5
        return await _all_pages(client, first)

    members = _run(sandbox, work, _credential(sandbox, certificate=certificate))
    assert {m.id for m in members} == _live_members(sandbox, "IT Support")
    assert sandbox.stats("graph")["requests"]["GET /v1.0/groups/{id}/members"] == -(-len(members) // 5)
    types = {oid: obj["@odata.type"] for oid, obj in sandbox.state("graph")["objects"].items()}
    # Each item parsed into the model its @odata.type names (User, Group, Device, …).
    assert all(f"#microsoft.graph.{type(m).__name__}".lower() == types[m.id].lower() for m in members)
    assert {type(m).__name__ for m in members} >= {"User", "Group", "Device"}


def test_graph_user_cast_lists_only_users(sandbox: Sandbox) -> None:
    group = sandbox.info["groups"]["IT Support"]

    async def work(client: GraphServiceClient) -> tuple[list[Any], list[Any]]:
        members = client.groups.by_group_id(group)
        direct = await _all_pages(client, await members.members.graph_user.get())
        nested = await _all_pages(client, await members.transitive_members.graph_user.get())
        return direct, nested

    direct, nested = _run(sandbox, work)
    assert all(isinstance(u, User) for u in direct + nested)
    assert {u.id for u in direct} == _live_members(sandbox, "IT Support", "user")
    assert {u.id for u in direct} < {u.id for u in nested}
    assert "GET /v1.0/groups/{id}/members/{segment}" in sandbox.stats("graph")["requests"]


def test_delta_function_call_rounds(sandbox: Sandbox) -> None:
    """``users.delta`` sends ``/users/delta()``; a later round from the deltaLink brings the change."""
    sales = sandbox.info["groups"]["Sales"]

    async def round_of(builder: Any, first: Any) -> tuple[list[Any], str]:
        page, items = first, list(first.value)
        while page.odata_next_link:
            page = await builder.with_url(page.odata_next_link).get()
            items += page.value
        return items, page.odata_delta_link

    async def work(client: GraphServiceClient) -> tuple[list[Any], list[Any], list[Any]]:
        users, link = await round_of(client.users.delta, await client.users.delta.get())
        user = users[0].id
        admin = _graph_client(sandbox, _credential(sandbox, "admin_app"))
        await admin.users.by_user_id(user).patch(User(job_title="Delta Probe"))
        changed, _ = await round_of(client.users.delta, await client.users.delta.with_url(link).get())
        groups_query = client.groups.delta.DeltaRequestBuilderGetQueryParameters(
            filter=f"id eq '{sales}'", select=["displayName", "members"]
        )
        groups, _ = await round_of(
            client.groups.delta,
            await client.groups.delta.get(RequestConfiguration(query_parameters=groups_query)),
        )
        return users, changed, groups

    users, changed, groups = _run(sandbox, work)
    assert len({u.id for u in users}) == len(users) > 1
    assert [(u.id, u.job_title) for u in changed] == [(users[0].id, "Delta Probe")]
    assert [g.id for g in groups] == [sales] and groups[0].display_name == "Sales"
    assert "GET /v1.0/users/delta()" in sandbox.stats("graph")["requests"]


def test_users_by_filter(sandbox: Sandbox) -> None:
    user = next(o for o in sandbox.state("graph")["objects"].values() if o.get("mail") and "@" in o["mail"])
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        filter=f"mail eq '{user['mail'].upper()}'", select=["id", "mail"]
    )
    found = _run(sandbox, lambda c: c.users.get(RequestConfiguration(query_parameters=query)))
    assert [u.id for u in found.value] == [user["id"]]


def test_search_needs_consistency_level_and_is_applied(sandbox: Sandbox) -> None:
    objects = sandbox.state("graph")["objects"].values()
    expected = {o["id"] for o in objects if o["@odata.type"] == "#microsoft.graph.user" and _has_word(o, "an")}
    assert 0 < len(expected) < sum(o["@odata.type"] == "#microsoft.graph.user" for o in objects)
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        search='"displayName:an"', count=True, select=["id", "displayName"]
    )

    async def work(client: GraphServiceClient) -> tuple[Any, ODataError]:
        found = await client.users.get(_eventual(query))
        with pytest.raises(ODataError) as refused:
            await client.users.get(RequestConfiguration(query_parameters=query))
        return found, refused.value

    found, refused = _run(sandbox, work)
    assert {u.id for u in found.value} == expected and found.odata_count == len(expected)
    assert refused.response_status_code == 400 and refused.error.code == "Request_UnsupportedQuery"
    assert "ConsistencyLevel: eventual" in refused.error.message


def _has_word(obj: dict[str, Any], prefix: str) -> bool:
    """A displayName word starting with ``prefix`` (the seed's names are plain words)."""
    return any(word.lower().startswith(prefix) for word in (obj.get("displayName") or "").split())


def test_search_on_members_and_groups(sandbox: Sandbox) -> None:
    group = sandbox.info["groups"]["IT Support"]
    members_query = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(search='"displayName:tier"')
    groups_query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(search='"displayName:support"')

    async def work(client: GraphServiceClient) -> tuple[Any, Any]:
        members = await client.groups.by_group_id(group).members.get(_eventual(members_query))
        groups = await client.groups.get(_eventual(groups_query))
        return members, groups

    members, groups = _run(sandbox, work)
    assert [m.display_name for m in members.value] == ["IT Support Tier 2"]
    assert sorted(g.display_name for g in groups.value) == ["IT Support", "IT Support Tier 2"]


def test_groups_listing_and_filter(sandbox: Sandbox) -> None:
    query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(filter="displayName eq 'Sales'")

    async def work(client: GraphServiceClient) -> tuple[list[Any], Any]:
        every = await _all_pages(client, await client.groups.get())
        return every, await client.groups.get(RequestConfiguration(query_parameters=query))

    every, sales = _run(sandbox, work)
    assert all(isinstance(g, Group) for g in every)
    assert {g.display_name: g.id for g in every} == sandbox.info["groups"]
    assert [g.id for g in sales.value] == [sandbox.info["groups"]["Sales"]]


def test_writes_carry_odata_type(sandbox: Sandbox) -> None:
    """The SDK serialises ``"@odata.type": "#microsoft.graph.user"`` into every user it writes."""
    assert User().odata_type == "#microsoft.graph.user"
    sales = sandbox.info["groups"]["Sales"]
    new = User(
        account_enabled=True,
        display_name="Probe User",
        mail_nickname="probe",
        user_principal_name="probe@contoso.example",
        password_profile=PasswordProfile(password="Sandbox-Probe-1"),
    )

    async def work(client: GraphServiceClient) -> Any:
        created = await client.users.post(new)
        await client.users.by_user_id(created.id).patch(User(department="Probes", job_title="Tester"))
        ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{created.id}")
        await client.groups.by_group_id(sales).members.ref.post(ref)
        return created

    created = _run(sandbox, work, _credential(sandbox, "admin_app"))
    state = sandbox.state("graph")
    stored = state["objects"][created.id]
    assert (stored["displayName"], stored["department"], stored["jobTitle"]) == ("Probe User", "Probes", "Tester")
    assert created.id in state["groups"][sales]


def test_admin_deletes_restores_and_checks_membership(sandbox: Sandbox) -> None:
    """The rest of the write API through the SDK: soft delete, restore, membership removal and check."""
    sales, support = sandbox.info["groups"]["Sales"], sandbox.info["groups"]["IT Support"]
    user = sorted(_live_members(sandbox, "Sales", "user"))[0]

    async def work(client: GraphServiceClient) -> tuple[Any, list[str], list[str]]:
        await client.users.by_user_id(user).delete()
        restored = await client.directory.deleted_items.by_directory_object_id(user).restore.post()
        await client.groups.by_group_id(sales).members.by_directory_object_id(user).ref.delete()
        body = CheckMemberGroupsPostRequestBody(group_ids=[sales, support])
        checked = await client.users.by_user_id(user).check_member_groups.post(body)
        with pytest.raises(ODataError) as gone:
            await client.groups.by_group_id(sales).members.by_directory_object_id(user).ref.delete()
        return restored, checked.value, [gone.value.error.code]

    restored, checked, gone = _run(sandbox, work, _credential(sandbox, "admin_app"))
    assert isinstance(restored, User) and restored.id == user
    assert sales not in checked and gone == ["Request_ResourceNotFound"]
    assert user in sandbox.state("graph")["objects"] and user not in sandbox.state("graph")["groups"][sales]


def test_odata_error_on_404_and_403(sandbox: Sandbox) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    group = sandbox.info["groups"]["Sales"]

    async def absent(client: GraphServiceClient) -> ODataError:
        with pytest.raises(ODataError) as caught:
            await client.users.by_user_id(missing).get()
        return caught.value

    async def forbidden(client: GraphServiceClient) -> ODataError:
        with pytest.raises(ODataError) as caught:
            await client.groups.by_group_id(group).members.get()
        return caught.value

    not_found = _run(sandbox, absent)
    denied = _run(sandbox, forbidden, _credential(sandbox, "users_only_app"))
    assert (not_found.response_status_code, not_found.error.code) == (404, "Request_ResourceNotFound")
    assert missing in not_found.error.message and not_found.error.inner_error.request_id
    assert (denied.response_status_code, denied.error.code) == (403, "Authorization_RequestDenied")
    assert denied.error.message == "Insufficient privileges to complete the operation."


def test_contacts_parse_into_the_sdk_org_contact_model(sandbox: Sandbox) -> None:
    """Contacts as the SDK reads them: ``/contacts``, the ``graph.orgContact`` cast,
    ``/contacts/delta()``; their writes are refused with an ODataError."""
    sales = sandbox.info["groups"]["Sales"]

    async def work(client: GraphServiceClient) -> tuple[list[Any], list[Any], list[Any], ODataError]:
        listed = await _all_pages(client, await client.contacts.get())
        cast = await client.groups.by_group_id(sales).members.graph_org_contact.get()
        delta = await client.contacts.delta.get()
        with pytest.raises(ODataError) as caught:
            await client.contacts.by_org_contact_id(listed[0].id).delete()
        return listed, cast.value, delta.value, caught.value

    listed, cast, delta, refused = _run(sandbox, work)
    assert all(isinstance(c, OrgContact) for c in listed + cast + delta)
    vendor = next(c for c in listed if c.display_name == "Vendor Support")
    assert vendor.company_name == "Vendor Ltd" and vendor.addresses[0].city == "London"
    assert {(p.type, p.number[:3]) for p in vendor.phones} == {(PhoneType.Business, "+44"), (PhoneType.Mobile, "+44")}
    assert [c.id for c in cast] == [vendor.id] and [c.mail for c in delta] == [vendor.mail]
    assert (refused.response_status_code, refused.error.code) == (400, "Request_BadRequest")
    assert "GET /v1.0/contacts/delta()" in sandbox.stats("graph")["requests"]


# --- zammad_py ---------------------------------------------------------------------------------------
def _zammad(sandbox: Sandbox, token: str | None = None) -> ZammadAPI:
    client = ZammadAPI(url=f"{sandbox.info['zammad_url']}/api/v1/", http_token=token or sandbox.info["zammad_token"])
    client.session.verify = sandbox.info["ca_bundle"]
    client.session.trust_env = False
    return client


def _every_page(first: Any) -> tuple[list[dict[str, Any]], int]:
    """Walk zammad_py's Pagination to its last page; fails instead of looping for ever."""
    page, items = first, list(first)
    for count in range(1, MAX_PAGES):
        if page.is_last_page():
            return items, count
        page = page.next_page()
        items += list(page)
    pytest.fail(f"paging did not end after {MAX_PAGES} pages")


def _zammad_error(call: Callable[[], Any]) -> dict[str, Any]:
    """zammad_py raises HTTPError with the response text; the Zammad error body it carried."""
    with pytest.raises(HTTPError) as caught:
        call()
    return json.loads(str(caught.value))


def test_zammad_users_paging(sandbox: Sandbox) -> None:
    client = _zammad(sandbox)
    users, pages = _every_page(client.user.all(filters={"per_page": 3}))
    expected = [u["id"] for u in sandbox.state("zammad")["users"]]
    assert [u["id"] for u in users] == sorted(expected) and pages == len(expected) // 3 + 1


def test_zammad_search_sort_by_and_order_by(sandbox: Sandbox) -> None:
    client = _zammad(sandbox)
    for login in ("sortprobe-b", "sortprobe-c", "sortprobe-a"):
        client.user.create({"login": login, "firstname": "Sort", "lastname": login[-1].upper()})

    def logins(**sort: str) -> list[str]:
        return [u["login"] for u in client.user.search("sortprobe", filters={"per_page": 10, **sort})]

    assert logins(sort_by="login", order_by="asc") == ["sortprobe-a", "sortprobe-b", "sortprobe-c"]
    assert logins(sort_by="login", order_by="desc") == ["sortprobe-c", "sortprobe-b", "sortprobe-a"]
    assert logins(sort_by="login") == ["sortprobe-c", "sortprobe-b", "sortprobe-a"]  # order_by defaults to desc
    assert logins(sort_by="firstname,lastname", order_by="asc,asc") == ["sortprobe-a", "sortprobe-b", "sortprobe-c"]
    assert logins() == ["sortprobe-a", "sortprobe-c", "sortprobe-b"]  # active desc, updated_at desc


def test_zammad_invalid_sort_is_answered_like_zammad(sandbox: Sandbox) -> None:
    search = {"per_page": 5, "sort_by": "no_such_column"}
    as_admin = _zammad_error(lambda: _zammad(sandbox).user.search("example", filters=search))
    assert as_admin == {"error": "Found invalid column 'no_such_column' for sorting."}
    as_agent = _zammad_error(lambda: _zammad(sandbox, sandbox.zammad_token("agent")).user.search("x", filters=search))
    assert set(as_agent) == {"error"} and as_agent["error"].endswith(": Please contact your administrator.")
    direction = _zammad_error(lambda: _zammad(sandbox).user.search("x", filters={"sort_by": "login", "order_by": "up"}))
    assert direction == {"error": "Found invalid order by value up. Please use 'asc' or 'desc'."}


def test_zammad_create_update_and_duplicate_email(sandbox: Sandbox) -> None:
    client = _zammad(sandbox)
    created = client.user.create({"firstname": "Dana", "lastname": "Probe", "email": "Dana.Probe@Example.org"})
    assert (created["email"], created["login"], created["role_ids"]) == ("dana.probe@example.org",) * 2 + ([3],)
    updated = client.user.update(created["id"], {"lastname": "Renamed"})
    assert (updated["id"], updated["lastname"], updated["firstname"]) == (created["id"], "Renamed", "Dana")
    duplicate = _zammad_error(lambda: client.user.create({"firstname": "Other", "email": "DANA.probe@example.org"}))
    message = "Email address 'dana.probe@example.org' is already used for another user."
    assert duplicate == {"error": message, "error_human": message}


def test_zammad_roles_paging_ends(sandbox: Sandbox) -> None:
    roles, pages = _every_page(_zammad(sandbox).role.all(filters={"per_page": 2}))
    assert [r["name"] for r in roles] == ["Admin", "Agent", "Customer"] and pages == 2
    assert all(r["permissions"] and r["created_by"] == "-" for r in roles)  # zammad_py asks expand=true


def test_zammad_role_and_organization_by_id(sandbox: Sandbox) -> None:
    client = _zammad(sandbox)
    admin = client.role.find(1)
    assert admin["name"] == "Admin" and admin["permission_ids"] and "permissions" not in admin
    organization = client.organization.find(1)
    members = [u["id"] for u in sandbox.state("zammad")["users"] if u["organization_id"] == 1]
    assert (organization["name"], organization["member_ids"]) == ("Zammad Foundation", members)
    assert _zammad_error(lambda: client.role.find(99)) == {
        "error": "Couldn't find Role with 'id'=99",
        "error_human": "Couldn't find Role with 'id'=99",
    }
    assert _zammad_error(lambda: client.organization.find(42))["error"] == "Couldn't find Organization with 'id'=42"


def test_zammad_keys_omitted_as_zammad_omits_them(sandbox: Sandbox) -> None:
    users, _ = _every_page(_zammad(sandbox).user.all(filters={"per_page": 100}))
    with_org = [u for u in users if u["organization_id"] is not None]
    without = [u for u in users if u["organization_id"] is None]
    assert with_org and without
    assert all(u["organization"] == "Zammad Foundation" for u in with_org)
    assert not any("organization" in u for u in without)
