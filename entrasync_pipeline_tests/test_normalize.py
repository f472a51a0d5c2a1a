"""Graph user → universal user: the email chain, #EXT# guests, names, Zammad's storage rules.

Every row is a rule of DESIGN.md §2 or a storage rule of reference/zammad-api.md §2.4–2.7; the
normalized values must equal what Zammad stores, or a second run would write again. The rules run
on both paths (the ``normalize`` fixture): ``normalize_user``, the reference, and the column-wise
``normalize_members`` the sync uses; properties hold the two equal for any mapping and snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrasync_pipeline.normalize import (
    LIMITED_REASON,
    NO_EMAIL_REASON,
    NO_IDENTIFIER_REASON,
    TAIL_COLUMNS,
    UNIVERSAL_COLUMNS,
    Rule,
    ScopeTest,
    normalize_members,
    normalize_user,
    phone_number,
    scope_reason,
    skipped_member_types,
    valid_email,
    zammad_names,
)
from entrasync_pipeline_tests.factories import GROUP, graph_user, members_frame, normalize_options, universal


def _column_wise(record: dict[str, Any], options: Any) -> dict[str, Any]:
    """The path the sync takes: the member as one row of a member snapshot, through normalize_members."""
    frame = pd.DataFrame([{"group_id": GROUP, "group_name": "IT Support", **record}])
    rows = normalize_members(frame, options).to_dict("records")
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(params=["per-user", "column-wise"])
def normalize(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """Each rule holds on both paths: normalize_user (the reference) and normalize_members (the sync's)."""
    if request.param == "column-wise":
        return lambda record, **options: _column_wise(record, normalize_options(**options))
    # The per-user rules get the member as the snapshot holds it: with its group.
    return lambda record, **options: normalize_user(
        {"group_id": GROUP, "group_name": "IT Support", **record}, normalize_options(**options)
    )


@pytest.mark.parametrize(
    "overrides, email, skip",
    [
        ({}, "jane.doe@contoso.example", None),
        ({"mail": "  Jane.DOE@Contoso.Example "}, "jane.doe@contoso.example", None),
        ({"mail": None, "otherMails": ["", "private@mailbox.example"]}, "private@mailbox.example", None),
        ({"mail": None, "otherMails": []}, "jane.doe@contoso.example", None),
        (
            {"mail": None, "otherMails": [], "userPrincipalName": "jane_partner.example#EXT#@contoso.onmicrosoft.com"},
            "",
            "no usable email",
        ),
        (
            {
                "mail": "guest@partner.example",
                "userPrincipalName": "guest_partner.example#EXT#@contoso.onmicrosoft.com",
            },
            "guest@partner.example",
            None,
        ),
        ({"mail": "not an email"}, "", "invalid email"),
        ({"mail": "a@b"}, "", "invalid email"),
        ({"mail": "x" * 250 + "@contoso.example"}, "", "invalid email"),
    ],
    ids=[
        "mail",
        "strip-lower",
        "other-mails",
        "upn-fallback",
        "ext-guest-no-mail",
        "ext-guest-with-mail",
        "invalid",
        "no-domain-dot",
        "too-long",
    ],
)
def test_email_rules(normalize: Callable[..., dict], overrides: dict, email: str, skip: str | None) -> None:
    row = normalize(graph_user(**overrides))
    assert row["email"] == email
    assert (row["skip_reason"] or "").startswith(skip) if skip else row["skip_reason"] is None


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({}, ("Jane", "Doe")),
        ({"givenName": "  Zoë ", "surname": " Łukasiewicz  "}, ("Zoë", "Łukasiewicz")),
        ({"givenName": None, "surname": None, "displayName": "Dana  Displayname"}, ("Dana", "Displayname")),
        ({"givenName": None, "surname": None, "displayName": "Smith, John"}, ("John", "Smith")),
        ({"givenName": "cher", "surname": None}, ("Cher", "")),
        ({"givenName": None, "surname": "van der Berg"}, ("Van", "der Berg")),
        ({"givenName": "A" * 150, "surname": "B"}, ("A" * 100, "B")),
        ({"givenName": None, "surname": None, "displayName": None}, ("Jane", "Doe")),
    ],
    ids=[
        "given-surname",
        "diacritics-whitespace",
        "from-displayname",
        "displayname-last-comma-first",
        "single-lowercase-capitalised",
        "lone-lastname-split-like-zammad",
        "truncated-to-100",
        "from-email-local-part",
    ],
)
def test_names_are_what_zammad_stores(normalize: Callable[..., dict], overrides: dict, names: tuple[str, str]) -> None:
    row = normalize(graph_user(**overrides))
    assert (row["firstname"], row["lastname"]) == names


def test_fields_follow_the_mapping_and_column_limits(normalize: Callable[..., dict]) -> None:
    row = normalize(graph_user(businessPhones=["+49 30 1", "+49 30 2"], mobilePhone=" 0170 ", department="D" * 250))
    assert row["phone"] == "+49 30 1" and row["mobile"] == "0170" and row["department"] == "D" * 200


def test_a_constant_and_a_custom_target_come_from_configuration(normalize: Callable[..., dict]) -> None:
    mapping = {
        **normalize_options().mapping,
        "note": Rule(constant="synced from Entra"),
        "department": Rule(("department", "companyName"), transforms=("strip", "upper")),
    }
    row = normalize(graph_user(department=None, companyName=" contoso "), mapping=mapping)
    assert row["note"] == "synced from Entra" and row["department"] == "CONTOSO"


