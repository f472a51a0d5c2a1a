"""The Zammad emulator behaves like Zammad 6.x's REST API (reference/zammad-api.md, checklist §9).

Quirks that silently lose data (unknown keys dropped, values of unmigrated attributes ignored,
truncation) are tested as carefully as the errors: the sync must not be able to pass against a
more lenient sandbox.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox


class Zammad:
    def __init__(
        self, sandbox: Sandbox, http: requests.Session, token: str | None = None, scheme: str = "Token token="
    ) -> None:
        self.sandbox, self.http = sandbox, http
        self.auth = f"{scheme}{token or sandbox.info['zammad_token']}"

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **params: Any
    ) -> requests.Response:
        return self.http.request(
            method,
            f"{self.sandbox.info['zammad_url']}/api/v1{path}",
            json=body,
            params=params or None,
            timeout=30,
            headers={"Authorization": self.auth, **(headers or {})},
        )

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.call("POST", "/users", body)
        assert response.status_code == 201, response.text
        return response.json()

    def setup_entra_attributes(self) -> None:
        assert (
            self.call(
                "POST",
                "/object_manager_attributes",
                {
                    "name": "entra_key",
                    "object": "User",
                    "display": "Entra key",
                    "data_type": "input",
                    "data_option": {"type": "text", "maxlength": 64},
                    "active": True,
                    "position": 1600,
                    "screens": {},
                },
            ).status_code
            == 201
        )
        assert (
            self.call(
                "POST",
                "/object_manager_attributes",
                {
                    "name": "entra_object_type",
                    "object": "User",
                    "display": "Entra object type",
                    "data_type": "select",
                    "data_option": {"options": {"user": "User", "contact": "Contact"}},
                    "active": True,
                    "position": 1601,
                    "screens": {},
                },
            ).status_code
            == 201
        )
        assert self.call("POST", "/object_manager_attributes_execute_migrations").json() == {}


@pytest.fixture
def zammad(sandbox: Sandbox, http: requests.Session) -> Zammad:
    return Zammad(sandbox, http)


def _error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "error_human": message}


# --- authentication -------------------------------------------------------------------------------
def test_no_credentials_is_403_authentication_required(zammad: Zammad) -> None:
    response = zammad.http.get(f"{zammad.sandbox.info['zammad_url']}/api/v1/users")
    _error(response, 403, "Authentication required")
    assert response.headers["X-Failure"] == "Authentication required"


@pytest.mark.parametrize(
    "auth, message",
    [
        ("Token token=nope", "Can't find User for Token"),
        ("Bearer nope", "The provided token is invalid."),
        ("Basic " + base64.b64encode(b"admin@helpdesk.example:wrong").decode(), "Invalid BasicAuth credentials"),
    ],
    ids=["token", "bearer", "basic"],
)
def test_bad_credentials_are_401(zammad: Zammad, auth: str, message: str) -> None:
    response = zammad.http.get(f"{zammad.sandbox.info['zammad_url']}/api/v1/users", headers={"Authorization": auth})
    _error(response, 401, message)


def test_expired_token_is_401(zammad: Zammad, sandbox: Sandbox) -> None:
    _error(
        Zammad(sandbox, zammad.http, sandbox.zammad_token("expired")).call("GET", "/users"),
        401,
        "Not authorized (token expired)!",
    )


@pytest.mark.parametrize("scheme", ["Token token=", "Token ", "Bearer "])
def test_a_personal_token_works_in_every_documented_form(zammad: Zammad, sandbox: Sandbox, scheme: str) -> None:
    assert Zammad(sandbox, zammad.http, scheme=scheme).call("GET", "/users/me").json()["id"] == 3


def test_basic_auth_with_login_or_email(zammad: Zammad) -> None:
    auth = "Basic " + base64.b64encode(b"admin@helpdesk.example:sandbox-admin-password").decode()
    response = zammad.http.get(f"{zammad.sandbox.info['zammad_url']}/api/v1/users/me", headers={"Authorization": auth})
    assert response.json()["login"] == "admin@helpdesk.example"


def test_effective_permissions_are_user_and_token(zammad: Zammad, sandbox: Sandbox) -> None:
    readonly = Zammad(sandbox, zammad.http, sandbox.zammad_token("readonly"))  # admin user, ticket.agent token
    _error(readonly.call("GET", "/object_manager_attributes"), 403, "Token authorization failed.")
    # ticket.agent may create customers, but role assignment needs admin.user: silently dropped.
    created = readonly.call("POST", "/users", {"email": "x@example.org", "role_ids": [1]}).json()
    assert created["role_ids"] == [3]


def test_an_agent_cannot_modify_an_admin(zammad: Zammad, sandbox: Sandbox) -> None:
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    _error(agent.call("PUT", "/users/3", {"firstname": "Hacked"}), 403, "Not authorized")


def test_acting_on_behalf_of_another_user(zammad: Zammad, sandbox: Sandbox) -> None:
    assert zammad.call("GET", "/users/me", headers={"From": "agent@helpdesk.example"}).json()["id"] == 4
    _error(zammad.call("GET", "/users/me", headers={"From": "ghost"}), 403, "No such user 'ghost'")
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    _error(
        agent.call("GET", "/users/me", headers={"X-On-Behalf-Of": "3"}),
        403,
        "Current user has no permission to use 'From'/'X-On-Behalf-Of'!",
    )


# --- list, show, search ---------------------------------------------------------------------------
def test_list_is_id_ascending_with_system_user_and_inactive_users(zammad: Zammad) -> None:
    users = zammad.call("GET", "/users", per_page=1000).json()
    ids = [u["id"] for u in users]
    assert ids == sorted(ids) and ids[0] == 1
    assert users[0]["login"] == "-" and users[0]["active"] is False
    assert any(not u["active"] for u in users[1:])


def test_list_pages_default_100_no_total_and_an_empty_page_at_the_end(zammad: Zammad) -> None:
    for i in range(100):
        zammad.create(email=f"bulk{i}@example.org")
    first = zammad.call("GET", "/users")
    assert isinstance(first.json(), list) and len(first.json()) == 100
    assert "Link" not in first.headers and "X-Total-Count" not in first.headers
    second = zammad.call("GET", "/users", page=2).json()
    assert 0 < len(second) < 100
    assert zammad.call("GET", "/users", page=3).json() == []


@pytest.mark.parametrize("cap", [1000, 500])
def test_per_page_above_the_cap_is_silently_reduced(zammad: Zammad, sandbox: Sandbox, cap: int) -> None:
    sandbox.control("PUT", "zammad", "settings", {"page_cap": cap})
    for i in range(3):
        zammad.create(email=f"p{i}@example.org")
    assert len(zammad.call("GET", "/users", per_page=2, page=1).json()) == 2
    response = zammad.call("GET", "/users", per_page=5000)
    assert response.status_code == 200 and len(response.json()) <= cap
    assert sandbox.state("zammad")["page_cap"] == cap


def test_limit_is_an_alias_of_per_page(zammad: Zammad) -> None:
    assert len(zammad.call("GET", "/users", limit=3).json()) == 3


def test_show_unknown_user_is_404_with_the_recorded_message(zammad: Zammad) -> None:
    _error(zammad.call("GET", "/users/0"), 404, "Couldn't find User with 'id'=0")


def test_expand_adds_role_names(zammad: Zammad) -> None:
    user = zammad.call("GET", "/users/3", expand="true").json()
    assert user["roles"] == ["Admin", "Agent"] and user["created_by"] == "-"


def test_search_uses_database_fallback_semantics(zammad: Zammad) -> None:
    zammad.setup_entra_attributes()
    zammad.create(email="searchme@example.org", entra_key="abc-123", entra_object_type="user")
    assert [u["email"] for u in zammad.call("GET", "/users/search", query="SEARCHME").json()] == [
        "searchme@example.org"
    ]
    assert [u["email"] for u in zammad.call("GET", "/users/search", query="abc-1*").json()] == ["searchme@example.org"]
    # Field syntax is Elasticsearch's; the database fallback takes it literally and finds nothing.
    assert zammad.call("GET", "/users/search", query="entra_key:abc-123").json() == []
    everyone = zammad.call("GET", "/users/search", query="", limit=200).json()
    assert 1 not in {u["id"] for u in everyone}


def test_search_condition_is_an_exact_match_on_a_custom_attribute(zammad: Zammad) -> None:
    zammad.setup_entra_attributes()
    zammad.create(email="one@example.org", entra_key="k-1")
    zammad.create(email="two@example.org", entra_key="k-10")
    hits = zammad.call(
        "POST", "/users/search", {"condition": {"user.entra_key": {"operator": "is", "value": "k-1"}}}
    ).json()
    assert [u["email"] for u in hits] == ["one@example.org"]


def test_search_limits_default_50_and_max_200(zammad: Zammad) -> None:
    for i in range(210):
        zammad.create(email=f"s{i}@example.org")
    assert len(zammad.call("GET", "/users/search", query="example.org").json()) == 50
    assert len(zammad.call("GET", "/users/search", query="example.org", per_page=500).json()) == 200
    assert (
        zammad.call("GET", "/users/search", query="example.org", only_total_count="true").json()["total_count"] >= 210
    )


def test_search_needs_agent_or_admin(zammad: Zammad, sandbox: Sandbox) -> None:
    customer_auth = "Basic " + base64.b64encode(b"x:y").decode()
    response = zammad.http.get(
        f"{sandbox.info['zammad_url']}/api/v1/users/search", headers={"Authorization": customer_auth}
    )
    assert response.status_code == 401


# --- create -----------------------------------------------------------------------------------------
def test_create_defaults_match_a_recorded_zammad_user(zammad: Zammad) -> None:
    user = zammad.create(firstname="TestUser", lastname="LastName")
    assert user["login"].startswith("auto-") and user["email"] == ""
    assert user["department"] is None and user["address"] is None and user["phone"] == ""
    assert user["role_ids"] == [3] and user["group_ids"] == {} and user["active"] is True
    assert user["created_by_id"] == user["updated_by_id"] == 3
    assert "password" not in user


def test_email_is_stripped_lower_cased_and_becomes_the_login(zammad: Zammad) -> None:
    user = zammad.create(email="  Jane.Doe@Example.ORG ")
    assert user["email"] == "jane.doe@example.org" and user["login"] == "jane.doe@example.org"
    assert (user["firstname"], user["lastname"]) == ("Jane", "Doe")


def test_duplicate_email_is_422_case_insensitively(zammad: Zammad) -> None:
    zammad.create(email="dup@example.org")
    _error(
        zammad.call("POST", "/users", {"email": "DUP@example.org"}),
        422,
        "Email address 'dup@example.org' is already used for another user.",
    )


def test_invalid_email_is_422(zammad: Zammad) -> None:
    _error(zammad.call("POST", "/users", {"email": "not an email"}), 422, "Invalid email 'not an email'")


def test_a_user_needs_an_identifier(zammad: Zammad) -> None:
    _error(
        zammad.call("POST", "/users", {"note": "nobody"}),
        422,
        "At least one identifier (firstname, lastname, phone, mobile or email) for user is required.",
    )


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"firstname": "Agent First"}, ("Agent", "First")),
        ({"lastname": "Doe, John"}, ("John", "Doe")),
        ({"firstname": "john"}, ("John", "")),
        ({"firstname": "Dr. Jane Roe"}, ("Dr. Jane", "Roe")),
        ({"firstname": " both ", "lastname": " given "}, ("both", "given")),
        ({"email": "pytest0@example.com"}, ("", "")),
    ],
    ids=["split-first-whitespace", "last-comma-first", "capitalise", "title-stays", "both-kept", "email-no-dot"],
)
def test_name_rules(zammad: Zammad, given: dict[str, str], expected: tuple[str, str]) -> None:
    user = zammad.create(**given)
    assert (user["firstname"], user["lastname"]) == expected


def test_login_collisions_get_a_numeric_suffix(zammad: Zammad) -> None:
    zammad.create(login="same", firstname="A")
    assert zammad.create(login="SAME", firstname="B")["login"] == "same1"


def test_unknown_keys_are_dropped_silently(zammad: Zammad) -> None:
    user = zammad.create(email="u@example.org", shoe_size=44, entra_key="not-yet-an-attribute")
    assert "shoe_size" not in user and "entra_key" not in user


def test_long_values_are_truncated_but_editable_inputs_are_refused(zammad: Zammad) -> None:
    user = zammad.create(firstname="F" * 150, lastname="L", phone="1" * 120)
    assert len(user["firstname"]) == 100 and len(user["phone"]) == 100
    _error(
        zammad.call("POST", "/users", {"firstname": "x", "department": "D" * 201}),
        422,
        "Department is longer than the allowed length 200",
    )


def test_unknown_role_id_is_422(zammad: Zammad) -> None:
    _error(
        zammad.call("POST", "/users", {"email": "r@example.org", "role_ids": [99]}),
        422,
        "No value found for 'roles' with id 99",
    )


# --- update and delete --------------------------------------------------------------------------------
def test_update_is_put_only_partial_and_returns_the_full_user(zammad: Zammad) -> None:
    user = zammad.create(email="p@example.org", phone="1")
    assert zammad.call("PATCH", f"/users/{user['id']}", {"phone": "2"}).status_code == 404
    updated = zammad.call("PUT", f"/users/{user['id']}", {"mobile": "3"}).json()
    assert updated["phone"] == "1" and updated["mobile"] == "3" and updated["id"] == user["id"]
    assert updated["updated_at"] >= user["updated_at"]


def test_an_unchanged_put_keeps_updated_at(zammad: Zammad) -> None:
    user = zammad.create(email="same@example.org", phone="1")
    again = zammad.call("PUT", f"/users/{user['id']}", {"phone": "1"}).json()
    assert again["updated_at"] == user["updated_at"]


def test_explicit_null_is_stored(zammad: Zammad) -> None:
    user = zammad.create(email="n@example.org", phone="1")
    assert zammad.call("PUT", f"/users/{user['id']}", {"phone": None}).json()["phone"] is None


def test_login_follows_the_email_when_it_was_the_email(zammad: Zammad) -> None:
    user = zammad.create(email="old@example.org")
    updated = zammad.call("PUT", f"/users/{user['id']}", {"email": "new@example.org"}).json()
    assert updated["login"] == "new@example.org"


def test_deactivating_the_last_admin_is_refused(zammad: Zammad) -> None:
    _error(zammad.call("PUT", "/users/3", {"active": False}), 422, "At least one user needs to have admin permissions.")
    zammad.create(email="second.admin@example.org", role_ids=[1])
    assert zammad.call("PUT", "/users/3", {"active": False}).json()["active"] is False


def test_a_deactivated_users_token_stops_working(zammad: Zammad, sandbox: Sandbox) -> None:
    assert zammad.call("PUT", "/users/4", {"active": False}).status_code == 200
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    assert agent.call("GET", "/users/me").status_code == 401


def test_delete_needs_admin_and_refuses_referenced_users(zammad: Zammad, sandbox: Sandbox) -> None:
    fresh = zammad.create(email="del@example.org")
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    _error(agent.call("DELETE", f"/users/{fresh['id']}"), 403, "Not authorized")
    _error(zammad.call("DELETE", "/users/2"), 422, "Can't delete, object has references.")
    response = zammad.call("DELETE", f"/users/{fresh['id']}")
    assert response.status_code == 200 and response.json() == {}


def test_roles_list(zammad: Zammad) -> None:
    names = {r["id"]: r["name"] for r in zammad.call("GET", "/roles").json()}
    assert names == {1: "Admin", 2: "Agent", 3: "Customer"}


def test_roles_are_paged_sorted_and_shown_one_by_one(zammad: Zammad) -> None:
    """model_index_render: pages (default 500), sort_by/order_by (default id asc); model_show_render."""
    pages = [[r["id"] for r in zammad.call("GET", "/roles", per_page=2, page=n).json()] for n in (1, 2, 3)]
    assert pages == [[1, 2], [3], []]
    by_name = zammad.call("GET", "/roles", sort_by="name", order_by="desc").json()
    assert [r["name"] for r in by_name] == ["Customer", "Agent", "Admin"]
    admin = zammad.call("GET", "/roles/1").json()
    assert set(admin) == {
        "id",
        "name",
        "preferences",
        "default_at_signup",
        "active",
        "note",
        "updated_by_id",
        "created_by_id",
        "created_at",
        "updated_at",
        "permission_ids",
        "group_ids",
    }
    expanded = zammad.call("GET", "/roles/1", expand="true").json()
    assert "admin" in expanded["permissions"] and len(expanded["permissions"]) == len(admin["permission_ids"])
    full = zammad.call("GET", "/roles", full="true", per_page=1).json()
    assert (full["record_ids"], full["total_count"], full["assets"]["Role"]["1"]) == ([1], 3, admin)
    assert zammad.call("GET", "/roles/1", full="true").json() == {"id": 1, "assets": {"Role": {"1": admin}}}
    _error(zammad.call("GET", "/roles/7"), 404, "Couldn't find Role with 'id'=7")
    response = zammad.call("GET", "/roles", sort_by="colour")
    assert (response.status_code, response.json()) == (500, {"error": "Found invalid column 'colour' for sorting."})


def test_organizations_index_and_show(zammad: Zammad, sandbox: Sandbox) -> None:
    users = sandbox.state("zammad")["users"]
    members = [u["id"] for u in users if u["organization_id"] == 1]
    listed = zammad.call("GET", "/organizations").json()
    assert [(o["id"], o["name"], o["member_ids"]) for o in listed] == [(1, "Zammad Foundation", members)]
    shown = zammad.call("GET", "/organizations/1", expand="true").json()
    assert shown["members"] == [u["login"] for u in users if u["organization_id"] == 1]
    _error(zammad.call("GET", "/organizations/5"), 404, "Couldn't find Organization with 'id'=5")


def test_a_customer_sees_only_their_own_organization(zammad: Zammad, sandbox: Sandbox) -> None:
    """organizations_controller.rb#show: a customer without an organization gets ``{}``, not 403."""
    users = sandbox.state("zammad")["users"]
    member = next(u for u in users if u["organization_id"] == 1 and u["role_ids"] == [3])
    loner = next(u for u in users if u["organization_id"] is None and u["role_ids"] == [3] and u["active"])
    as_member = Zammad(sandbox, zammad.http, sandbox.zammad_token("sync"))
    as_member_headers = {"From": str(member["id"])}
    assert as_member.call("GET", "/organizations/1", headers=as_member_headers).json()["name"] == "Zammad Foundation"
    assert len(as_member.call("GET", "/organizations", headers=as_member_headers).json()) == 1
    loner_headers = {"From": str(loner["id"])}
    assert as_member.call("GET", "/organizations", headers=loner_headers).json() == []
    shown = as_member.call("GET", "/organizations/1", headers=loner_headers)
    assert (shown.status_code, shown.json()) == (200, {})


