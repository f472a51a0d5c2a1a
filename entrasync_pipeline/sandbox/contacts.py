"""Organizational contacts as the sandbox's control API creates and changes them.

Contacts are read-only in Microsoft Graph (they come from Exchange Online or on-premises sync), so
tests change them through ``/_sandbox/contacts`` (``graph.py``), and this module checks such a
change the way Exchange would keep it. It must not know HTTP routing or the directory.
"""

from __future__ import annotations

from typing import Any

from entrasync_pipeline.sandbox.directory import ADDRESS_FIELDS, PHONE_TYPES, TYPE_PROPERTIES
from entrasync_pipeline.sandbox.httpd import Request


class ContactRejected(Exception):
    """A control-API contact change the sandbox refuses: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def contact_record(payload: dict[str, Any], creating: bool) -> dict[str, Any]:
    """An orgContact's properties from a control-API body, checked the way Exchange would keep them.

    Only orgContact properties (no mobilePhone or businessPhones: numbers are ``phones``); phones
    ``[{"number", "type"}]`` with phone.md's types, one of each type at most (orgcontact.md); at most
    one address with physicalOfficeAddress's fields, the missing ones null, as Graph renders them.
    A new contact needs a ``displayName``; ``id`` is set only on create.
    """
    unknown = sorted(k for k in payload if k not in TYPE_PROPERTIES["orgContact"] or (k == "id" and not creating))
    if unknown:
        allowed = ", ".join(p for p in TYPE_PROPERTIES["orgContact"] if creating or p != "id")
        raise ContactRejected(400, f"contact: {unknown[0]!r} is not a writable orgContact property ({allowed})")
    if creating and not (isinstance(payload.get("displayName"), str) and payload["displayName"].strip()):
        raise ContactRejected(400, "contact: displayName is required")
    record = dict(payload)
    if "phones" in record:
        record["phones"] = _contact_phones(record["phones"])
    if "addresses" in record:
        record["addresses"] = _contact_addresses(record["addresses"])
    for prop in ("proxyAddresses", "onPremisesProvisioningErrors", "serviceProvisioningErrors"):
        if prop in record and not isinstance(record[prop], list):
            raise ContactRejected(400, f"contact: {prop} must be a list")
    return record


def _contact_phones(phones: Any) -> list[dict[str, Any]]:
    if not isinstance(phones, list):
        raise ContactRejected(400, "contact: phones must be a list of {number, type}")
    seen: set[str] = set()
    out = []
    for phone in phones:
        if not isinstance(phone, dict) or set(phone) - {"number", "type"} or phone.get("type") not in PHONE_TYPES:
            raise ContactRejected(
                400, f"contact: phone {phone!r} must be {{number, type}} with type one of {sorted(PHONE_TYPES)}"
            )
        if phone["type"] in seen:
            raise ContactRejected(400, f"contact: a second {phone['type']!r} phone (one of each type at most)")
        seen.add(phone["type"])
        out.append({"number": phone.get("number"), "type": phone["type"]})
    return out


def _contact_addresses(addresses: Any) -> list[dict[str, Any]]:
    if not isinstance(addresses, list) or len(addresses) > 1:
        raise ContactRejected(400, "contact: addresses must be a list of at most one address")
    for address in addresses:
        if not isinstance(address, dict) or set(address) - ADDRESS_FIELDS:
            raise ContactRejected(400, f"contact: address {address!r} may only have {sorted(ADDRESS_FIELDS)}")
    return [{f: a.get(f) for f in sorted(ADDRESS_FIELDS)} for a in addresses]


def control_body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        raise ContactRejected(400, "contact: the body is not JSON") from None
    if not isinstance(body, dict):
        raise ContactRejected(400, "contact: the body must be a JSON object of orgContact properties")
    return body
