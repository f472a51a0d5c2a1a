"""Graph members → universal users, in the form Zammad will store them (pure; DESIGN.md §2).

The mapping (config) picks values; the fixed rules decide email and names; then every value is
put into the shape Zammad gives it on save (reference/zammad-api.md §2.4–2.7): email stripped
and lower-cased, a lone name split and capitalised, columns truncated to their limits. Comparing
that with Zammad's snapshot is what makes a second run write nothing. No I/O, no clock, no env.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers

from entrasync_pipeline import contacts
from entrasync_pipeline.fields import InvalidValue, convert

USER_TYPE = "#microsoft.graph.user"
CORE_FIELDS = ("email", "firstname", "lastname", "phone", "mobile", "department")
# Column limits of Zammad's users table; longer values are truncated on save (§2.7), except
# editable object-manager inputs (department), which are refused past maxlength, so we cut first.
FIELD_LIMITS = {
    "login": 255,
    "firstname": 100,
    "lastname": 100,
    "email": 255,
    "phone": 100,
    "mobile": 100,
    "fax": 100,
    "department": 200,
    "street": 120,
    "zip": 100,
    "city": 100,
    "country": 100,
    "address": 500,
    "note": 5000,
    "web": 100,
}
EMAIL_MAX = 250  # Zammad's validator accepts 3..250 characters (§2.2); the syntax below needs 5 ("a@b.c")
_EMAIL = re.compile(
    r"^[^\s@<>(),;:\"\[\]\\]+@[A-Za-z0-9\u00a1-\uffff](?:[A-Za-z0-9\u00a1-\uffff-]*[A-Za-z0-9\u00a1-\uffff])?"
    r"(?:\.[A-Za-z0-9\u00a1-\uffff](?:[A-Za-z0-9\u00a1-\uffff-]*[A-Za-z0-9\u00a1-\uffff])?)+$"
)
_URL_SCHEME = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)
_SPACES = re.compile(r"\s+")

LIMITED_REASON = "Graph returned no properties for this user (is User.Read.All granted?)"
LIMITED_CONTACT_REASON = "Graph returned no properties for this contact (is OrgContact.Read.All granted?)"
NO_EMAIL_REASON = "no usable email (mail, otherMails, non-guest userPrincipalName)"
NO_CONTACT_EMAIL_REASON = "no usable email (a contact's mail is empty)"
NO_IDENTIFIER_REASON = "no name, phone or email: Zammad needs one identifier"
PHONE_FIELDS = ("phone", "mobile", "fax")
# After the mapped fields: what the sync knows about the user beyond Zammad's values.
TAIL_COLUMNS = ("active", "roles", "source_groups", "skip_reason", "scope_reason", "phone_problem")
UNIVERSAL_COLUMNS = ("entra_key", "entra_object_type", "upn", "display_name", *CORE_FIELDS, *TAIL_COLUMNS)


@dataclass(frozen=True)
class Rule:
    """A mapping rule, decoupled from the pydantic model so the core stays framework-free."""

    source: tuple[str, ...] = ()
    constant: str | None = None
    transforms: tuple[str, ...] = ("strip",)
    default: str | None = None
    type: str = "text"  # fields.FIELD_TYPES
    options: tuple[tuple[str, str], ...] = ()  # a select's (key, label) pairs


@dataclass(frozen=True)
class ScopeTest:
    """A scope rule (``scope.include`` / ``scope.exclude``): exactly one of equals, one_of, matches."""

    attribute: str
    equals: str | None = None
    one_of: tuple[str, ...] | None = None
    matches: str | None = None

    def __str__(self) -> str:
        if self.equals is not None:
            return f"{self.attribute} equals {self.equals!r}"
        if self.one_of is not None:
            return f"{self.attribute} in {list(self.one_of)!r}"
        return f"{self.attribute} matches {self.matches!r}"


@dataclass(frozen=True)
class NormalizeOptions:
    mapping: Mapping[str, Rule]
    group_roles: Mapping[str, tuple[str, ...]]
    sync_users_without_email: bool = False
    include: tuple[ScopeTest, ...] = ()
    exclude: tuple[ScopeTest, ...] = ()
    phone_format: str = "as_is"  # or "e164"
    phone_region: str | None = None  # ISO 3166 region of numbers typed without a country code
    contacts: bool = False  # orgContact members are synced too (contacts.py), as customers


# --- values ----------------------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    """None, or pandas' NaN for a missing cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def plain_text(value: Any) -> str:
    """A scalar as text; a whole number held as a float (a numeric column with a gap becomes float64
    in pandas) is written without its ".0", so 4711 and 4711.0 are one value and never flap."""
    if value.__class__ is not str and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- phones ------------------------------------------------------------------------------------------