def test_an_organization_is_created_once_whatever_the_case_and_listed_page_by_page(
    zammad: Zammad, sandbox: Sandbox
) -> None:
    """organizations_controller.rb#create: Organization validates ``name`` present and unique
    ignoring case (app/models/organization.rb); the name column is varchar(100)."""
    created = zammad.call("POST", "/organizations", {"name": "  Fabrikam AG  "})
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["member_ids"]) == ("Fabrikam AG", [])
    _error(
        zammad.call("POST", "/organizations", {"name": "FABRIKAM ag"}),
        422,
        "Validation failed: Name has already been taken",
    )
    _error(zammad.call("POST", "/organizations", {"name": " "}), 422, "Validation failed: Name can't be blank")
    long = zammad.call("POST", "/organizations", {"name": "x" * 120}).json()
    assert long["name"] == "x" * 100
    first = zammad.call("GET", "/organizations", page=1, per_page=2).json()
    second = zammad.call("GET", "/organizations", page=2, per_page=2).json()
    assert [o["id"] for o in first + second] == [1, created.json()["id"], long["id"]]
    assert zammad.call("GET", "/organizations", page=3, per_page=2).json() == []


def test_a_user_takes_an_organization_by_id_or_by_its_exact_name_only(zammad: Zammad) -> None:
    """A name parameter is resolved with ``find_by(name:)`` (can_lookup.rb): case-sensitive on PostgreSQL."""
    oid = zammad.call("POST", "/organizations", {"name": "Fabrikam AG"}).json()["id"]
    by_id = zammad.create(login="org-by-id", firstname="Id", organization_id=oid)
    assert by_id["organization_id"] == oid
    assert zammad.create(login="org-by-name", firstname="Name", organization="Fabrikam AG")["organization_id"] == oid
    _error(
        zammad.call("POST", "/users", {"login": "org-case", "firstname": "Case", "organization": "fabrikam ag"}),
        422,
        "No lookup value found for 'organization': \"fabrikam ag\"",
    )
    cleared = zammad.call("PUT", f"/users/{by_id['id']}", {"organization_id": None}).json()
    assert cleared["organization_id"] is None
    shown = zammad.call("GET", f"/users/{by_id['id']}", expand="true").json()
    assert "organization" not in shown


