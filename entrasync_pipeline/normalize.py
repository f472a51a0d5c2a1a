"""Graph members → universal users, in the form Zammad will store them (pure; DESIGN.md §2).

The mapping (config) picks values; the fixed rules decide email and names; then every value is
put into the shape Zammad gives it on save (reference/zammad-api.md §2.4–2.7): email stripped
and lower-cased, a lone name split and capitalised, columns truncated to their limits. Comparing
that with Zammad's snapshot is what makes a second run write nothing. No I/O, no clock, no env.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

USER_TYPE = "#microsoft.graph.user"
CORE_FIELDS = ("email", "firstname", "lastname", "phone", "mobile", "department")
# Column limits of Zammad's users table; longer values are truncated on save (§2.7), except
# editable object-manager inputs (department), which are refused past maxlength, so we cut first.
FIELD_LIMITS = {"login": 255, "firstname": 100, "lastname": 100, "email": 255, "phone": 100, "mobile": 100,
                "fax": 100, "department": 200, "street": 120, "zip": 100, "city": 100, "country": 100,
                "address": 500, "note": 5000, "web": 100}
EMAIL_MAX = 250  # Zammad's validator accepts 3..250 characters (§2.2)
_EMAIL = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[A-Za-z0-9\u00a1-\uffff](?:[A-Za-z0-9\u00a1-\uffff-]*[A-Za-z0-9\u00a1-\uffff])?"
                    r"(?:\.[A-Za-z0-9\u00a1-\uffff](?:[A-Za-z0-9\u00a1-\uffff-]*[A-Za-z0-9\u00a1-\uffff])?)+$")
_URL_SCHEME = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)
_SPACES = re.compile(r"\s+")

UNIVERSAL_COLUMNS = ("entra_key", "entra_object_type", "upn", "display_name", *CORE_FIELDS,
                     "active", "roles", "source_groups", "skip_reason")


@dataclass(frozen=True)
class Rule:
    """A mapping rule, decoupled from the pydantic model so the core stays framework-free."""

    source: tuple[str, ...] = ()
    constant: str | None = None
    transforms: tuple[str, ...] = ("strip",)
    default: str | None = None


@dataclass(frozen=True)
class NormalizeOptions:
    mapping: Mapping[str, Rule]
    group_roles: Mapping[str, tuple[str, ...]]
    sync_users_without_email: bool = False


# --- values ----------------------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    """None, or pandas' NaN for a missing cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _transform(value: Any, transforms: Iterable[str]) -> str | None:
    if is_missing(value):
        return None
    for name in transforms:
        if isinstance(value, list):
            if name == "first":
                value = next((v for v in value if isinstance(v, str) and v.strip()), None)
            elif name == "join":
                value = ", ".join(str(v).strip() for v in value if str(v).strip())
            continue
        if value is None:
            return None
        value = str(value)
        if name == "strip":
            value = value.strip()
        elif name == "lower":
            value = value.lower()
        elif name == "upper":
            value = value.upper()
        elif name == "collapse_spaces":
            value = _SPACES.sub(" ", value)
    if isinstance(value, list):
        value = next((str(v) for v in value if str(v).strip()), None)
    return None if value is None else str(value)


def map_field(record: Mapping[str, Any], rule: Rule, reject: Any = None) -> str | None:
    """First non-empty source value after transforms; ``reject`` drops unusable candidates."""
    if rule.constant is not None:
        return rule.constant
    for source in rule.source:
        value = _transform(record.get(source), rule.transforms)
        if value and (reject is None or not reject(value)):
            return value
    return rule.default


def _is_guest_upn(value: str) -> bool:
    return "#ext#" in value.lower()


def valid_email(value: str) -> bool:
    return 3 <= len(value) <= EMAIL_MAX and ".." not in value and bool(_EMAIL.match(value))


def zammad_email(value: str | None) -> str:
    return (value or "").strip().lower()


def _capitalise(value: str) -> str:
    return value.capitalize() if value.isalpha() and (value.islower() or value.isupper()) else value


def _split_single_name(value: str) -> tuple[str, str]:
    if "," in value:
        last, first = value.split(",", 1)
        return first.strip(), last.strip()
    parts = value.split()
    if len(parts) > 2 and parts[0] in ("Dr.", "Prof."):
        return f"{parts[0]} {parts[1]}", " ".join(parts[2:])
    if len(parts) >= 2:
        return parts[0], value.split(None, 1)[1].strip()
    return value, ""


def zammad_names(first: str | None, last: str | None, email: str | None) -> tuple[str, str]:
    """The names Zammad stores for this input, and keeps when they are sent again.

    Zammad's ``check_name`` (reference §2.6) is not idempotent for every input (a lone
    ``"0,"`` becomes ``("", "0")`` and then ``("0", "")``); the sync sends what it compares, so
    it applies the rule until nothing changes.
    """
    names = _check_name(first, last, email)
    for _ in range(3):
        again = _check_name(*names, email)
        if again == names:
            break
        names = again
    return names