def phone_number(value: str | None, options: NormalizeOptions) -> tuple[str | None, str | None]:
    """(the number as Zammad gets it, why it was kept as typed or None).

    ``e164``: a valid number (phonenumbers' metadata) becomes +<country><number>, with its extension
    after " ext. "; anything else is kept exactly as typed and reported, never dropped. The output
    parses back to itself, so a second run compares equal and writes nothing.
    """
    if not value or options.phone_format != "e164":
        return value, None
    try:
        number = phonenumbers.parse(value, options.phone_region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        region = f" (default region {options.phone_region})" if options.phone_region else " (no default_region)"
        return value, f"{value[:40]!r} is not a valid phone number{region}"
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return (f"{text} ext. {number.extension}" if number.extension else text), None


def _phones(
    values: list[str | None], field: str, options: NormalizeOptions
) -> tuple[list[str | None], list[str | None]]:
    """``phone_number`` for a column (each distinct value parsed once); problems name the field."""
    known: dict[str, tuple[str | None, str | None]] = {}
    out: list[str | None] = []
    problems: list[str | None] = []
    for value in values:
        if not value:
            out.append(value)
            problems.append(None)
            continue
        number, problem = known.get(value) or known.setdefault(value, phone_number(value, options))
        out.append(number)
        problems.append(f"{field} {problem}; kept as typed" if problem else None)
    return out, problems


def _joined(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


# --- scope -------------------------------------------------------------------------------------------
def _scope_texts(value: Any) -> list[str]:
    """The texts a scope rule tests: each item of a list, true/false for a flag; none when missing."""
    items = value if isinstance(value, (list, tuple)) else [value]
    texts = []
    for item in items:
        if is_missing(item):
            continue
        texts.append(("true" if item else "false") if isinstance(item, bool) else plain_text(item))
    return texts


def scope_matches(record: Mapping[str, Any], test: ScopeTest) -> bool:
    """Case-insensitive, on any item of a list value; a missing attribute matches no rule."""
    for text in _scope_texts(record.get(test.attribute)):
        folded = text.casefold()
        if test.equals is not None and folded == test.equals.casefold():
            return True
        if test.one_of is not None and folded in {v.casefold() for v in test.one_of}:
            return True
        if test.matches is not None and re.fullmatch(test.matches, text, re.IGNORECASE):
            return True
    return False


def scope_reason(record: Mapping[str, Any], options: NormalizeOptions) -> str | None:
    """Why a member is out of scope, naming the rule; None when in scope.

    An exclude rule wins over the include rules; with include rules, a member must match one.
    """
    for position, test in enumerate(options.exclude):
        if scope_matches(record, test):
            return f"out of scope: scope.exclude[{position}] ({test})"
    if options.include and not any(scope_matches(record, test) for test in options.include):
        rules = "; ".join(str(t) for t in options.include)
        return f"out of scope: matches no scope.include rule ({rules})"
    return None


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
        value = plain_text(value)
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
    return None if value is None else plain_text(value)


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
    return len(value) <= EMAIL_MAX and ".." not in value and bool(_EMAIL.match(value))


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
    names: tuple[Any, Any] = (first, last)
    for _ in range(4):  # two steps at most, so far (``test_zammad_names_are_a_fixed_point``)
        again = _check_name(*names, email)
        if again == names:
            break
        names = again
    return names


def _check_name(first: str | None, last: str | None, email: str | None) -> tuple[str, str]:
    first = " ".join(_URL_SCHEME.sub("", t) for t in (first or "").strip().split(" ")).strip()
    last = " ".join(_URL_SCHEME.sub("", t) for t in (last or "").strip().split(" ")).strip()
    if first and last:
        return first[: FIELD_LIMITS["firstname"]], last[: FIELD_LIMITS["lastname"]]
    if first or last:
        first, last = _split_single_name(first or last)
    elif email and "." in (local := email.partition("@")[0]):
        first, last = local.split(".", 1)
    else:
        return "", ""
    first, last = _capitalise(first), _capitalise(last)
    return first[: FIELD_LIMITS["firstname"]], last[: FIELD_LIMITS["lastname"]]


def zammad_value(field: str, value: str | None) -> str | None:
    """A plain string column as Zammad stores it (truncated to its limit)."""
    if value is None:
        return None
    return value[: FIELD_LIMITS.get(field)]  # no limit (None): the whole value


# --- users -------------------------------------------------------------------------------------------
def normalize_user(record: Mapping[str, Any], options: NormalizeOptions) -> dict[str, Any]:
    """One Graph user item → one universal user (skip_reason set when it cannot be synced).

    The rules written out per user, as a reader would check them against DESIGN.md §2; the sync
    itself runs the column-wise ``normalize_members``, and a property test
    (``test_the_column_wise_normalizer_equals_the_per_user_rules``) keeps the two identical.
    """
    is_contact = record.get("@odata.type") == contacts.CONTACT_TYPE
    if is_contact:
        record = contacts.as_user(record, list(record))
    out: dict[str, Any] = {
        "entra_key": str(record.get("id") or ""),
        "entra_object_type": contacts.OBJECT_TYPE if is_contact else "user",
        "upn": record.get("userPrincipalName"),
        "display_name": record.get("displayName"),
        "active": record.get("accountEnabled") is not False,
        "skip_reason": None,
    }
    if _is_limited(record):
        out["skip_reason"] = LIMITED_CONTACT_REASON if is_contact else LIMITED_REASON
    email_rule = options.mapping.get("email", Rule(("mail", "otherMails", "userPrincipalName")))
    email = zammad_email(map_field(record, email_rule, reject=_is_guest_upn))
    if email and not valid_email(email):
        out["skip_reason"] = out["skip_reason"] or f"invalid email {email[:80]!r}"
        email = ""
    elif not email and not options.sync_users_without_email:
        out["skip_reason"] = out["skip_reason"] or (NO_CONTACT_EMAIL_REASON if is_contact else NO_EMAIL_REASON)
    out["email"] = email
    problems: list[str | None] = []
    for field, rule in options.mapping.items():
        if field != "email":  # the names are replaced below, by Zammad's name rules
            value = map_field(record, rule)
            if field in PHONE_FIELDS:
                value, problem = phone_number(value, options)
                problems.append(f"{field} {problem}; kept as typed" if problem else None)
            out[field] = zammad_value(field, value)
    out["phone_problem"] = _joined(*problems)
    for field, rule in typed_rules(options.mapping).items():
        out[field] = typed_values(rule, [out[field]], [out["entra_key"]], {}, field)[0]
    first = map_field(record, options.mapping["firstname"]) if "firstname" in options.mapping else None
    last = map_field(record, options.mapping["lastname"]) if "lastname" in options.mapping else None
    if not first and not last:
        display = record.get("displayName")  # NaN where the snapshot has no value, as for limited members
        first = _SPACES.sub(" ", "" if is_missing(display) else str(display)).strip() or None
    out["firstname"], out["lastname"] = zammad_names(first, last, email)
    if not any(out.get(f) for f in ("firstname", "lastname", "phone", "mobile", "email")):
        out["skip_reason"] = out["skip_reason"] or NO_IDENTIFIER_REASON
    out["scope_reason"] = scope_reason(record, options)
    return out


def _is_limited(record: Mapping[str, Any]) -> bool:
    """Limited-information members: only @odata.type and id (reference §1.4, §6)."""
    keys = [k for k in record if k not in ("id", "@odata.type", "group_id", "group_name")]
    return bool(keys) and all(is_missing(record[k]) or record[k] == [] for k in keys)


def normalize_members(members: pd.DataFrame, options: NormalizeOptions) -> pd.DataFrame:
    """The raw member snapshot → one row per Entra user in scope (first occurrence wins; groups merged).

    Column-wise, so 100,000 members take a fraction of a second; the result equals applying
    ``normalize_user`` to each first occurrence (a property test holds the two together).
    """
    fields = list(dict.fromkeys([*CORE_FIELDS, *options.mapping]))
    columns = list(dict.fromkeys([*UNIVERSAL_COLUMNS[:4], *fields, *TAIL_COLUMNS]))
    if members.empty:
        return pd.DataFrame(columns=columns)
    is_user = members["@odata.type"] == USER_TYPE
    if options.contacts:
        is_user |= members["@odata.type"] == contacts.CONTACT_TYPE
    users = members if is_user.all() else members[is_user]
    users = contacts.as_user_rows(users) if options.contacts else users
    ids = _texts(users["id"], str)
    group_ids = users["group_id"].tolist()
    single: dict[Any, tuple[Any, ...]] = {}  # one tuple per group, shared by its members' rows
    if len(set(ids)) == len(ids):
        first = users
        groups = [single.get(g) or single.setdefault(g, (g,)) for g in group_ids]
    else:
        groups_of: dict[str, set[str]] = {}
        for key, group in zip(ids, group_ids):
            groups_of.setdefault(key, set()).add(group)
        keep = ~pd.Series(ids, index=users.index).duplicated()
        first = users[keep.to_numpy()]
        groups = [tuple(sorted(groups_of[k])) for k in pd.Series(ids)[keep.to_numpy()].tolist()]
    out = _normalize_frame(first.reset_index(drop=True), options)
    invalid: dict[str, list[dict[str, str]]] = {}
    for field, rule in typed_rules(options.mapping).items():
        out[field] = typed_values(rule, out[field], out["entra_key"], invalid, field)
    out["source_groups"] = groups
    if any(options.group_roles.values()):
        roles_of: dict[tuple[Any, ...], tuple[str, ...]] = {}
        out["roles"] = [
            roles_of.get(gs)
            or roles_of.setdefault(gs, tuple(sorted({r for g in gs for r in options.group_roles.get(g, ())})))
            for gs in groups
        ]
        if options.contacts:  # contacts are customers, whatever group brought them
            kinds = out["entra_object_type"]
            out["roles"] = [
                (contacts.CUSTOMER_ROLE,) if k == contacts.OBJECT_TYPE else r for k, r in zip(kinds, out["roles"])
            ]
    else:
        out["roles"] = [()] * len(groups)
    users = _frame(out, columns)
    if invalid:
        users.attrs[INVALID_VALUES] = invalid
    return users


# --- typed fields (fields.py) ------------------------------------------------------------------------
INVALID_VALUES = "invalid_values"  # attrs of the universal users: field → [{entra_key, value, reason}]


def typed_rules(mapping: Mapping[str, Rule]) -> dict[str, Rule]:
    """The mapping's fields of a type other than text, which Zammad stores as booleans, numbers,
    dates or option keys."""
    return {field: rule for field, rule in mapping.items() if rule.type != "text"}


def typed_values(
    rule: Rule, values: list[Any], keys: list[str], invalid: dict[str, list[dict[str, str]]], field: str
) -> list[Any]:
    """Each mapped value converted to the stored form of ``rule.type``; one that does not convert
    becomes the rule's default (or none) and is reported in ``invalid`` under ``field``.

    The first non-empty source is the value, as for text: a bad value is a data problem to report,
    not a reason to take another attribute silently.
    """
    options = dict(rule.options)
    fallback = convert(rule.type, rule.default, options)  # the settings checked that it converts
    out = []
    for key, value in zip(keys, values):
        try:
            out.append(convert(rule.type, value, options))
        except InvalidValue as exc:
            invalid.setdefault(field, []).append({"entra_key": key, "value": str(value)[:80], "reason": str(exc)})
            out.append(fallback)
    return out


def _frame(values: dict[str, list[Any]], columns: list[str]) -> pd.DataFrame:
    """The columns as a DataFrame, equal to ``pd.DataFrame(values, columns=columns)``, built faster.

    pandas converts each list of Python objects through numpy's type discovery, then copies the
    object columns into one block; here the references go straight into that block. Lists of
    bools stay bool columns; a column without values is all NaN, as pandas makes it.
    """
    n = len(next(iter(values.values()))) if values else 0
    flags = {
        c
        for c in columns
        if c in values and values[c] and values[c][0].__class__ is bool and set(map(type, values[c])) == {bool}
    }
    texts = [c for c in columns if c in values and c not in flags]
    chained = itertools.chain.from_iterable(values[c] for c in texts)
    block = np.fromiter(chained, dtype=object, count=n * len(texts)).reshape(len(texts), n)
    frame = pd.DataFrame(block.T, columns=texts, copy=False)  # a view: pandas stores columns as rows
    for position, name in enumerate(columns):
        if name in flags:
            frame.insert(position, name, np.array(values[name], dtype=bool))
        elif name not in values:
            frame.insert(position, name, np.full(n, np.nan, dtype=object))
    return frame


def _texts(column: pd.Series, convert: Callable[[Any], str]) -> list[str]:
    """``convert`` applied to every value, skipped when all are text already (Graph's object ids)."""
    values = column.to_numpy()
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist()
    return [convert(v) for v in values.tolist()]


def _values(frame: pd.DataFrame, column: str) -> tuple[list[Any], bool]:
    """A column as plain values: NaN → None, other scalars → str, strings and lists as they are.

    Also says whether every value is a string (no None, no list): then transforms need no checks.
    """
    if column not in frame.columns:
        return [None] * len(frame), False
    values = frame[column].to_numpy()
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist(), True
    plain = [
        v
        if (c := v.__class__) is str or c is list
        else (None if v is None or (c is float and v != v) else plain_text(v))
        for v in values.tolist()
    ]
    return plain, False


def _first_text(items: list[Any]) -> str | None:
    return next((v for v in items if isinstance(v, str) and v.strip()), None)


_STR_METHODS = {"strip": str.strip, "lower": str.lower, "upper": str.upper}


def _lowered(values: list[str]) -> list[str]:
    """``str.lower`` of each text, the text itself where it is lower case already.

    ``lower()`` copies even an unchanged string; an email is usually lower case, so this keeps one
    copy of it (the snapshot's) instead of two. A text without upper- or titlecase characters is
    unchanged by ``lower()`` (true of every Unicode character), so the result is the same.
    """
    return [v if v.islower() else v.lower() for v in values]


def _transform_values(values: list[Any], transforms: Iterable[str], text: bool = False) -> list[str | None]:
    """``_transform`` for a whole column, one pass per transform; ``text``: every value is a str."""
    for name in transforms:
        method = _STR_METHODS.get(name)
        if text and name in ("first", "join"):
            continue  # no lists in a text column
        if text and name == "lower":
            values = _lowered(values)
        elif text and method is not None:
            values = list(map(method, values))
        elif name == "first":
            values = [
                (v[0] if v and v[0].__class__ is str and v[0][:1].strip() else _first_text(v))
                if v.__class__ is list
                else v
                for v in values
            ]
        elif name == "join":
            values = [
                ", ".join(str(x).strip() for x in v if str(x).strip()) if v.__class__ is list else v for v in values
            ]
        elif method is not None:
            values = [method(v) if v.__class__ is str else v for v in values]
        elif name == "collapse_spaces":
            # ASCII, printable, no double space: \s+ can only match single spaces, so nothing changes.
            # Checked on all the column's text at once first (a double space across two values only
            # sends the column down the per-value check).
            joined = "".join(values if text else [v for v in values if v.__class__ is str])
            if joined.isascii() and joined.isprintable() and "  " not in joined:
                continue
            values = [
                _SPACES.sub(" ", v)
                if v.__class__ is str and not (v.isascii() and v.isprintable() and "  " not in v)
                else v
                for v in values
            ]
    if text:
        return values
    return [next((str(x) for x in v if str(x).strip()), None) if v.__class__ is list else v for v in values]


def _map_column(frame: pd.DataFrame, rule: Rule, reject_guests: bool = False) -> list[str | None]:
    """``map_field`` for a whole column: first non-empty source after transforms, else the default.

    ``reject_guests``: skip #EXT# guest UPNs (``_is_guest_upn``), as the email rule does.
    """
    if rule.constant is not None:
        return [rule.constant] * len(frame)
    result: list[str | None] = [None] * len(frame)
    pending: list[int] | None = None  # rows still without a value; None: all of them
    for source in rule.source:
        column, text = _values(frame, source)
        if pending is not None:
            column = [column[i] for i in pending]
        candidates = _transform_values(column, rule.transforms, text)
        if reject_guests and "#" in "".join([c for c in candidates if c]):
            # A lower-cased '#ext#' needs a '#' in the value itself: most columns have none at all.
            candidates = [None if c and "#" in c and "#ext#" in c.lower() else c for c in candidates]
        if pending is None:
            result = candidates if all(candidates) else [c if c else None for c in candidates]
        else:
            for i, candidate in zip(pending, candidates):
                if candidate:
                    result[i] = candidate
        pending = [] if all(result) else [i for i, r in enumerate(result) if not r]
        if not pending:
            break  # every row has a value: later sources are never read
    if pending is not None and not pending:
        return result
    return [r if r else rule.default for r in result]


def _all_plain_names(values: list[Any]) -> bool:
    """Every value a non-empty name without surrounding space or URL scheme (checked all at once)."""
    return (
        all(values)
        and list(map(str.strip, values)) == values  # strip returns the very same object when it strips nothing
        and "://" not in "\n".join(values)
    )


def _truncated(values: list[Any], limit: int | None) -> list[Any]:
    """Each value cut to ``limit`` characters (None stays None); the list itself when none is longer."""
    if not limit or max(map(len, filter(None, values)), default=0) <= limit:
        return values
    return [v[:limit] if v is not None else v for v in values]


def _limited_mask(frame: pd.DataFrame) -> list[bool]:
    props = [c for c in frame.columns if c not in ("id", "@odata.type", "group_id", "group_name")]
    if not props:
        return [False] * len(frame)
    if "userPrincipalName" in props:  # every readable user has a UPN: only rows without one can be limited
        if not frame["userPrincipalName"].isna().any():
            return [False] * len(frame)
        limited = [v is None or (v.__class__ is float and v != v) for v in frame["userPrincipalName"].tolist()]
    else:
        limited = [True] * len(frame)
    for column in props:
        values = frame[column].tolist()
        limited = [
            lim and (v is None or (v.__class__ is float and v != v) or (v.__class__ is list and not v))
            for lim, v in zip(limited, values)
        ]
    return limited


def _active(frame: pd.DataFrame) -> list[bool]:
    """``accountEnabled is not False`` per row (a bool column as it is)."""
    if "accountEnabled" not in frame.columns:
        return [True] * len(frame)
    column = frame["accountEnabled"]
    if column.dtype == bool:
        return column.tolist()
    return [v is not False for v in column.tolist()]


def _normalize_frame(frame: pd.DataFrame, options: NormalizeOptions) -> dict[str, list[Any]]:
    n = len(frame)
    out: dict[str, list[Any]] = {
        "entra_key": _texts(frame["id"], lambda v: str(v or "")),
        "entra_object_type": contacts.object_types(frame["@odata.type"])
        if "@odata.type" in frame.columns
        else ["user"] * n,
        "upn": frame["userPrincipalName"].tolist() if "userPrincipalName" in frame.columns else [None] * n,
        "display_name": frame["displayName"].tolist() if "displayName" in frame.columns else [None] * n,
        "active": _active(frame),
    }
    limited = _limited_mask(frame)
    reasons: list[str | None] = [None] * n
    if any(limited):
        kinds = out["entra_object_type"]
        reasons = [
            (LIMITED_CONTACT_REASON if k == contacts.OBJECT_TYPE else LIMITED_REASON) if lim else None
            for lim, k in zip(limited, kinds)
        ]
    email_rule = options.mapping.get("email", Rule(("mail", "otherMails", "userPrincipalName")))
    mapped = _map_column(frame, email_rule, reject_guests=True)
    if all(mapped):
        emails = _lowered(list(map(str.strip, mapped)))  # zammad_email of every one
    else:
        emails = [e.strip().lower() if e else "" for e in mapped]
    valid = list(map(valid_email, emails))
    for i in [] if all(valid) else [i for i, (email, ok) in enumerate(zip(emails, valid)) if not (email and ok)]:
        if emails[i]:
            reasons[i] = reasons[i] or f"invalid email {emails[i][:80]!r}"
            emails[i] = ""
        elif not options.sync_users_without_email:
            no_email = (
                NO_CONTACT_EMAIL_REASON if out["entra_object_type"][i] == contacts.OBJECT_TYPE else NO_EMAIL_REASON
            )
            reasons[i] = reasons[i] or no_email
    out["email"] = emails
    _map_other_fields(frame, options, out)
    firsts = _map_column(frame, options.mapping["firstname"]) if "firstname" in options.mapping else [None] * n
    lasts = _map_column(frame, options.mapping["lastname"]) if "lastname" in options.mapping else [None] * n
    out["firstname"], out["lastname"] = _names(firsts, lasts, frame, emails)
    phones, mobiles = out.get("phone", [None] * n), out.get("mobile", [None] * n)
    if not (all(out["firstname"]) or all(out["lastname"])):
        for i, (first, last) in enumerate(zip(out["firstname"], out["lastname"])):
            if not (first or last or phones[i] or mobiles[i] or emails[i]):
                reasons[i] = reasons[i] or NO_IDENTIFIER_REASON
    out["skip_reason"] = reasons
    out["scope_reason"] = _scope_reasons(frame, options)
    return out


def _map_other_fields(frame: pd.DataFrame, options: NormalizeOptions, out: dict[str, list[Any]]) -> None:
    """Every mapped field but email and the names (their own rules), phones in the configured format,
    truncated to Zammad's limits; ``phone_problem`` names the numbers kept as typed."""
    problems: list[list[str | None]] = []
    for field, rule in options.mapping.items():
        if field not in ("email", "firstname", "lastname"):
            values = _map_column(frame, rule)
            if field in PHONE_FIELDS and options.phone_format == "e164":
                values, found = _phones(values, field, options)
                problems.append(found)
            out[field] = _truncated(values, FIELD_LIMITS.get(field))
    out["phone_problem"] = [_joined(*row) for row in zip(*problems)] if problems else [None] * len(frame)


def _scope_reasons(frame: pd.DataFrame, options: NormalizeOptions) -> list[str | None]:
    """``scope_reason`` per row; only the rules' attributes are read, and nothing without rules."""
    if not options.include and not options.exclude:
        return [None] * len(frame)
    attributes = list(dict.fromkeys(t.attribute for t in (*options.include, *options.exclude)))
    columns = {a: frame[a].tolist() if a in frame.columns else [None] * len(frame) for a in attributes}
    return [scope_reason({a: columns[a][i] for a in attributes}, options) for i in range(len(frame))]


def _names(firsts: list[Any], lasts: list[Any], frame: pd.DataFrame, emails: list[str]) -> tuple[list[str], list[str]]:
    """``zammad_names`` per row, after the display-name fallback; both names given is the quick case."""
    first_max, last_max = FIELD_LIMITS["firstname"], FIELD_LIMITS["lastname"]
    # Both given, stripped and without a URL scheme: Zammad keeps them (truncated), no rule applies.
    if _all_plain_names(firsts) and _all_plain_names(lasts):
        return _truncated(firsts, first_max), _truncated(lasts, last_max)  # type: ignore[arg-type]
    quick = [
        bool(f and s and f == f.strip() and s == s.strip() and "://" not in f and "://" not in s)
        for f, s in zip(firsts, lasts)
    ]
    first_out = [f[:first_max] if q else None for f, q in zip(firsts, quick)]
    last_out = [s[:last_max] if q else None for s, q in zip(lasts, quick)]
    if all(quick):
        return first_out, last_out  # type: ignore[return-value]
    displays, _ = _values(frame, "displayName")
    for i in [i for i, q in enumerate(quick) if not q]:
        first, last = firsts[i], lasts[i]
        if not first and not last:
            first = _SPACES.sub(" ", displays[i] or "").strip() or None
        if first and last and "://" not in first and "://" not in last:
            first, last = first.strip(), last.strip()
            if first and last:
                first_out[i], last_out[i] = first[:first_max], last[:last_max]
                continue
        first_out[i], last_out[i] = zammad_names(first, last, emails[i])
    return first_out, last_out  # type: ignore[return-value]


def skipped_member_types(members: pd.DataFrame, with_contacts: bool = False) -> dict[str, int]:
    """Counts of the members not synced (groups, devices, contacts unless synced, ...), reported."""
    if members.empty:
        return {}
    synced = [USER_TYPE, contacts.CONTACT_TYPE] if with_contacts else [USER_TYPE]
    others = members[~members["@odata.type"].isin(synced)]
    counts = others.drop_duplicates(subset=["id"])["@odata.type"].value_counts()
    return {str(k).replace("#microsoft.graph.", ""): int(v) for k, v in counts.items()}