def test_organizations_are_searched_like_zammads_database_fallback(zammad: Zammad, sandbox: Sandbox) -> None:
    """Organization.search without Elasticsearch: ``*`` dropped, a case-insensitive substring of the
    name or note, newest first (``active desc, updated_at desc``); search needs agent or admin.organization."""
    fabrikam = zammad.call("POST", "/organizations", {"name": "Fabrikam AG"}).json()["id"]
    northwind = zammad.call("POST", "/organizations", {"name": "Northwind Fabrics"}).json()["id"]

    def ids(**params: Any) -> list[int]:
        return [o["id"] for o in zammad.call("GET", "/organizations/search", **params).json()]

    assert sorted(ids(query="FABR*")) == [fabrikam, northwind]
    assert ids(query="fabr", sort_by="name", order_by="asc") == [fabrikam, northwind]
    assert ids(query="foundation") == [1]
    assert ids(query="fabr", sort_by="name", order_by="asc", per_page=1, page=2) == [northwind]
    assert ids(query="nothing like it") == []
    labels = zammad.call("GET", "/organizations/search", query="wind", label="true").json()
    assert labels == [{"id": northwind, "label": "Northwind Fabrics", "value": "Northwind Fabrics"}]
    as_user_admin = Zammad(sandbox, zammad.http, sandbox.zammad_token("user_admin"))
    _error(as_user_admin.call("GET", "/organizations/search", query="x"), 403, "Token authorization failed.")