@pytest.mark.parametrize(
    "enabled, active", [(True, True), (False, False), (None, True)], ids=["enabled", "disabled", "not-reported"]
)
def test_disabled_accounts_are_inactive_not_skipped(
    normalize: Callable[..., dict], enabled: bool | None, active: bool
) -> None:
    row = normalize(graph_user(accountEnabled=enabled))
    assert row["active"] is active and row["skip_reason"] is None


def test_limited_information_members_are_skipped_with_the_reason(normalize: Callable[..., dict]) -> None:
    limited = {
        "@odata.type": "#microsoft.graph.user",
        "id": "x",
        "displayName": None,
        "givenName": None,
        "surname": None,
        "mail": None,
        "otherMails": [],
        "userPrincipalName": None,
        "accountEnabled": None,
        "userType": None,
        "businessPhones": [],
        "mobilePhone": None,
        "department": None,
    }
    row = normalize(limited)
    assert row["skip_reason"] == LIMITED_REASON and "User.Read.All" in row["skip_reason"]


def test_members_in_several_groups_become_one_user_with_both_groups_and_roles() -> None:
    user = graph_user()
    frame = members_frame(user, group="g1")
    frame = frame._append(members_frame(user, group="g2"), ignore_index=True)
    options = normalize_options(group_roles={"g1": ("Agent",), "g2": ("Customer",)})
    from entrasync_pipeline.normalize import normalize_members

    users = normalize_members(frame, options)
    assert len(users) == 1
    assert users.iloc[0]["source_groups"] == ("g1", "g2") and users.iloc[0]["roles"] == ("Agent", "Customer")


def test_non_user_members_are_counted_not_synced() -> None:
    device = {"@odata.type": "#microsoft.graph.device", "id": "d1", "displayName": "WS-1"}
    group = {"@odata.type": "#microsoft.graph.group", "id": "g9", "displayName": "Nested"}
    frame = members_frame(graph_user(), device, group)
    assert len(universal(graph_user(), device, group)) == 1
    assert skipped_member_types(frame) == {"device": 1, "group": 1}


def test_zammad_names_mirror_check_name() -> None:
    assert zammad_names("Agent First", "", None) == ("Agent", "First")
    assert zammad_names("", "", "first.last@example.org") == ("First", "Last")
    assert zammad_names("", "", "pytest0@example.com") == ("", "")
    assert zammad_names("Dr. Jane Roe", "", None) == ("Dr. Jane", "Roe")
    assert zammad_names("http://spam.example", "x", None) == ("spam.example", "x")


_LOCAL_248 = "x" * (250 - len("@contoso.example"))


@pytest.mark.parametrize(
    "email, valid",
    [
        ("a@b.co", True),
        (f"{_LOCAL_248}@contoso.example", True),
        (f"{_LOCAL_248}y@contoso.example", False),
        ("jane..doe@contoso.example", False),
        ("jane.doe@contoso..example", False),
        ("jane.o'neil+tag@contoso.example", True),
        ("jane@münchen.example", True),
        ("jane@contoso", False),
        ("@contoso.example", False),
        ("jane doe@contoso.example", False),
        ("jane@-contoso.example", False),
        ("jane@contoso.example.", False),
        ("jane<x>@contoso.example", False),
    ],
    ids=[
        "shortest-usual",
        "250-characters",
        "251-characters",
        "double-dot-local",
        "double-dot-domain",
        "apostrophe-plus",
        "unicode-domain",
        "no-domain-dot",
        "no-local-part",
        "space",
        "label-starts-with-hyphen",
        "trailing-dot",
        "angle-brackets",
    ],
)
def test_an_email_is_valid_the_way_zammads_validator_sees_it(email: str, valid: bool) -> None:
    assert valid_email(email) is valid


@pytest.mark.parametrize(
    "overrides, phone, mobile, skip",
    [
        ({}, None, None, NO_IDENTIFIER_REASON),
        ({"mobilePhone": "+1 555 0199"}, None, "+1 555 0199", None),
        ({"businessPhones": ["", " +1 555 0100 "]}, "+1 555 0100", None, None),
        ({"surname": "Doe"}, None, None, None),
        ({"displayName": "  "}, None, None, NO_IDENTIFIER_REASON),
    ],
    ids=["nothing", "mobile-only", "phone-only", "surname-only", "blank-display-name"],
)
def test_a_user_without_email_needs_one_identifier_when_email_less_users_are_synced(
    normalize: Callable[..., dict], overrides: dict, phone: str | None, mobile: str | None, skip: str | None
) -> None:
    bare = graph_user(
        mail=None,
        otherMails=[],
        userPrincipalName="jane_partner.example#EXT#@contoso.onmicrosoft.com",
        givenName=None,
        surname=None,
        displayName=None,
        businessPhones=[],
        department=None,
    )
    row = normalize({**bare, **overrides}, sync_users_without_email=True)
    assert (row["email"], row["phone"], row["mobile"], row["skip_reason"]) == ("", phone, mobile, skip)
    assert normalize({**bare, **overrides})["skip_reason"] == NO_EMAIL_REASON


@pytest.mark.parametrize(
    "overrides, email",
    [
        ({"mail": "Jane.Mail@contoso.example"}, "jane.mail@contoso.example"),
        ({"mail": " ", "otherMails": [" ", "Other@Contoso.Example"]}, "other@contoso.example"),
        ({"mail": None, "otherMails": []}, "jane.doe@contoso.example"),
        ({"mail": None, "userPrincipalName": "j_x.example#EXT#@t.onmicrosoft.com"}, ""),
    ],
    ids=["mail", "other-mails", "upn", "guest-upn"],
)
def test_without_an_email_rule_the_email_comes_from_mail_other_mails_then_the_upn(
    normalize: Callable[..., dict], overrides: dict, email: str
) -> None:
    mapping = {k: r for k, r in normalize_options().mapping.items() if k != "email"}
    assert normalize(graph_user(**overrides), mapping=mapping)["email"] == email


