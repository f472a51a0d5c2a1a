"""Entra organizational contacts (orgContact) as members, read in the users' vocabulary (pure).

A contact is a directory entry for someone outside the tenant (a supplier's support desk, an
external consultant). It has no account, no UPN and none of the user's phone or address
properties: Graph gives typed ``phones`` and ``addresses`` instead (orgContact resource type,
v1.0). Translating a contact's row into the user's property names lets one mapping serve both,
so a mapping always names Graph *user* attributes, and a contact simply lacks the ones it has
not got. What the sync does with a contact (a Zammad customer, ``entra_object_type=contact``,
the users' lifecycle and safety rules) is decided by normalize and plan like for a user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

CONTACT_TYPE = "#microsoft.graph.orgContact"
OBJECT_TYPE = "contact"  # entra_object_type of a contact's Zammad user
MODES = ("none", "members", "all")
# The source "group" of a contact read from /contacts (``contacts: all``), not a real group.
ALL_CONTACTS = "all-contacts"
ALL_CONTACTS_NAME = "the tenant's contacts (contacts: all)"
# A contact's role in Zammad: contacts are customers, whatever group brought them.
CUSTOMER_ROLE = "Customer"

# orgContact v1.0 properties (learn.microsoft.com/graph/api/resources/orgcontact).
PROPERTIES = frozenset(
    {
        "addresses",
        "companyName",
        "department",
        "displayName",
        "givenName",
        "id",
        "jobTitle",
        "mail",
        "mailNickname",
        "onPremisesLastSyncDateTime",
        "onPremisesSyncEnabled",
        "phones",
        "proxyAddresses",
        "surname",
    }
)
# User phone property ← the orgContact phone types that fill it; a collection on the user is a list.
PHONES: dict[str, tuple[str, bool]] = {
    "businessPhones": ("business", True),
    "mobilePhone": ("mobile", False),
    "faxNumber": ("businessFax", False),
}
# User address property ← the key of the contact's (single) physicalOfficeAddress.
ADDRESS: dict[str, str] = {
    "streetAddress": "street",
    "city": "city",
    "postalCode": "postalCode",
    "state": "state",
    "country": "countryOrRegion",
    "officeLocation": "officeLocation",
}


def member_select(select: Iterable[str]) -> list[str]:
    """The users' ``$select`` plus the contact properties the translation reads (a member list mixes
    types: Graph returns each item's own properties and omits the others)."""
    select = list(select)
    extra = ["phones"] if set(select) & set(PHONES) else []
    extra += ["addresses"] if set(select) & set(ADDRESS) else []
    return list(dict.fromkeys([*select, *extra]))


def contact_select(select: Iterable[str]) -> list[str]:
    """``$select`` for ``/contacts``: only orgContact properties (Graph answers 400 for a user-only
    one on this entity set)."""
    return [p for p in member_select(select) if p in PROPERTIES]


def delta_select(select: Iterable[str]) -> list[str]:
    """``$select`` for ``contacts/delta``: without ``phones`` and ``addresses``, which the delta
    function does not return (a change of only those waits for the next full run)."""
    return [p for p in contact_select(select) if p not in ("phones", "addresses")]


def _typed_numbers(phones: Any, kind: str) -> list[str]:
    if not isinstance(phones, list):
        return []
    return [
        str(p["number"])
        for p in phones
        if isinstance(p, Mapping) and p.get("type") == kind and isinstance(p.get("number"), str) and p["number"]
    ]


def _address(addresses: Any) -> Mapping[str, Any]:
    """The contact's physical address (Graph: "for now a contact can only have one")."""
    if isinstance(addresses, list) and addresses and isinstance(addresses[0], Mapping):
        return addresses[0]
    return {}


def as_user(record: Mapping[str, Any], wanted: Iterable[str]) -> dict[str, Any]:
    """One contact item with the user's property names for ``wanted`` (the users' ``$select``).

    Left empty: what a contact has not got (accountEnabled: a contact is never disabled, it is
    there or gone; userPrincipalName: it cannot sign in). A contact Graph returned without
    properties (no OrgContact.Read.All) stays without, so it is still recognised as such.
    """
    out = {k: v for k, v in record.items() if k not in ("phones", "addresses")}
    phones, address = record.get("phones"), _address(record.get("addresses"))
    for prop in wanted:
        if prop in PHONES:
            kind, many = PHONES[prop]
            numbers = _typed_numbers(phones, kind)
            out[prop] = numbers if many else (numbers[0] if numbers else None)
        elif prop in ADDRESS:
            value = address.get(ADDRESS[prop])
            out[prop] = value if isinstance(value, str) and value else None
        elif prop not in PROPERTIES and prop not in ("@odata.type", "group_id", "group_name"):
            out[prop] = None
    return out


def as_user_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``as_user`` for the contact rows of a member frame; user rows as they are. The frame's
    columns are the users' properties plus ``phones``/``addresses``, which are dropped."""
    extra = [c for c in ("phones", "addresses") if c in frame.columns]
    out = frame.drop(columns=extra) if extra else frame
    if "@odata.type" not in frame.columns:
        return out
    positions = [i for i, t in enumerate(frame["@odata.type"].tolist()) if t == CONTACT_TYPE]
    if not positions:
        return out
    wanted = list(out.columns)
    records = [as_user(r, wanted) for r in frame.iloc[positions].to_dict("records")]
    out = out.copy()
    for prop in [c for c in wanted if c not in PROPERTIES and c not in ("@odata.type", "group_id", "group_name")]:
        column = out[prop].astype(object).tolist()
        for position, record in zip(positions, records):
            column[position] = record[prop]
        out[prop] = pd.Series(column, index=out.index, dtype=object)
    return out


def object_types(types: pd.Series) -> list[str]:
    """``entra_object_type`` per member row: ``contact`` or ``user``."""
    return [OBJECT_TYPE if t == CONTACT_TYPE else "user" for t in types.tolist()]