def test_creating_an_organization_needs_agent_or_organization_admin(zammad: Zammad, sandbox: Sandbox) -> None:
    as_user_admin = Zammad(sandbox, zammad.http, sandbox.zammad_token("user_admin"))
    _error(as_user_admin.call("POST", "/organizations", {"name": "Nope"}), 403, "Token authorization failed.")
    as_agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    assert as_agent.call("POST", "/organizations", {"name": "Agent Co"}).status_code == 201


def test_search_sort_by_and_order_by_follow_sql_helper(zammad: Zammad) -> None:
    for login, first in (("order-b", "Xavier"), ("order-c", "Xavier"), ("order-a", "Yvonne")):
        zammad.create(login=login, firstname=first, lastname=login[-1])

    def logins(**params: Any) -> list[str]:
        return [u["login"] for u in zammad.call("GET", "/users/search", query="order-", **params).json()]

    assert logins(sort_by="login", order_by="asc") == ["order-a", "order-b", "order-c"]
    assert logins(sort_by="login") == ["order-c", "order-b", "order-a"]  # User.search's default: desc
    assert logins(**{"sort_by[]": ["firstname", "login"], "order_by[]": ["asc", "desc"]}) == [
        "order-c",
        "order-b",
        "order-a",
    ]
    assert logins(sort_by="firstname, login", order_by="desc, asc") == ["order-a", "order-b", "order-c"]
    # Only as many columns as directions: login has none and is dropped, so b and c tie.
    tied = logins(sort_by="firstname,login", order_by="asc")
    assert set(tied[:2]) == {"order-b", "order-c"} and tied[2] == "order-a"
    by_body = zammad.call("POST", "/users/search", {"query": "order-", "sort_by": ["login"], "order_by": ["ASC"]})
    assert [u["login"] for u in by_body.json()] == ["order-a", "order-b", "order-c"]
    assert logins() == ["order-a", "order-c", "order-b"]  # active desc, updated_at desc