def test_an_email_is_identifier_enough(normalize: Callable[..., dict]) -> None:
    """An address without a dot before the @ gives no names; the email alone identifies the user."""
    row = normalize(
        graph_user(mail="jd@contoso.example", givenName=None, surname=None, displayName=None, businessPhones=[])
    )
    assert (row["firstname"], row["lastname"], row["phone"], row["mobile"]) == ("", "", None, None)
    assert row["email"] == "jd@contoso.example" and row["skip_reason"] is None


def test_an_invalid_email_is_dropped_and_named_shortened_in_the_reason(normalize: Callable[..., dict]) -> None:
    row = normalize(graph_user(mail="x" * 100 + " y@contoso.example"))
    assert row["email"] == "" and row["skip_reason"] == f"invalid email {'x' * 80!r}"


def test_the_first_reason_to_skip_a_member_is_kept(normalize: Callable[..., dict]) -> None:
    limited = {"@odata.type": "#microsoft.graph.user", "id": "x", "mail": None, "userPrincipalName": None}
    assert normalize(limited)["skip_reason"] == LIMITED_REASON
    assert normalize({**limited, "otherMails": ["bad address"]})["skip_reason"] == "invalid email 'bad address'"


@pytest.mark.parametrize(
    "record, limited",
    [
        ({"userPrincipalName": None, "mail": None, "otherMails": [], "accountEnabled": None}, True),
        ({"userPrincipalName": None, "mail": None, "otherMails": [], "accountEnabled": True}, False),
        ({"userPrincipalName": None, "mail": None, "otherMails": ["a@b.example"]}, False),
        ({"mail": None, "department": None}, True),
        ({"mail": None, "department": "IT"}, False),
        ({}, False),
    ],
    ids=[
        "nothing-readable",
        "an-account-flag",
        "another-email",
        "no-upn-column",
        "no-upn-column-but-a-value",
        "id-only-without-properties-asked",
    ],
)
def test_members_returned_without_properties_are_recognised(
    normalize: Callable[..., dict], record: dict, limited: bool
) -> None:
    row = normalize({"@odata.type": "#microsoft.graph.user", "id": "x", **record})
    assert (row["skip_reason"] == LIMITED_REASON) is limited


def test_a_limited_member_among_readable_ones_is_the_only_one_skipped_for_it() -> None:
    readable = graph_user()
    limited = {**{k: None for k in readable}, "@odata.type": readable["@odata.type"], "id": "x", "otherMails": []}
    users = normalize_members(members_frame(readable, limited, graph_user("john.roe")), normalize_options())
    assert users["skip_reason"].tolist() == [None, LIMITED_REASON, None]
    # The same member as Graph sends it ($select ignored for it): only its type and id, NaN in the snapshot.
    bare = {"@odata.type": readable["@odata.type"], "id": "x"}
    frame = pd.DataFrame(
        [{"group_id": GROUP, "group_name": "IT", **u} for u in (readable, bare, graph_user("john.roe"))]
    )
    users = normalize_members(frame, normalize_options())
    assert users["skip_reason"].tolist() == [None, LIMITED_REASON, None]


def test_a_snapshot_without_account_flags_makes_every_member_active() -> None:
    frame = members_frame(graph_user(), graph_user("john.roe")).drop(columns="accountEnabled")
    assert normalize_members(frame, normalize_options())["active"].tolist() == [True, True]


def test_a_snapshot_mixing_the_identifier_cases_skips_only_the_members_without_one() -> None:
    bare = {"mail": None, "userPrincipalName": "j_x.example#EXT#@t.onmicrosoft.com", "givenName": None}
    bare |= {"surname": None, "displayName": None, "businessPhones": [], "mobilePhone": None}
    users = [
        graph_user("ann.lee", **bare),
        graph_user("bo.kim", **{**bare, "surname": "Kim"}),
        graph_user("cy.ng", **{**bare, "mobilePhone": "+1 555 0199"}),
        graph_user("di.oh"),
    ]
    rows = normalize_members(members_frame(*users), normalize_options(sync_users_without_email=True))
    assert rows["skip_reason"].tolist() == [NO_IDENTIFIER_REASON, None, None, None]
    assert rows[["firstname", "lastname"]].values.tolist() == [["", ""], ["Kim", ""], ["", ""], ["Di", "Oh"]]
    # A mapping without phone and mobile: a name or the email is then the only identifier.
    mapping = {k: r for k, r in normalize_options().mapping.items() if k not in ("phone", "mobile")}
    rows = normalize_members(members_frame(*users), normalize_options(mapping=mapping, sync_users_without_email=True))
    assert rows["skip_reason"].tolist() == [NO_IDENTIFIER_REASON, None, NO_IDENTIFIER_REASON, None]