def _check_name(first: str | None, last: str | None, email: str | None) -> tuple[str, str]:
    first = " ".join(_URL_SCHEME.sub("", t) for t in (first or "").strip().split(" ")).strip()
    last = " ".join(_URL_SCHEME.sub("", t) for t in (last or "").strip().split(" ")).strip()
    if first and last:
        return first[:FIELD_LIMITS["firstname"]], last[:FIELD_LIMITS["lastname"]]
    if first or last:
        first, last = _split_single_name(first or last)
    elif email and "." in email.split("@", 1)[0]:
        first, last = email.split("@", 1)[0].split(".", 1)
    else:
        return "", ""
    first, last = _capitalise(first), _capitalise(last)
    return first[:FIELD_LIMITS["firstname"]], last[:FIELD_LIMITS["lastname"]]


def zammad_value(field: str, value: str | None) -> str | None:
    """A plain string column as Zammad stores it (truncated to its limit)."""
    if value is None:
        return None
    limit = FIELD_LIMITS.get(field)
    return value[:limit] if limit else value


# --- users -------------------------------------------------------------------------------------------
def normalize_user(record: Mapping[str, Any], options: NormalizeOptions) -> dict[str, Any]:
    """One Graph user item → one universal user (skip_reason set when it cannot be synced)."""
    out: dict[str, Any] = {"entra_key": str(record.get("id") or ""), "entra_object_type": "user",
                           "upn": record.get("userPrincipalName"), "display_name": record.get("displayName"),
                           "active": record.get("accountEnabled") is not False, "skip_reason": None}
    if _is_limited(record):
        out["skip_reason"] = "Graph returned no properties for this user (is User.Read.All granted?)"
    email_rule = options.mapping.get("email", Rule(("mail", "otherMails", "userPrincipalName")))
    email = zammad_email(map_field(record, email_rule, reject=_is_guest_upn))
    if email and not valid_email(email):
        out["skip_reason"] = out["skip_reason"] or f"invalid email {email[:80]!r}"
        email = ""
    elif not email and not options.sync_users_without_email:
        out["skip_reason"] = out["skip_reason"] or "no usable email (mail, otherMails, non-guest userPrincipalName)"
    out["email"] = email
    for field, rule in options.mapping.items():
        if field not in ("email", "firstname", "lastname"):
            out[field] = zammad_value(field, map_field(record, rule))
    first = map_field(record, options.mapping["firstname"]) if "firstname" in options.mapping else None
    last = map_field(record, options.mapping["lastname"]) if "lastname" in options.mapping else None
    if not first and not last:
        first = _SPACES.sub(" ", str(record.get("displayName") or "")).strip() or None
    out["firstname"], out["lastname"] = zammad_names(first, last, email)
    if not any(out.get(f) for f in ("firstname", "lastname", "phone", "mobile", "email")):
        out["skip_reason"] = out["skip_reason"] or "no name, phone or email: Zammad needs one identifier"
    return out


def _is_limited(record: Mapping[str, Any]) -> bool:
    """Limited-information members: only @odata.type and id (reference §1.4, §6)."""
    keys = [k for k in record if k not in ("id", "@odata.type", "group_id", "group_name")]
    return bool(keys) and all(is_missing(record[k]) or record[k] == [] for k in keys)


def normalize_members(members: pd.DataFrame, options: NormalizeOptions) -> pd.DataFrame:
    """The raw member snapshot → one row per Entra user in scope (first occurrence wins; groups merged)."""
    fields = list(dict.fromkeys([*CORE_FIELDS, *options.mapping]))
    columns = list(dict.fromkeys([*UNIVERSAL_COLUMNS[:4], *fields, *UNIVERSAL_COLUMNS[-4:]]))
    if members.empty:
        return pd.DataFrame(columns=columns)
    users = members[members["@odata.type"] == USER_TYPE]
    groups_of: dict[str, list[str]] = {}
    first_record: dict[str, dict[str, Any]] = {}
    for record in users.to_dict("records"):
        key = str(record["id"])
        groups_of.setdefault(key, [])
        if record["group_id"] not in groups_of[key]:
            groups_of[key].append(record["group_id"])
        first_record.setdefault(key, record)
    rows = []
    for key, record in first_record.items():
        row = normalize_user(record, options)
        groups = tuple(sorted(groups_of[key]))
        row["source_groups"] = groups
        row["roles"] = tuple(sorted({r for g in groups for r in options.group_roles.get(g, ())}))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=columns)


def skipped_member_types(members: pd.DataFrame) -> dict[str, int]:
    """Counts of non-user members (groups, devices, contacts, ...), reported and never synced."""
    if members.empty:
        return {}
    others = members[members["@odata.type"] != USER_TYPE]
    counts = others.drop_duplicates(subset=["id"])["@odata.type"].value_counts()
    return {str(k).replace("#microsoft.graph.", ""): int(v) for k, v in counts.items()}