def test_search_with_an_invalid_sort_is_zammads_500(zammad: Zammad, sandbox: Sandbox) -> None:
    """lib/sql_helper.rb raises RuntimeError; handles_errors.rb shows its text to admins only."""
    bad_column = zammad.call("GET", "/users/search", query="x", sort_by="login,colour")
    assert (bad_column.status_code, bad_column.json()) == (500, {"error": "Found invalid column 'colour' for sorting."})
    bad_order = zammad.call("GET", "/users/search", query="x", sort_by="login", order_by="up")
    assert bad_order.json() == {"error": "Found invalid order by value up. Please use 'asc' or 'desc'."}
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    hidden = agent.call("GET", "/users/search", query="x", sort_by="colour")
    assert hidden.status_code == 500 and list(hidden.json()) == ["error"]
    assert hidden.json()["error"].startswith("Error ID ") and "colour" not in hidden.json()["error"]


def test_sorting_by_a_custom_attribute_works_once_migrated(zammad: Zammad) -> None:
    response = zammad.call("GET", "/users/search", query="x", sort_by="entra_key")
    assert response.status_code == 500
    zammad.setup_entra_attributes()
    zammad.create(login="keyed-2", firstname="K", entra_key="b")
    zammad.create(login="keyed-1", firstname="K", entra_key="a")
    found = zammad.call("GET", "/users/search", query="keyed-", sort_by="entra_key", order_by="asc").json()
    assert [u["login"] for u in found] == ["keyed-1", "keyed-2"]