def test_names_mapped_without_strip_are_stored_stripped_like_zammad_does() -> None:
    """Zammad strips names on save; a mapping may leave them unstripped, in any row of the snapshot."""
    mapping = {
        **normalize_options().mapping,
        "firstname": Rule(("givenName",), transforms=()),
        "lastname": Rule(("surname",), transforms=()),
    }
    names = [(" Jane ", " Doe "), (" Ann ", "Lee"), ("Bo", " Kim "), (None, None), ("cy", " "), ("Di", "Oh")]
    users = [
        graph_user(f"user.{i}", givenName=given, surname=surname, displayName="Max  Moe")
        for i, (given, surname) in enumerate(names)
    ]
    expected = [["Jane", "Doe"], ["Ann", "Lee"], ["Bo", "Kim"], ["Max", "Moe"], ["Cy", ""], ["Di", "Oh"]]
    rows = normalize_members(members_frame(*users), normalize_options(mapping=mapping))
    assert rows[["firstname", "lastname"]].values.tolist() == expected
    for user, names in zip(users, expected):
        row = normalize_user(user, normalize_options(mapping=mapping))
        assert [row["firstname"], row["lastname"]] == names
        assert [_column_wise(user, normalize_options(mapping=mapping))[k] for k in ("firstname", "lastname")] == names
    plain = [
        graph_user(f"user.{i}", givenName=f"{g} ", surname=f" {s}") for i, (g, s) in enumerate([("A", "B"), ("C", "D")])
    ]
    rows = normalize_members(members_frame(*plain), normalize_options(mapping=mapping))
    assert rows[["firstname", "lastname"]].values.tolist() == [["A", "B"], ["C", "D"]]


def test_a_long_value_is_cut_even_when_other_members_have_none() -> None:
    users = [graph_user(department=None), graph_user("john.roe", department="D" * 250), graph_user("max.moe")]
    rows = normalize_members(members_frame(*users), normalize_options())
    assert rows["department"].tolist() == [None, "D" * 200, "IT"]


def test_missing_cells_of_a_member_snapshot_are_missing_values() -> None:
    """Members read with different properties make a snapshot with NaN where a property is absent."""
    frame = pd.DataFrame(
        [
            {"group_id": GROUP, "group_name": "IT Support", **graph_user("john.roe", mobilePhone="+1 555 0199")},
            {
                "group_id": GROUP,
                "group_name": "IT Support",
                "@odata.type": "#microsoft.graph.user",
                "id": "jane",
                "userPrincipalName": "jane.doe@contoso.example",
            },
        ]
    )
    row = normalize_members(frame, normalize_options()).to_dict("records")[1]
    assert row["email"] == "jane.doe@contoso.example" and row["skip_reason"] is None
    assert (row["firstname"], row["lastname"]) == ("Jane", "Doe")
    assert row["phone"] is None and row["mobile"] is None and row["department"] is None
    assert row["display_name"] is None or row["display_name"] != row["display_name"]
    assert row["active"] is True


@pytest.mark.parametrize(
    "rule, value, expected",
    [
        (Rule(("department",), transforms=("strip", "collapse_spaces")), " Sales  and\tOps ", "Sales and Ops"),
        (Rule(("department",), transforms=("collapse_spaces",)), "Sales\u00a0\u00a0Ops", "Sales Ops"),
        (Rule(("department",), transforms=("collapse_spaces",)), "Sales Ops", "Sales Ops"),
        (Rule(("department",), transforms=("lower",)), "Sales", "sales"),
        (Rule(("department",), transforms=("collapse_spaces", "upper")), "Sales Ops", "SALES OPS"),
        (Rule(("department",), transforms=("upper", "strip")), " Sales ", "SALES"),
        (Rule(("department",), transforms=()), " Sales ", " Sales "),
        (Rule(("businessPhones",), transforms=("join",)), [" +1 ", "", "+2"], "+1, +2"),
        (Rule(("businessPhones",), transforms=("first", "strip")), ["  ", " +2 "], "+2"),
        (Rule(("businessPhones",), transforms=("strip",)), ["  ", "+2"], "+2"),
        (Rule(("businessPhones",), transforms=("first",), default="n/a"), ["  "], "n/a"),
        (Rule(("department", "companyName"), transforms=("strip",)), "  ", "Contoso"),
        (Rule(("department",), transforms=("strip",), default="n/a"), None, "n/a"),
        (Rule(("department",), constant="Helpdesk"), "Sales", "Helpdesk"),
        (Rule(("employeeId",), transforms=("strip",)), None, "4711"),
    ],
    ids=[
        "collapse-spaces-and-tabs",
        "collapse-non-ascii-spaces",
        "collapse-nothing-to-do",
        "lower",
        "collapse-then-upper",
        "upper-then-strip",
        "no-transforms",
        "join-list",
        "first-non-blank",
        "list-without-list-transform",
        "default-for-blank-list",
        "second-source",
        "default",
        "constant",
        "number-becomes-text",
    ],
)
def test_mapped_fields_follow_their_rule(normalize: Callable[..., dict], rule: Rule, value: Any, expected: str) -> None:
    mapping = {**normalize_options().mapping, "department": rule}
    user = graph_user(businessPhones=value if rule.source[0] == "businessPhones" else [], companyName="Contoso")
    user.update({"department": value} if rule.source[0] != "businessPhones" else {}, employeeId=4711)
    assert normalize(user, mapping=mapping)["department"] == expected


def test_only_the_email_rule_passes_over_guest_upns() -> None:
    """A #EXT# value is no email, but it is a value like any other for a mapped field."""
    guest_upn = "j_x.example#EXT#@t.onmicrosoft.com"
    mapping = {**normalize_options().mapping, "department": Rule(("userPrincipalName",))}
    users = [
        graph_user(mail=None, userPrincipalName=guest_upn),
        graph_user("john.roe", mail="john#1@contoso.example"),
        graph_user("max.moe", mail=None, otherMails=["MAX@contoso.example"]),
    ]
    rows = normalize_members(members_frame(*users), normalize_options(mapping=mapping))
    assert rows["email"].tolist() == ["", "john#1@contoso.example", "max@contoso.example"]
    assert rows["department"].tolist() == [guest_upn, "john.roe@contoso.example", "max.moe@contoso.example"]
    assert rows["skip_reason"].tolist() == [NO_EMAIL_REASON, None, None]


