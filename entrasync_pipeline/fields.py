"""Typed custom fields: a mapped value in the form Zammad stores it, and whether Zammad holds the field (pure).

A mapping field has a type (``text``, ``boolean``, ``integer``, ``date``, ``select``). Each is a
Zammad object-manager data type (``input``, ``boolean``, ``integer``, ``date``, ``select``), and
Zammad keeps each in a column of its own SQL type: JSON ``true``/``false``, a number, a
``"YYYY-MM-DD"`` string, an option key. Zammad does not refuse most values of the wrong type; it
casts them the Rails way ("no" is true, "12abc" is 12, "31.02.2024" is null), so a value must be
converted here, strictly, before it is sent, and compared in the stored form, or a second run
would write it again (reference/zammad-api.md §4; Zammad's app/models/object_manager/attribute.rb
``migration_execute`` and attribute/data_option_validator.rb).

``convert`` turns an Entra value into the stored form and refuses what does not convert (the
caller reports it); ``stored`` reads either side leniently (a Zammad number read back as 12.0, a
NaN) so equal values always compare equal. ``attribute_spec`` is what ``zammad-setup`` creates;
``field_problems`` judges Zammad's object manager against the mapping. No I/O, no clock.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FIELD_TYPES = ("text", "boolean", "integer", "date", "select")
# Zammad data types that hold each of our types (reference §4): a text may go into a one-line
# input, a textarea or a richtext (Zammad's own note); the others have exactly one.
DATA_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("input", "textarea", "richtext"),
    "boolean": ("boolean",),
    "integer": ("integer",),
    "date": ("date",),
    "select": ("select",),
}
# DataOptionValidator's bounds for an integer attribute's min and max (a 4-byte SQL integer).
INTEGER_MIN, INTEGER_MAX = -2_147_483_647, 2_147_483_647
TEXT_MAXLENGTH = 255  # Zammad's own string attributes use 255 unless they need more
SELECT_MAXLENGTH = 255  # set_base_options: a select column is varchar(maxlength || 255)
TRUE_TEXTS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_TEXTS = frozenset({"false", "no", "n", "0", "off"})
_INTEGER = re.compile(r"^[+-]?\d+$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
SETUP_COMMAND = "entrasync zammad-setup"
# User parameters Zammad resolves itself rather than storing as a column (``organization`` is
# looked up by name, can_associations.rb): never an object-manager attribute to check or create.
ASSOCIATION_PARAMS = frozenset({"organization"})


class InvalidValue(ValueError):
    """A source value that does not convert to its field's type; the message says why."""


# --- values ----------------------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def convert(kind: str, value: Any, options: Mapping[str, str] | None = None) -> Any:
    """``value`` (text from the mapping, or a JSON scalar) in the form Zammad stores for ``kind``.

    Empty is None, except for a boolean, which has two values only: empty is false (a null
    boolean column reads as unticked, and sending null could never make it equal to false).
    Raises ``InvalidValue`` for anything Zammad would silently cast to something else.
    """
    if kind == "boolean":
        return _boolean(value)
    if _missing(value):
        return None
    if kind == "integer":
        return _integer(value)
    if kind == "date":
        return _date(value)
    if kind == "select":
        return _option(value, options or {})
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _missing(value):
        return False
    text = str(value).strip().lower()
    if text in TRUE_TEXTS:
        return True
    if text in FALSE_TEXTS:
        return False
    raise InvalidValue(f"{_shown(value)} is not a boolean (true/false, yes/no, 1/0, on/off)")