def test_unknown_route_is_404_with_the_envelope(zammad: Zammad) -> None:
    _error(zammad.call("GET", ""), 404, "No route matches [GET] /api/v1")


# --- object manager -----------------------------------------------------------------------------------
def test_attribute_values_are_ignored_until_migrations_ran(zammad: Zammad) -> None:
    created = zammad.call(
        "POST",
        "/object_manager_attributes",
        {
            "name": "entra_key",
            "object": "User",
            "display": "Entra key",
            "data_type": "input",
            "data_option": {"type": "text", "maxlength": 64},
            "active": True,
            "screens": {},
            "position": 1600,
        },
    )
    assert created.status_code == 201
    staged = created.json()
    assert staged["to_create"] is True and staged["to_migrate"] is True and staged["editable"] is True
    assert staged["data_option"]["default"] == ""
    before = zammad.create(email="early@example.org", entra_key="lost")
    assert "entra_key" not in before
    zammad.call("POST", "/object_manager_attributes_execute_migrations")
    assert zammad.call("GET", f"/users/{before['id']}").json()["entra_key"] is None
    after = zammad.create(email="late@example.org")
    assert after["entra_key"] == ""
    kept = zammad.create(email="kept@example.org", entra_key="abc")
    assert kept["entra_key"] == "abc"