def test_a_decimal_number_is_mapped_as_its_text(normalize: Callable[..., dict]) -> None:
    mapping = {**normalize_options().mapping, "department": Rule(("employeeId",))}
    assert normalize(graph_user(employeeId=4711.5), mapping=mapping)["department"] == "4711.5"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("phone", "1" * 120, "1" * 100),
        ("mobile", "2" * 120, "2" * 100),
        ("note", "n" * 6000, "n" * 5000),
        ("city", "c" * 120, "c" * 100),
        ("cost_center", "k" * 6000, "k" * 6000),
    ],
    ids=["phone", "mobile", "note", "city", "custom-attribute-without-a-limit"],
)
def test_long_mapped_values_are_cut_to_zammads_column_limits(
    normalize: Callable[..., dict], field: str, value: str, expected: str
) -> None:
    mapping = {**normalize_options().mapping, field: Rule(("employeeId",))}
    assert normalize(graph_user(employeeId=value), mapping=mapping)[field] == expected


def test_a_mapping_without_name_rules_takes_the_names_from_the_display_name(normalize: Callable[..., dict]) -> None:
    mapping = {k: r for k, r in normalize_options().mapping.items() if k not in ("firstname", "lastname")}
    row = normalize(graph_user(displayName="Dana   van  Displayname"), mapping=mapping)
    assert (row["firstname"], row["lastname"]) == ("Dana", "van Displayname")


@pytest.mark.parametrize(
    "given, surname, names",
    [
        ("jane", " ", ("Jane", "")),
        ("  Jane  Ann ", "Doe", ("Jane Ann", "Doe")),
        ("J" * 120, "D" * 120, ("J" * 100, "D" * 100)),
        ("https://spam.example", "Doe", ("spam.example", "Doe")),
        ("Jane", "ftp://x.example", ("Jane", "x.example")),
        ("Jane", "Doe ftp://x.example", ("Jane", "Doe x.example")),
        ("https://spam.example", "ftp://x.example", ("spam.example", "x.example")),
    ],
    ids=[
        "blank-surname",
        "inner-spaces",
        "both-truncated",
        "url-in-given-name",
        "url-in-surname",
        "url-inside-surname",
        "urls-in-both",
    ],
)
def test_given_name_and_surname_are_stored_as_zammad_stores_them(
    normalize: Callable[..., dict], given: str, surname: str, names: tuple[str, str]
) -> None:
    row = normalize(graph_user(givenName=given, surname=surname))
    assert (row["firstname"], row["lastname"]) == names


@pytest.mark.parametrize(
    "first, last, email, names",
    [
        ("JANE", "", None, ("Jane", "")),
        ("jane", "DOE", None, ("jane", "DOE")),
        ("McDonald", "", None, ("McDonald", "")),
        ("jean-luc", "", None, ("jean-luc", "")),
        ("Doe, Jane", "", None, ("Jane", "Doe")),
        ("0,", "", None, ("0", "")),
        ("Prof. Jane Roe", "", None, ("Prof. Jane", "Roe")),
        ("Prof. Jane", "", None, ("Prof.", "Jane")),
        ("Dr. Jane Ann Roe", "", None, ("Dr. Jane", "Ann Roe")),
        ("Jane  Ann Roe", "", None, ("Jane", "Ann Roe")),
        ("", "", "jane.ann.doe@contoso.example", ("Jane", "ann.doe")),
        ("", "", "jane.doe", ("Jane", "Doe")),
        ("", "", "jane@doe.example", ("", "")),
        (None, None, None, ("", "")),
        ("x" * 150, "", None, ("X" + "x" * 99, "")),
        ("", "y" * 150, None, ("Y" + "y" * 99, "")),
        ("http://a.example b", "", None, ("a.example", "B")),
        ("Jane https://x.example", "Doe", None, ("Jane x.example", "Doe")),
        ("Jane  Ann", "Doe  Roe", None, ("Jane  Ann", "Doe  Roe")),
        ("Doe, Jane, Jr.", "", None, ("Jane, Jr.", "Doe")),
        ("", "", "jane.doe@x@y.example", ("Jane", "Doe")),
    ],
    ids=[
        "lone-upper-capitalised",
        "both-kept-as-they-are",
        "mixed-case-kept",
        "not-only-letters-kept",
        "last-comma-first",
        "not-idempotent-in-one-step",
        "title-and-two-names",
        "title-and-one-name",
        "title-and-three-names",
        "double-space",
        "from-email-local-part",
        "email-without-domain",
        "email-local-part-without-dot",
        "nothing",
        "lone-name-truncated",
        "lone-lastname-truncated",
        "url-scheme-dropped",
        "url-scheme-dropped-inside",
        "both-kept-as-they-are-inner-spaces-too",
        "last-comma-first-at-the-first-comma",
        "email-local-part-before-the-first-at",
    ],
)
def test_zammad_names_follow_check_name(
    first: str | None, last: str | None, email: str | None, names: tuple[str, str]
) -> None:
    assert zammad_names(first, last, email) == names


def test_a_member_of_several_groups_keeps_its_first_record_and_all_its_groups() -> None:
    frame = pd.concat(
        [
            members_frame(graph_user(), group="g2"),
            members_frame(graph_user("john.roe"), group="g1"),
            members_frame(graph_user(department="Sales"), group="g1"),
            members_frame(graph_user(), group="g2"),
        ],
        ignore_index=True,
    )
    users = normalize_members(frame, normalize_options(group_roles={"g1": ("Customer", "Agent"), "g3": ("Admin",)}))
    assert users[["email", "department", "source_groups", "roles"]].to_dict("records") == [
        {
            "email": "jane.doe@contoso.example",
            "department": "IT",
            "source_groups": ("g1", "g2"),
            "roles": ("Agent", "Customer"),
        },
        {
            "email": "john.roe@contoso.example",
            "department": "IT",
            "source_groups": ("g1",),
            "roles": ("Agent", "Customer"),
        },
    ]