def _integer(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise InvalidValue(f"{_shown(value)} is not a whole number")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    else:
        text = str(value).strip()
        if _INTEGER.match(text):
            number = int(text)
        else:
            try:
                real = float(text)  # a number Graph or pandas gave as 12.0
            except ValueError:
                raise InvalidValue(f"{_shown(value)} is not a whole number") from None
            if not math.isfinite(real) or not real.is_integer():
                raise InvalidValue(f"{_shown(value)} is not a whole number")
            number = int(real)
    if not INTEGER_MIN <= number <= INTEGER_MAX:
        raise InvalidValue(f"{number} is outside Zammad's integer range ({INTEGER_MIN}..{INTEGER_MAX})")
    return number


def _date(value: Any) -> str:
    """An ISO 8601 date or date-time → "YYYY-MM-DD": the calendar date as written (the offset is
    not applied, as Zammad's date cast does not apply it either)."""
    if hasattr(value, "isoformat") and not isinstance(value, str):
        value = value.isoformat()
    text = str(value).strip()
    match = _DATE.match(text)
    if match:
        year, month, day = (int(part) for part in match.groups())
        if 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and year >= 1:
            return f"{year:04d}-{month:02d}-{day:02d}"
    raise InvalidValue(f"{_shown(value)} is not an ISO 8601 date (YYYY-MM-DD)")


def _option(value: Any, options: Mapping[str, str]) -> str:
    """The option key: the value itself, else the one option whose key or label equals it ignoring case."""
    text = str(value).strip()
    if text in options:
        return text
    folded = text.casefold()
    found = {key for key, label in options.items() if folded in (key.casefold(), str(label).casefold())}
    if len(found) == 1:
        return found.pop()
    raise InvalidValue(f"{_shown(value)} is not one of the options ({', '.join(options)})")


def _shown(value: Any) -> str:
    return repr(str(value)[:80])


def stored(kind: str, value: Any) -> Any:
    """A value of either side in its stored form, never raising: what decides "no change".

    Zammad's answer is already stored (true, 12, "2024-03-01", "key"); pandas may have made 12.0
    of 12 or NaN of null on the way. A value that does not convert stays as it is, so it never
    equals a converted one and the field is written.
    """
    if kind == "select":  # a select key is itself: the options only matter for Entra values
        return None if _missing(value) else str(value)
    try:
        return convert(kind, value)
    except InvalidValue:
        return value


def comparable(kind: str, values: Iterable[Any]) -> np.ndarray:
    """``stored`` of each value as text ('' for none), for comparing whole columns at once."""
    out = [stored(kind, v) for v in values]
    return np.array(["" if v is None else str(v) for v in out], dtype=object)


def same(kind: str, current: Any, desired: Any) -> bool:
    """Whether Zammad's ``current`` value already is ``desired``, both read in the stored form."""
    before, after = stored(kind, current), stored(kind, desired)
    return ("" if before is None else str(before)) == ("" if after is None else str(after))


# --- the object manager ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """A mapped field as entrasync needs it in Zammad: its type and, for a select, its options."""

    name: str
    kind: str = "text"
    options: tuple[tuple[str, str], ...] = ()


def display_name(name: str) -> str:
    """The label Zammad shows for a field created by entrasync: ``job_title`` → "Job title"."""
    return name.replace("_", " ").capitalize()


def attribute_spec(field: FieldSpec) -> dict[str, Any]:
    """The object-manager attribute ``zammad-setup`` creates for ``field``.

    data_option holds what Zammad's DataOptionValidator asks of each type: an input its type and
    maxlength, an integer its min and max, a boolean and a select their options and a default.
    No default value for boolean, integer and date: Zammad makes ``default`` the column's SQL
    default, which would fill every existing user with it.
    """
    option: dict[str, Any]
    if field.kind == "boolean":
        option = {"options": {"true": "yes", "false": "no"}, "default": None}
    elif field.kind == "integer":
        option = {"min": INTEGER_MIN, "max": INTEGER_MAX, "default": None}
    elif field.kind == "date":
        option = {"future": True, "past": True, "default": None}
    elif field.kind == "select":
        option = {"options": dict(field.options), "default": "", "maxlength": SELECT_MAXLENGTH, "nulloption": True}
    else:
        option = {"type": "text", "maxlength": TEXT_MAXLENGTH, "default": ""}
    data_type = DATA_TYPES[field.kind][0]
    return {
        "name": field.name,
        "display": display_name(field.name),
        "data_type": data_type,
        "data_option": {**option, "null": True},
    }


def _kind_of(data_type: str) -> str | None:
    return next((kind for kind, types in DATA_TYPES.items() if data_type in types), None)


def field_problems(fields: Iterable[FieldSpec], attributes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What keeps Zammad from storing the mapped fields: messages that name each field and the fix.

    ``attributes``: Zammad's User attributes by name (GET /object_manager_attributes). A field is
    a problem when Zammad lacks it, has not migrated it yet (values would be dropped, §2.3), holds
    it as another data type (values would be cast, or refused), or, for a select, lacks options
    the mapping uses (refused with 422). Missing and unmigrated fields share one message each:
    one command fixes them all.
    """
    missing, waiting, problems = [], [], []
    for field in fields:
        attribute = attributes.get(field.name)
        if attribute is None:
            missing.append(f"{field.name} ({field.kind})")
        elif attribute.get("to_create") or attribute.get("to_migrate"):
            waiting.append(field.name)
        elif (data_type := str(attribute.get("data_type"))) not in DATA_TYPES[field.kind]:
            problems.append(_type_problem(field, data_type))
        elif field.kind == "select":
            problems.extend(_option_problem(field, attribute))
    if waiting:
        problems.insert(
            0,
            f"Zammad's user field(s) {', '.join(waiting)} wait for the object-manager migrations: run "
            f"'{SETUP_COMMAND}' (it runs them), then restart Zammad",
        )
    if missing:
        problems.insert(
            0,
            f"Zammad lacks the mapped user field(s) {', '.join(missing)}: run '{SETUP_COMMAND}' to create "
            "them (needs a token with admin.object)",
        )
    return problems


def _type_problem(field: FieldSpec, data_type: str) -> str:
    kind = _kind_of(data_type)
    said = f"Zammad's user field {field.name!r} is of data type {data_type!r}, but the mapping fills it as {field.kind}"
    if kind is None:
        return f"{said}, which entrasync cannot fill: map the value to another field name and run '{SETUP_COMMAND}'"
    options = " with Zammad's options" if kind == "select" else ""
    return (
        f"{said}: set the mapping's type to {kind!r}{options}, or delete the field in Zammad "
        f"(Admin → Objects → User) and run '{SETUP_COMMAND}' to create it as {field.kind}"
    )


def _option_problem(field: FieldSpec, attribute: Mapping[str, Any]) -> list[str]:
    options = (attribute.get("data_option") or {}).get("options") or {}
    keys = set(options) if isinstance(options, dict) else {str(o.get("value")) for o in options}
    lacking = [key for key, _ in field.options if key not in keys]
    if not lacking:
        return []
    return [
        f"Zammad's select field {field.name!r} lacks the option(s) {', '.join(lacking)} that the mapping "
        "uses: add them in Zammad (Admin → Objects → User) or remove them from the mapping's options"
    ]


def setup_states(
    identity: Iterable[str],
    fields: Iterable[FieldSpec],
    attributes: Mapping[str, Mapping[str, Any]],
    created: Iterable[str],
) -> list[tuple[str, str, list[str]]]:
    """Per attribute ``zammad-setup`` looks after: (name, what it found, the problems naming the fix).

    ``attributes``: Zammad's User attributes after the setup ran; ``created``: what it created.
    Found is ``created``, ``present``, ``present as <data type>, not <type>`` (setup never changes
    an existing field: that would recast every user's value) or ``present, not usable yet`` (a
    select without the options, a migration still waiting). One answer per attribute, so "already
    present" is never followed by an error about the same field.
    """
    made = set(created)
    states = [(name, "created" if name in made else "present", []) for name in identity]
    for field in fields:
        problems = field_problems([field], attributes)
        data_type = str((attributes.get(field.name) or {}).get("data_type"))
        if field.name in made and not problems:
            found = "created"
        elif not problems:
            found = "present"
        elif field.name not in attributes:
            found = "missing"
        elif data_type not in DATA_TYPES[field.kind]:
            found = f"present as {data_type}, not {field.kind}"
        else:
            found = "present, not usable yet"
        states.append((field.name, found, problems))
    return states


def absent_fields(fields: Iterable[FieldSpec], user_keys: frozenset[str]) -> list[str]:
    """Without admin.object: the mapped fields a Zammad user record lacks (a migrated attribute is
    a key of every user, §4), as ``field_problems`` words them. Types cannot be seen this way."""
    return field_problems([f for f in fields if f.name not in user_keys], {})