@pytest.mark.parametrize(
    "name, message",
    [
        ("entra_id", "Name can't get used because *_id and *_ids are not allowed"),
        ("Entra Key", "Name may only contain lower-case letters, digits and underscores, and at least one letter."),
        ("select", "Name select is a reserved word"),
        ("email", "Name email already exists!"),
    ],
    ids=["ends-with-id", "spaces", "reserved", "existing-column"],
)
def test_attribute_name_rules(zammad: Zammad, name: str, message: str) -> None:
    _error(
        zammad.call(
            "POST",
            "/object_manager_attributes",
            {
                "name": name,
                "object": "User",
                "display": "x",
                "data_type": "input",
                "data_option": {"type": "text", "maxlength": 10},
            },
        ),
        422,
        message,
    )


def test_a_boolean_attribute_needs_options_and_gets_a_null_default_from_the_controller(zammad: Zammad) -> None:
    """attribute.rb wants data_option[:default] present; over REST the controller's permitted_params
    puts ``default: nil`` in when the client left it out, so only missing options are refused."""
    body = {"name": "flag", "object": "User", "display": "Flag", "data_type": "boolean"}
    refused = {**body, "data_option": {"default": False}}
    _error(zammad.call("POST", "/object_manager_attributes", refused), 422, "Need data_option[:options] param")
    created = zammad.call("POST", "/object_manager_attributes", {**body, "data_option": {"options": {"true": "yes"}}})
    assert created.status_code == 201 and created.json()["data_option"]["default"] is None