def test_the_universal_users_active_column_is_boolean() -> None:
    """As schemas.py declares it, whether Graph reported accountEnabled or not."""
    for enabled in ([True, False], [None, True], [None, None]):
        users = [graph_user("jane.doe", accountEnabled=enabled[0]), graph_user("john.roe", accountEnabled=enabled[1])]
        active = normalize_members(members_frame(*users), normalize_options())["active"]
        assert active.dtype == bool and active.tolist() == [e is not False for e in enabled]


def test_without_group_roles_members_get_no_roles() -> None:
    users = normalize_members(members_frame(graph_user(), group="g1"), normalize_options(group_roles={"g1": ()}))
    assert users["roles"].tolist() == [()] and users["source_groups"].tolist() == [("g1",)]


def test_an_empty_or_userless_snapshot_gives_no_users_with_every_column() -> None:
    device = {"@odata.type": "#microsoft.graph.device", "id": "d1", "displayName": "WS-1"}
    mapping = {**normalize_options().mapping, "note": Rule(constant="x")}
    for frame in (members_frame(), members_frame(device)):
        users = normalize_members(frame, normalize_options(mapping=mapping))
        assert users.empty and list(users.columns) == [*UNIVERSAL_COLUMNS[: -len(TAIL_COLUMNS)], "note", *TAIL_COLUMNS]


def test_a_core_field_the_mapping_leaves_out_is_an_empty_column() -> None:
    mapping = {k: r for k, r in normalize_options().mapping.items() if k not in ("phone", "department")}
    users = normalize_members(members_frame(graph_user(), graph_user("john.roe")), normalize_options(mapping=mapping))
    assert list(users.columns) == list(UNIVERSAL_COLUMNS)
    assert users["phone"].isna().all() and users["department"].isna().all()
    assert users["mobile"].tolist() == [None, None] and users["email"].tolist()[1] == "john.roe@contoso.example"


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param({"userType": "Guest"}, "out of scope: scope.exclude[1] (userType equals 'Guest')", id="excluded"),
        pytest.param({"userType": "Member", "employeeType": "Employee"}, None, id="included"),
        pytest.param({"employeeType": "EMPLOYEE"}, None, id="case-insensitive"),
        pytest.param(
            {"employeeType": "Contractor"},
            "out of scope: matches no scope.include rule (employeeType in ['Employee']; companyName matches 'Contoso( Ltd)?')",
            id="not-included",
        ),
        pytest.param({"employeeType": None, "companyName": "Contoso Ltd"}, None, id="second-include-rule"),
        pytest.param(
            {"employeeType": None, "companyName": "Contoso Ltd."},
            "out of scope: matches no scope.include rule (employeeType in ['Employee']; companyName matches 'Contoso( Ltd)?')",
            id="matches-whole-value-only",
        ),
        pytest.param(
            {"otherMails": ["a@contoso.example", "b@partner.example"]},
            "out of scope: scope.exclude[0] (otherMails matches '.*@partner.example')",
            id="any-item-of-a-list",
        ),
        pytest.param(
            {"accountEnabled": False, "employeeType": "Employee"},
            "out of scope: scope.exclude[2] (accountEnabled equals 'false')",
            id="flag-as-true-false",
        ),
        pytest.param(
            {"employeeType": 4711.0}, "out of scope: scope.exclude[3] (employeeType equals '4711')", id="number"
        ),
    ],
)
def test_scope_rules_name_the_rule_that_left_a_member_out(attributes: dict, expected: str | None) -> None:
    options = normalize_options(
        include=(ScopeTest("employeeType", one_of=("Employee",)), ScopeTest("companyName", matches="Contoso( Ltd)?")),
        exclude=(
            ScopeTest("otherMails", matches=".*@partner.example"),
            ScopeTest("userType", equals="Guest"),
            ScopeTest("accountEnabled", equals="false"),
            ScopeTest("employeeType", equals="4711"),
        ),
    )
    record = {"employeeType": "Employee", **attributes}
    assert scope_reason(record, options) == expected
    member = graph_user("jane.doe", **{k: v for k, v in record.items() if k != "companyName"})
    frame = members_frame(member)
    frame["companyName"] = [record.get("companyName")]
    assert normalize_members(frame, options)["scope_reason"].tolist() == [expected]


def test_without_scope_rules_every_member_is_in_scope() -> None:
    users = universal(graph_user("jane.doe", userType="Guest"))
    assert users["scope_reason"].tolist() == [None]


def test_a_whole_number_in_a_column_with_gaps_keeps_its_text() -> None:
    """pandas stores [4711, None] as 4711.0 and NaN: the text must stay 4711, or every run rewrites it."""
    mapping = {**normalize_options().mapping, "employee_no": Rule(("employeeId",)), "ratio": Rule(("ratio",))}
    options = normalize_options(mapping=mapping)
    frame = members_frame(graph_user("jane.doe"), graph_user("john.roe"))
    frame["employeeId"] = [4711, None]
    frame["ratio"] = [0.5, None]
    assert frame["employeeId"].dtype == "float64"
    users = normalize_members(frame, options)
    assert users["employee_no"].tolist() == ["4711", None] and users["ratio"].tolist() == ["0.5", None]
    assert normalize_user(frame.iloc[0].to_dict(), options)["employee_no"] == "4711"


