"""Graph user → universal user: the email chain, #EXT# guests, names, Zammad's storage rules.

Every row is a rule of DESIGN.md §2 or a storage rule of reference/zammad-api.md §2.4–2.7; the
normalized values must equal what Zammad stores, or a second run would write again.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrasync_pipeline.normalize import normalize_user, skipped_member_types, valid_email, zammad_names
from entrasync_pipeline_tests.factories import graph_user, members_frame, normalize_options, universal


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
def test_email_rules(overrides: dict, email: str, skip: str | None) -> None:
    row = normalize_user(graph_user(**overrides), normalize_options())
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
def test_names_are_what_zammad_stores(overrides: dict, names: tuple[str, str]) -> None:
    row = normalize_user(graph_user(**overrides), normalize_options())
    assert (row["firstname"], row["lastname"]) == names


def test_fields_follow_the_mapping_and_column_limits() -> None:
    row = normalize_user(
        graph_user(businessPhones=["+49 30 1", "+49 30 2"], mobilePhone=" 0170 ", department="D" * 250),
        normalize_options(),
    )
    assert row["phone"] == "+49 30 1" and row["mobile"] == "0170" and len(row["department"]) == 200


def test_a_constant_and_a_custom_target_come_from_configuration() -> None:
    from entrasync_pipeline.normalize import Rule

    options = normalize_options()
    mapping = {
        **options.mapping,
        "note": Rule(constant="synced from Entra"),
        "department": Rule(("department", "companyName"), transforms=("strip", "upper")),
    }
    row = normalize_user(graph_user(department=None, companyName=" contoso "), normalize_options(mapping=mapping))
    assert row["note"] == "synced from Entra" and row["department"] == "CONTOSO"


def test_disabled_accounts_are_inactive_not_skipped() -> None:
    row = normalize_user(graph_user(accountEnabled=False), normalize_options())
    assert row["active"] is False and row["skip_reason"] is None


def test_limited_information_members_are_skipped_with_the_reason() -> None:
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
    row = normalize_user(limited, normalize_options())
    assert "User.Read.All" in row["skip_reason"]


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