def test_attribute_without_data_type_is_a_500(zammad: Zammad) -> None:
    assert zammad.call("POST", "/object_manager_attributes", {"name": "abc", "object": "User"}).status_code == 500


def test_custom_attribute_maxlength_and_select_options_are_enforced(zammad: Zammad) -> None:
    zammad.setup_entra_attributes()
    _error(
        zammad.call("POST", "/users", {"email": "m@example.org", "entra_key": "k" * 65}),
        422,
        "Entra key is longer than the allowed length 64",
    )
    _error(
        zammad.call("POST", "/users", {"email": "m@example.org", "entra_object_type": "robot"}),
        422,
        "Invalid value 'robot' for field 'entra_object_type'!",
    )


def test_attributes_need_admin_object(zammad: Zammad, sandbox: Sandbox) -> None:
    agent = Zammad(sandbox, zammad.http, sandbox.zammad_token("agent"))
    assert agent.call("GET", "/object_manager_attributes").status_code == 403


# --- groups and a user's group access (has_groups.rb, GroupsControllerPolicy) ---------------------------
def test_groups_list_is_a_paged_model_index_for_agents_and_group_admins(zammad: Zammad) -> None:
    groups = zammad.call("GET", "/groups").json()
    assert [(g["id"], g["name"], g["active"]) for g in groups] == [
        (1, "Users", True),
        (2, "2nd Level", True),
        (3, "Service Desk", True),
        (4, "Archive", False),
    ]
    pages = [[g["id"] for g in zammad.call("GET", "/groups", per_page=3, page=n).json()] for n in (1, 2)]
    assert pages == [[1, 2, 3], [4]]
    assert zammad.call("GET", "/groups/2").json()["name"] == "2nd Level"
    _error(zammad.call("GET", "/groups/99"), 404, "Couldn't find Group with 'id'=99")
    user_admin = Zammad(zammad.sandbox, zammad.http, zammad.sandbox.zammad_token("user_admin"))
    _error(user_admin.call("GET", "/groups"), 403, "Token authorization failed.")


def test_group_ids_is_a_map_a_put_replaces_whole_and_expand_names_the_groups(zammad: Zammad) -> None:
    agent = zammad.create(email="queue@example.org", role_ids=[2], group_ids={"2": ["read", "change"]})
    assert agent["group_ids"] == {"2": ["read", "change"]}
    updated = zammad.call("PUT", f"/users/{agent['id']}", {"group_ids": {"3": "full"}}).json()
    assert updated["group_ids"] == {"3": ["full"]}
    expanded = zammad.call("GET", f"/users/{agent['id']}", expand="true").json()
    assert expanded["groups"] == {"Service Desk": ["full"]}
    assert zammad.call("GET", "/users/4").json()["group_ids"] == {"1": ["full"]}  # the seeded agent


def test_a_customer_or_an_inactive_user_shows_no_group_access_but_keeps_it(zammad: Zammad) -> None:
    """groups_access_map: {} without ticket.agent or when inactive; the relations stay stored."""
    customer = zammad.create(email="cust@example.org", group_ids={"2": ["full"]})
    assert customer["role_ids"] == [3] and customer["group_ids"] == {}
    promoted = zammad.call("PUT", f"/users/{customer['id']}", {"role_ids": [2]}).json()
    assert promoted["group_ids"] == {"2": ["full"]}
    inactive = zammad.call("PUT", f"/users/{customer['id']}", {"active": False}).json()
    assert inactive["group_ids"] == {}


def test_access_to_an_inactive_group_is_not_shown(zammad: Zammad) -> None:
    agent = zammad.create(email="arch@example.org", role_ids=[2], group_ids={"4": ["full"], "1": ["read"]})
    assert agent["group_ids"] == {"1": ["read"]}


def test_an_unknown_group_or_access_is_refused(zammad: Zammad) -> None:
    _error(
        zammad.call("POST", "/users", {"email": "g@example.org", "role_ids": [2], "group_ids": {"99": ["full"]}}),
        422,
        "Validation failed: Group must exist",
    )
    _error(
        zammad.call("POST", "/users", {"email": "g@example.org", "role_ids": [2], "group_ids": {"1": ["admin"]}}),
        422,
        "Validation failed: Access is not included in the list",
    )