E164_DE = {"phone_format": "e164", "phone_region": "DE"}


@pytest.mark.parametrize(
    ("typed", "options", "expected", "problem"),
    [
        pytest.param("+49 30 1234567", E164_DE, "+49301234567", None, id="international"),
        pytest.param("030 1234567", E164_DE, "+49301234567", None, id="national-with-default-region"),
        pytest.param("0049 (0)30 1234567", E164_DE, "+49301234567", None, id="international-prefix-and-trunk"),
        pytest.param("+44 20 7946 0958", E164_DE, "+442079460958", None, id="foreign-number-keeps-its-country"),
        pytest.param("0170 1234567 ext. 12", E164_DE, "+491701234567 ext. 12", None, id="extension-kept"),
        pytest.param("+49301234567", E164_DE, "+49301234567", None, id="already-e164"),
        pytest.param(
            "030 1234567",
            {"phone_format": "e164"},
            "030 1234567",
            "'030 1234567' is not a valid phone number (no default_region)",
            id="national-without-region-kept",
        ),
        pytest.param(
            "call reception",
            E164_DE,
            "call reception",
            "'call reception' is not a valid phone number (default region DE)",
            id="text-kept",
        ),
        pytest.param(
            "+1 555 0100",
            E164_DE,
            "+1 555 0100",
            "'+1 555 0100' is not a valid phone number (default region DE)",
            id="fictional-kept",
        ),
        pytest.param("030 1234567", {"phone_format": "as_is", "phone_region": "DE"}, "030 1234567", None, id="as-is"),
        pytest.param("", E164_DE, "", None, id="empty"),
        pytest.param(None, E164_DE, None, None, id="none"),
    ],
)
def test_phone_numbers(typed: str | None, options: dict, expected: str | None, problem: str | None) -> None:
    assert phone_number(typed, normalize_options(**options)) == (expected, problem)


def test_a_phone_kept_as_typed_is_reported_per_field_and_never_dropped() -> None:
    options = normalize_options(**E164_DE)
    member = graph_user("jane.doe", businessPhones=["ask reception"], mobilePhone="0170 1234567")
    users = normalize_members(members_frame(member), options)
    row = users.iloc[0]
    assert (row["phone"], row["mobile"]) == ("ask reception", "+491701234567")
    assert row["phone_problem"] == (
        "phone 'ask reception' is not a valid phone number (default region DE); kept as typed"
    )
    assert pd.isna(row["skip_reason"])
    assert normalize_user(members_frame(member).iloc[0].to_dict(), options)["phone_problem"] == row["phone_problem"]


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="+0123456789 ()-./extEXT", max_size=30),
        st.from_regex(r"\+?(49|44|1|33)?[ ]?\(?0?\d{2,4}\)?[ /-]?\d{3,8}", fullmatch=True),
    ),
    st.sampled_from([None, "DE", "US", "GB"]),
)
def test_a_written_phone_number_is_written_again_unchanged(typed: str, region: str | None) -> None:
    """No flapping: what the sync writes, read back from Zammad and normalized again, is itself."""
    options = normalize_options(phone_format="e164", phone_region=region)
    written, problem = phone_number(typed, options)
    assert phone_number(written, options) == (written, problem)
    if problem is not None:
        assert written == typed  # never dropped


def test_a_device_in_two_groups_is_counted_once() -> None:
    device = {"@odata.type": "#microsoft.graph.device", "id": "d1", "displayName": "WS-1"}
    frame = pd.concat([members_frame(device, group="g1"), members_frame(device, group="g2")], ignore_index=True)
    assert skipped_member_types(frame) == {"device": 1}
    assert skipped_member_types(members_frame()) == {} and skipped_member_types(members_frame(graph_user())) == {}


# --- properties ------------------------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_maybe = st.one_of(st.none(), _text)
_graph_users = st.fixed_dictionaries(
    {
        "@odata.type": st.just("#microsoft.graph.user"),
        "id": st.uuids().map(str),
        "displayName": _maybe,
        "givenName": _maybe,
        "surname": _maybe,
        "mail": st.one_of(st.none(), _text, st.emails()),
        "otherMails": st.lists(st.one_of(_text, st.emails()), max_size=3),
        "userPrincipalName": st.one_of(_text, st.emails(), st.just("a_b.example#EXT#@t.onmicrosoft.com")),
        "accountEnabled": st.one_of(st.none(), st.booleans()),
        "userType": st.sampled_from(["Member", "Guest", None]),
        "businessPhones": st.lists(_text, max_size=2),
        "mobilePhone": _maybe,
        "department": _maybe,
    }
)


@settings(max_examples=1500, deadline=None)
@given(_graph_users)
def test_normalize_never_crashes_and_respects_zammad_limits(user: dict) -> None:
    row = normalize_user(user, normalize_options())
    assert len(row["firstname"]) <= 100 and len(row["lastname"]) <= 100
    assert row["department"] is None or len(row["department"]) <= 200
    if row["skip_reason"] is None:
        assert valid_email(row["email"]) and row["email"] == row["email"].strip().lower()
        assert "#ext#" not in row["email"]
    else:
        assert isinstance(row["skip_reason"], str) and row["skip_reason"]


@settings(max_examples=1000, deadline=None)
@given(_maybe, _maybe, st.one_of(st.none(), st.emails()))
def test_zammad_names_are_a_fixed_point(first: str | None, last: str | None, email: str | None) -> None:
    """Sending what we computed must give back the same names: the second run writes nothing."""
    stored = zammad_names(first, last, email)
    assert zammad_names(*stored, email) == stored


@settings(max_examples=200, deadline=None)
@given(st.lists(_graph_users, min_size=1, max_size=60))
def test_the_column_wise_normalizer_equals_the_per_user_rules(users: list) -> None:
    """normalize_members (fast, column-wise) must decide exactly like normalize_user (the reference)."""
    from entrasync_pipeline.normalize import normalize_members

    frame = members_frame(*users)
    fast = normalize_members(frame, normalize_options())
    seen: set[str] = set()
    expected = []
    for record in frame.to_dict("records"):
        if record["id"] not in seen:
            seen.add(record["id"])
            expected.append(normalize_user(record, normalize_options()))
    for row, reference in zip(fast.to_dict("records"), expected):
        assert {k: row[k] for k in reference} == reference
    assert len(fast) == len(expected)


_SOURCES = ("department", "companyName", "employeeId", "businessPhones", "otherMails", "mail", "displayName")
_TRANSFORMS = ("strip", "lower", "upper", "collapse_spaces", "first", "join")
_rules = st.one_of(
    st.builds(
        Rule,
        source=st.lists(st.sampled_from(_SOURCES), min_size=1, max_size=3, unique=True).map(tuple),
        transforms=st.lists(st.sampled_from(_TRANSFORMS), max_size=4).map(tuple),
        default=st.sampled_from([None, None, "n/a", ""]),
    ),
    st.builds(Rule, constant=st.sampled_from(["Entra", ""])),
)


@st.composite
def _normalize_options(draw: st.DrawFn) -> Any:
    """The default mapping with any of its rules replaced, dropped (not email) or joined by other targets."""
    mapping = dict(normalize_options().mapping)
    for target in ("email", "firstname", "lastname", "phone", "mobile", "department", "note", "cost_center"):
        how = draw(st.sampled_from(["keep", "keep", "replace", "drop"]))
        if how == "replace" or (how == "keep" and target not in mapping):
            mapping[target] = draw(_rules)
        elif how == "drop" and target != "email":
            mapping.pop(target, None)
    return normalize_options(
        mapping=mapping,
        sync_users_without_email=draw(st.booleans()),
        group_roles=draw(st.sampled_from([{}, {GROUP: ("Agent",)}, {"g2": ("Customer", "Agent"), GROUP: ()}])),
        include=draw(st.sampled_from([(), (), (ScopeTest("employeeId", one_of=("4711", "12")),)])),
        exclude=draw(
            st.sampled_from([(), (), (ScopeTest("userType", equals="Guest"), ScopeTest("companyName", matches="c.*"))])
        ),
        phone_format=draw(st.sampled_from(["as_is", "e164"])),
        phone_region=draw(st.sampled_from([None, "DE"])),
        contacts=draw(st.booleans()),
    )


_ids = st.sampled_from([f"00000000-0000-4000-8000-00000000000{i}" for i in range(6)]) | st.uuids().map(str)
_members = st.lists(
    st.tuples(
        _graph_users,
        _ids,
        st.sampled_from([GROUP, GROUP, "g2"]),
        st.sampled_from(["#microsoft.graph.user"] * 5 + ["#microsoft.graph.device", "#microsoft.graph.orgContact"]),
        st.fixed_dictionaries(
            {
                "companyName": _maybe,
                "employeeId": st.one_of(st.none(), _text, st.integers()),
                "phones": st.sampled_from(
                    [None, [], [{"type": "mobile", "number": "+49 170 1"}], [{"type": "business", "number": " 030 1 "}]]
                ),
            }
        ),
        st.sets(st.sampled_from(sorted({*_SOURCES, "givenName", "surname", "mobilePhone", "accountEnabled"}))),
    ),
    min_size=1,
    max_size=25,
)


def _missing_as_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_members, _normalize_options(), st.booleans())
def test_the_column_wise_normalizer_equals_the_per_user_rules_for_any_mapping_and_snapshot(
    members: list, options: Any, complete: bool
) -> None:
    """Any mapping (transforms, fallbacks, defaults, constants), email-less users synced or not, members in
    several groups, other member types, contacts synced or not, properties absent for some members (NaN
    cells) or present for all (text columns without gaps): the column-wise normalize_members decides like
    normalize_user on each member's first record, and merges the groups."""
    records = []
    for user, key, group, kind, extra, absent in members:
        record = {"group_id": group, "group_name": group, **user, **extra, "id": key, "@odata.type": kind}
        if complete:  # every property has text: the column-wise path takes its text-only shortcuts
            record = {k: f" {k} Of  {key[-4:]} " if v is None or isinstance(v, int) else v for k, v in record.items()}
        records.append({k: v for k, v in record.items() if complete or k not in absent})
    frame = pd.DataFrame(records)
    synced = {"#microsoft.graph.user", *(["#microsoft.graph.orgContact"] if options.contacts else [])}
    users = [r for r in frame.to_dict("records") if r["@odata.type"] in synced]
    groups: dict[str, set[str]] = {}
    for record in users:
        groups.setdefault(record["id"], set()).add(record["group_id"])
    expected, seen = [], set()
    for record in users:
        if record["id"] not in seen:
            seen.add(record["id"])
            row = normalize_user(record, options)
            source_groups = tuple(sorted(groups[record["id"]]))
            roles = tuple(sorted({r for g in source_groups for r in options.group_roles.get(g, ())}))
            if row["entra_object_type"] == "contact" and any(options.group_roles.values()):
                roles = ("Customer",)
            expected.append(_missing_as_none({**row, "source_groups": source_groups, "roles": roles}))
    fast = normalize_members(frame, options)
    for row, reference in zip(fast.to_dict("records"), expected):
        assert _missing_as_none({k: row[k] for k in reference}) == reference
    assert len(fast) == len(expected)
