"""Typed custom fields (fields.py): a value converted to the form Zammad stores and compared in it,
so a second run writes nothing; Zammad's object manager judged against the mapping, so a field
Zammad lacks or holds as another type blocks the plan before any write.

Table tests for each type's conversion and comparison, the mapping's validation and the object
manager's verdict; a property that planning again on what Zammad stored (cast the way the
emulator casts, as Zammad's Rails model does) yields only noop; end to end against the sandbox,
through the job and the CLI: ``zammad-setup`` creates each type, values are written once, a
missing or wrong-typed field blocks the plan with its name and the fix, and nothing is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrasync_pipeline import fields
from entrasync_pipeline.fields import FieldSpec, InvalidValue, attribute_spec, convert, field_problems, same
from entrasync_pipeline.normalize import (
    INVALID_VALUES,
    Rule,
    map_field,
    normalize_members,
    normalize_user,
    typed_values,
)
from entrasync_pipeline.plan import Action, compute_plan
from entrasync_pipeline.sandbox.zammad_store import Attribute, ZammadStore
from entrasync_pipeline.settings import ConfigError, parse_settings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import (
    graph_user,
    members_frame,
    normalize_options,
    plan_options,
    zammad_frame,
    zammad_user,
)
from entrasync_pipeline_tests.tenant import Admin, Runner, it_support_config, setup_attributes
from entrasync_pipeline_tests.tenant import check_evaluation as _check
from entrasync_pipeline_tests.tenant import user_writes as _user_writes
from entrasync_pipeline_tests.test_cli import entrasync

OPTIONS = {"sales": "Sales", "it": "IT Support"}


# --- converting an Entra value ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, value, expected",
    [
        ("boolean", True, True),
        ("boolean", "True", True),
        ("boolean", " yes ", True),
        ("boolean", "0", False),
        ("boolean", "Off", False),
        ("boolean", None, False),
        ("boolean", float("nan"), False),
        ("boolean", np.bool_(True), True),
        ("integer", "4711", 4711),
        ("integer", " -3 ", -3),
        ("integer", 12.0, 12),
        ("integer", "12.0", 12),
        ("integer", np.int64(7), 7),
        ("integer", float("nan"), None),
        ("integer", "", None),
        ("date", "2024-03-01", "2024-03-01"),
        ("date", "2024-01-15T08:00:00Z", "2024-01-15"),
        ("date", "2024-03-01T23:30:00-05:00", "2024-03-01"),
        ("date", "2024-02-29", "2024-02-29"),
        ("date", None, None),
        ("select", "sales", "sales"),
        ("select", "SALES", "sales"),
        ("select", "it support", "it"),
        ("select", None, None),
        ("text", "as it is", "as it is"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_value_converts_to_what_zammad_stores(kind: str, value: Any, expected: Any) -> None:
    converted = convert(kind, value, OPTIONS)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    "kind, value, reason",
    [
        ("boolean", "maybe", "is not a boolean"),
        ("integer", "E1000", "is not a whole number"),
        ("integer", "12abc", "is not a whole number"),
        ("integer", "12.5", "is not a whole number"),
        ("integer", "inf", "is not a whole number"),
        ("integer", True, "is not a whole number"),
        ("integer", "2147483648", "outside Zammad's integer range"),
        ("date", "2024-02-30", "is not an ISO 8601 date"),
        ("date", "01.03.2024", "is not an ISO 8601 date"),
        ("date", "yesterday", "is not an ISO 8601 date"),
        ("select", "Marketing", "is not one of the options (sales, it)"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_value_zammad_would_cast_into_something_else_is_refused_with_the_reason(
    kind: str, value: Any, reason: str
) -> None:
    """Zammad stores "E1000" as 0, "12abc" as 12, "maybe" as true and "2024-02-30" as null, without an error."""
    with pytest.raises(InvalidValue, match=re.escape(reason)):
        convert(kind, value, OPTIONS)


# --- comparing with what Zammad holds ---------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, zammad, desired, equal",
    [
        ("integer", 4711, 4711, True),
        ("integer", 4711.0, 4711, True),  # a pandas column with a gap made it a float
        ("integer", float("nan"), None, True),
        ("integer", None, 0, False),
        ("integer", 4712, 4711, False),
        ("boolean", True, True, True),
        ("boolean", None, False, True),  # a null boolean is unticked
        ("boolean", np.bool_(False), False, True),
        ("boolean", False, True, False),
        ("date", "2024-03-01", "2024-03-01", True),
        ("date", None, "2024-03-01", False),
        ("select", "sales", "sales", True),
        ("select", "", None, True),  # Zammad's default for a select is ""
        ("select", "it", "sales", False),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_values_are_compared_in_the_stored_form(kind: str, zammad: Any, desired: Any, equal: bool) -> None:
    assert same(kind, zammad, desired) is equal
    text = fields.comparable(kind, [zammad, desired])
    assert (text[0] == text[1]) is equal


# --- the mapping -------------------------------------------------------------------------------------
def _config(**mapping: Any) -> dict[str, Any]:
    return {
        "profiles": {
            "p": {
                "entra": {"tenant_id": "00000000-0000-0000-0000-000000000000", "client_id": "c"},
                "groups": [{"id": "22222222-2222-2222-2222-222222222222"}],
                "zammad": {"url": "https://helpdesk.example"},
                "mapping": {"email": {"from": ["mail"]}, **mapping},
            }
        }
    }


def test_a_mapping_field_is_text_unless_typed_and_a_select_may_list_its_keys() -> None:
    settings = parse_settings(
        _config(
            job_title={"from": ["jobTitle"]},
            kind={"from": ["employeeType"], "type": "select", "options": ["employee", "contractor"]},
        )
    )
    mapping = settings.profiles["p"].mapping
    assert mapping["job_title"].type == "text"
    assert mapping["kind"].options == {"employee": "employee", "contractor": "contractor"}


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"from": ["x"], "type": "select"}, "type select needs 'options'"),
        ({"from": ["x"], "type": "text", "options": {"a": "A"}}, "'options' belong to type select"),
        ({"from": ["x"], "type": "select", "options": {"a": "Same", "b": "same"}}, "both match 'same'"),
        ({"from": ["x"], "type": "integer", "default": "n/a"}, "default: 'n/a' is not a whole number"),
        ({"constant": "sometimes", "type": "boolean"}, "constant: 'sometimes' is not a boolean"),
        ({"from": ["x"], "type": "float"}, "Input should be 'text', 'boolean', 'integer', 'date' or 'select'"),
    ],
    ids=["select-without-options", "options-on-text", "ambiguous-options", "bad-default", "bad-constant", "unknown"],
)
def test_a_typed_field_is_checked_when_the_config_loads(rule: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        parse_settings(_config(extra=rule))
    assert "profiles.p.mapping.extra" in str(caught.value)


def test_zammads_own_text_fields_cannot_be_typed() -> None:
    with pytest.raises(ConfigError, match="department: Zammad's own text fields take type text only"):
        parse_settings(_config(department={"from": ["department"], "type": "integer"}))


# --- the object manager ------------------------------------------------------------------------------
def _attribute(name: str, data_type: str, migrated: bool = True, **option: Any) -> dict[str, Any]:
    return {
        "name": name,
        "data_type": data_type,
        "data_option": option,
        "to_create": not migrated,
        "to_migrate": not migrated,
    }


WANTED = [
    FieldSpec("job_title"),
    FieldSpec("employee_number", "integer"),
    FieldSpec("cost_center", "select", (("sales", "Sales"), ("it", "IT"))),
]


@pytest.mark.parametrize(
    "attributes, expected",
    [
        (
            [
                _attribute("job_title", "input"),
                _attribute("employee_number", "integer"),
                _attribute("cost_center", "select", options={"sales": "Sales", "it": "IT", "hr": "HR"}),
            ],
            [],
        ),
        (
            [_attribute("employee_number", "integer"), _attribute("cost_center", "select", options=OPTIONS)],
            ["Zammad lacks the mapped user field(s) job_title (text): run 'entrasync zammad-setup' to create them"],
        ),
        (
            [
                _attribute("job_title", "textarea"),
                _attribute("employee_number", "integer", migrated=False),
                _attribute("cost_center", "select", options=OPTIONS),
            ],
            ["Zammad's user field(s) employee_number wait for the object-manager migrations: run 'entrasync zammad"],
        ),
        (
            [
                _attribute("job_title", "input"),
                _attribute("employee_number", "input"),
                _attribute("cost_center", "select", options=OPTIONS),
            ],
            [
                "Zammad's user field 'employee_number' is of data type 'input', but the mapping fills it as integer: set the "
                "mapping's type to 'text', or delete the field in Zammad (Admin → Objects → User) and run "
                "'entrasync zammad-setup' to create it as integer"
            ],
        ),
        (
            [
                _attribute("job_title", "multiselect"),
                _attribute("employee_number", "integer"),
                _attribute("cost_center", "select", options={"sales": "Sales"}),
            ],
            [
                "Zammad's user field 'job_title' is of data type 'multiselect', but the mapping fills it as text, which "
                "entrasync cannot fill",
                "Zammad's select field 'cost_center' lacks the option(s) it that the mapping uses",
            ],
        ),
    ],
    ids=["all-there", "missing", "not-migrated", "other-type", "unfillable-type-and-missing-option"],
)
def test_the_object_manager_is_judged_field_by_field_naming_the_fix(
    attributes: list[dict], expected: list[str]
) -> None:
    problems = field_problems(WANTED, {a["name"]: a for a in attributes})
    assert len(problems) == len(expected) and all(p.startswith(e) for p, e in zip(problems, expected)), problems


def test_without_object_manager_access_only_the_missing_fields_are_seen() -> None:
    problems = fields.absent_fields(WANTED, frozenset({"id", "email", "employee_number", "cost_center"}))
    assert problems == [
        "Zammad lacks the mapped user field(s) job_title (text): run 'entrasync zammad-setup' to create them "
        "(needs a token with admin.object)"
    ]


@pytest.mark.parametrize(
    "spec, data_type, option",
    [
        (FieldSpec("job_title"), "input", {"type": "text", "maxlength": 255}),
        (FieldSpec("on_site", "boolean"), "boolean", {"options": {"true": "yes", "false": "no"}, "default": None}),
        (FieldSpec("employee_number", "integer"), "integer", {"min": -2147483647, "max": 2147483647}),
        (FieldSpec("hired_on", "date"), "date", {"default": None}),
        (FieldSpec("cost_center", "select", (("it", "IT"),)), "select", {"options": {"it": "IT"}, "default": ""}),
    ],
    ids=["text", "boolean", "integer", "date", "select"],
)
def test_setup_creates_each_type_as_zammads_validator_asks(spec: FieldSpec, data_type: str, option: dict) -> None:
    created = attribute_spec(spec)
    assert created["data_type"] == data_type and created["data_option"]["null"] is True
    assert option.items() <= created["data_option"].items()
    assert created["display"] == spec.name.replace("_", " ").capitalize()


# --- normalize and plan --------------------------------------------------------------------------------
TYPED = {
    "is_member": Rule(("userType",), type="select", options=(("member", "Member"), ("guest", "Guest"))),
    "employee_number": Rule(("employeeId",), type="integer"),
    "created_on": Rule(("createdDateTime",), type="date"),
    "synced": Rule(("onPremisesSyncEnabled",), type="boolean"),
}
TYPES = {name: rule.type for name, rule in TYPED.items()}


def _typed_members(*users: dict[str, Any]) -> pd.DataFrame:
    frame = members_frame(*users)
    for column in ("employeeId", "createdDateTime", "onPremisesSyncEnabled"):
        frame[column] = [u.get(column) for u in users]
    return frame


def _typed_options() -> Any:
    return normalize_options(mapping={**normalize_options().mapping, **TYPED})


def test_normalize_converts_typed_fields_and_reports_values_that_do_not_convert() -> None:
    members = _typed_members(
        graph_user("jane.doe", employeeId="4711", createdDateTime="2024-01-15T08:00:00Z", onPremisesSyncEnabled=True),
        graph_user("john.roe", employeeId="E1000", createdDateTime=None, onPremisesSyncEnabled=None, userType="Guest"),
    )
    users = normalize_members(members, _typed_options())
    assert users[list(TYPED)].to_dict("records") == [
        {"is_member": "member", "employee_number": 4711, "created_on": "2024-01-15", "synced": True},
        {"is_member": "guest", "employee_number": None, "created_on": None, "synced": False},
    ]
    assert users.attrs[INVALID_VALUES] == {
        "employee_number": [
            {"entra_key": graph_user("john.roe")["id"], "value": "E1000", "reason": "'E1000' is not a whole number"}
        ]
    }
    per_user = [normalize_user(r, _typed_options()) for r in members.to_dict("records")]
    assert [{k: u[k] for k in TYPED} for u in per_user] == users[list(TYPED)].to_dict("records")


def test_a_value_that_does_not_convert_takes_the_fields_default() -> None:
    mapping = {**normalize_options().mapping, "employee_number": Rule(("employeeId",), type="integer", default="0")}
    users = normalize_members(_typed_members(graph_user(employeeId="n/a")), normalize_options(mapping=mapping))
    assert users["employee_number"].tolist() == [0]


def test_an_integer_graph_gave_as_a_float_beside_a_gap_is_no_change() -> None:
    """pandas makes [4711, None] a float column (4711.0, NaN): compared as stored, neither flaps."""
    members = _typed_members(graph_user("jane.doe", employeeId=4711), graph_user("john.roe", employeeId=None))
    assert members["employeeId"].dtype == float
    users = normalize_members(members, _typed_options())
    assert users["employee_number"].tolist() == [4711, None]
    zammad = zammad_frame(
        _stored_user(10, "jane.doe", employee_number=4711.0, synced=None),
        _stored_user(11, "john.roe", employee_number=float("nan"), synced=False),
    )
    plan = compute_plan(users, zammad, _typed_plan_options())
    assert plan["action"].tolist() == ["noop", "noop"]


def _typed_plan_options() -> Any:
    return plan_options(fields=(*plan_options().fields, *TYPED), field_types=TYPES)


def _stored_user(zammad_id: int, name: str, **values: Any) -> dict[str, Any]:
    defaults = {"is_member": "member", "employee_number": None, "created_on": None, "synced": False}
    return zammad_user(zammad_id, f"{name}@contoso.example", graph_user(name)["id"], **{**defaults, **values})


def test_a_typed_change_is_written_as_the_type_and_compared_as_stored() -> None:
    jane = graph_user("jane.doe", employeeId="4711", createdDateTime="2024-01-15", onPremisesSyncEnabled="true")
    users = normalize_members(_typed_members(jane), _typed_options())
    zammad = zammad_frame(_stored_user(10, "jane.doe", employee_number=4712, created_on="2024-01-15", synced=None))
    plan = compute_plan(users, zammad, _typed_plan_options())
    row = plan[plan["action"] == Action.UPDATE.value].iloc[0]
    assert row["payload"] == {"employee_number": 4711, "synced": True}
    assert row["changes"] == {"employee_number": [4712, 4711], "synced": [None, True]}


# --- a second run writes nothing: the property ----------------------------------------------------
_entra_values = st.fixed_dictionaries(
    {
        "userType": st.sampled_from(["Member", "guest", "Partner", None]),
        "employeeId": st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["12", "12.0", "E7", " 3 ", "-0"])),
        "createdDateTime": st.sampled_from([None, "2024-01-15", "2024-01-15T23:00:00-05:00", "2024-02-30", "x"]),
        "onPremisesSyncEnabled": st.sampled_from([None, True, False, "yes", "No", "maybe"]),
    }
)
_zammad_values = st.fixed_dictionaries(
    {
        "is_member": st.sampled_from([None, "", "member", "guest"]),
        "employee_number": st.sampled_from([None, float("nan"), 0, 12, 12.0, 3]),
        "created_on": st.sampled_from([None, "2024-01-15", "2023-12-31"]),
        "synced": st.sampled_from([None, True, False]),
    }
)


def _emulated_zammad() -> dict[str, Attribute]:
    """The typed attributes as the sandbox holds them after zammad-setup: its casts are Zammad's."""
    store = ZammadStore()
    return {
        name: store.create_attribute(attribute_spec(FieldSpec(name, rule.type, rule.options)))
        for name, rule in TYPED.items()
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_entra_values, st.one_of(st.none(), _zammad_values)), min_size=1, max_size=6))
def test_planning_again_on_what_zammad_stored_of_typed_fields_yields_only_noop(people: list) -> None:
    """Whatever Entra holds and Zammad held before, the values Zammad stores from the plan's payload
    (cast by the emulator's Rails casts, the ones Zammad applies) are no change the next time."""
    attributes = _emulated_zammad()
    names = [f"p{i}.x" for i in range(len(people))]
    members = _typed_members(*(graph_user(n, **entra) for n, (entra, _) in zip(names, people)))
    users = normalize_members(members, _typed_options())
    zammad = [_stored_user(100 + i, n, **held) for i, (n, (_, held)) in enumerate(zip(names, people)) if held]
    first = compute_plan(users, zammad_frame(*zammad), _typed_plan_options())
    stored = {int(z["id"]): dict(z) for z in zammad}
    for row in first.to_dict("records"):
        cast = {k: ZammadStore._custom_value(attributes[k], v) for k, v in row["payload"].items() if k in attributes}
        if row["action"] == Action.CREATE.value:
            defaults = {name: a.data_option.get("default") for name, a in attributes.items()}
            stored[1000 + len(stored)] = {**zammad_user(1000 + len(stored), "x@y.example"), **row["payload"]}
            stored[max(stored)].update({**defaults, **cast})
        elif row["action"] == Action.UPDATE.value:
            stored[int(row["zammad_id"])].update(cast)
    second = compute_plan(users, zammad_frame(*stored.values()), _typed_plan_options())
    assert set(second["action"]) <= {"noop", "skip", "conflict"}, second.to_dict("records")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entra_values, min_size=1, max_size=8))
def test_the_column_wise_normalizer_converts_typed_fields_like_the_per_user_rules(people: list) -> None:
    """normalize_members (column-wise, the sync's) and normalize_user (the reference) give the same
    stored values and report the same values that do not convert, whatever pandas made of the columns."""
    members = _typed_members(*(graph_user(f"p{i}.x", **entra) for i, entra in enumerate(people)))
    users = normalize_members(members, _typed_options())
    invalid: dict[str, list[dict[str, str]]] = {}
    for record, row in zip(members.to_dict("records"), users.to_dict("records")):
        reference = normalize_user(record, _typed_options())
        assert {k: reference[k] for k in TYPED} == {k: row[k] for k in TYPED}
        for field, rule in TYPED.items():
            typed_values(rule, [map_field(record, rule)], [record["id"]], invalid, field)
    assert users.attrs.get(INVALID_VALUES, {}) == invalid


# --- the sandbox's object manager answers like Zammad for each type -----------------------------------
class _Api:
    def __init__(self, sandbox: Sandbox, http: Any) -> None:
        self.sandbox, self.http = sandbox, http

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.http.request(
            method,
            f"{self.sandbox.info['zammad_url']}/api/v1{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Token token={self.sandbox.info['zammad_token']}"},
        )

    def attribute(self, spec: dict[str, Any]) -> Any:
        return self.call("POST", "/object_manager_attributes", {"object": "User", "active": True, **spec})

    def create_user(self, **body: Any) -> Any:
        return self.call("POST", "/users", body)


@pytest.fixture
def api(sandbox: Sandbox, http: Any) -> _Api:
    return _Api(sandbox, http)


def _typed_zammad(api: _Api) -> None:
    for spec in (
        FieldSpec("on_site", "boolean"),
        FieldSpec("employee_number", "integer"),
        FieldSpec("hired_on", "date"),
        FieldSpec("cost_center", "select", (("it", "IT"),)),
    ):
        assert api.attribute(attribute_spec(spec)).status_code == 201
    assert api.call("POST", "/object_manager_attributes_execute_migrations").status_code == 200


@pytest.mark.parametrize(
    "field, sent, kept",
    [
        ("on_site", True, True),
        ("on_site", "no", True),  # Rails: only 0, "0", "f", "false", "off" (and their upper case) are false
        ("on_site", "False", True),
        ("on_site", "off", False),
        ("on_site", 0, False),
        ("on_site", "", None),
        ("employee_number", 4711, 4711),
        ("employee_number", "4711", 4711),
        ("employee_number", "12abc", 12),  # String#to_i
        ("employee_number", "E1000", 0),
        ("employee_number", 12.9, 12),
        ("employee_number", "", None),
        ("hired_on", "2024-03-01", "2024-03-01"),
        ("hired_on", "2024-03-01T23:30:00-05:00", "2024-03-01"),
        ("hired_on", "2024-02-30", None),
        ("hired_on", "soon", None),
        ("cost_center", "it", "it"),
        ("cost_center", "", ""),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_the_sandbox_stores_a_value_of_the_wrong_type_as_zammad_does(
    api: _Api, field: str, sent: Any, kept: Any
) -> None:
    _typed_zammad(api)
    response = api.create_user(email="typed@example.org", **{field: sent})
    assert response.status_code == 201, response.text
    assert response.json()[field] == kept
    user_id = response.json()["id"]
    assert api.call("GET", f"/users/{user_id}").json()[field] == kept


@pytest.mark.parametrize(
    "field, sent, message",
    [
        ("employee_number", 2147483648, "Employee number is larger than the allowed maximum value of 2147483647"),
        ("employee_number", "-2147483648", "Employee number is smaller than the allowed minimum value of -2147483647"),
        ("cost_center", "sales", "Invalid value 'sales' for field 'cost_center'!"),
    ],
    ids=["above-max", "below-min", "not-an-option"],
)
def test_the_sandbox_refuses_what_zammad_refuses(api: _Api, field: str, sent: Any, message: str) -> None:
    _typed_zammad(api)
    response = api.create_user(email="typed@example.org", **{field: sent})
    assert response.status_code == 422 and response.json()["error_human"] == message


def test_the_sandbox_checks_an_integer_attributes_bounds_and_fills_existing_users_with_the_default(
    api: _Api,
) -> None:
    refused = api.attribute({"name": "floor", "display": "Floor", "data_type": "integer", "data_option": {}})
    assert refused.status_code == 422
    assert (
        refused.json()["error"]
        == "Validation failed: Minimal value must be an integer, Maximal value must be an integer"
    )
    before = api.create_user(email="early@example.org").json()
    spec = {
        "name": "floor",
        "display": "Floor",
        "data_type": "integer",
        "data_option": {"min": 0, "max": 9, "default": 1},
    }
    assert api.attribute(spec).status_code == 201
    api.call("POST", "/object_manager_attributes_execute_migrations")
    assert api.call("GET", f"/users/{before['id']}").json()["floor"] == 1  # the column's SQL default


# --- end to end: the job ----------------------------------------------------------------------------------
MAPPING: dict[str, Any] = {
    "email": {"from": ["mail", "otherMails", "userPrincipalName"], "transforms": ["first", "strip", "lower"]},
    "firstname": {"from": ["givenName"]},
    "lastname": {"from": ["surname"]},
    "department": {"from": ["department"]},
    "job_title": {"from": ["jobTitle"]},
    "member_kind": {"from": ["userType"], "type": "select", "options": {"member": "Member", "guest": "Guest"}},
    "entra_created": {"from": ["createdDateTime"], "type": "date"},
    "employee_number": {"from": ["employeeId"], "type": "integer"},
    "on_premises": {"from": ["onPremisesSyncEnabled"], "type": "boolean"},
}


@pytest.mark.e2e
def test_typed_fields_are_created_by_setup_written_once_and_then_left_alone(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, mapping=MAPPING)
    group = sandbox.info["groups"]["IT Support"]
    admin = Admin(sandbox, http)
    numbered = [m for m in admin.members(group) if sandbox.state("graph")["objects"][m].get("employeeId")][:2]
    admin.patch(numbered[0], employeeId="4711")
    setup_attributes(config, dagster_env)
    held = {a["name"]: a for a in sandbox.state("zammad")["attributes"]}
    assert {n: held[n]["data_type"] for n in list(MAPPING)[4:]} == {
        "job_title": "input",
        "member_kind": "select",
        "entra_created": "date",
        "employee_number": "integer",
        "on_premises": "boolean",
    }
    assert not any(held[n]["to_migrate"] for n in MAPPING)

    runner = Runner(config, ["sandbox"], instance)
    first = runner.run()
    assert first.success and _check(first, "sync_plan_fields").passed
    zammad = {u["entra_key"]: u for u in sandbox.state("zammad")["users"] if u.get("entra_key")}
    assert zammad[numbered[0]]["employee_number"] == 4711
    assert zammad[numbered[1]]["employee_number"] is None  # "E1001" is no number: reported, not cast to 0
    assert zammad[numbered[0]]["entra_created"] == "2024-01-15" and zammad[numbered[0]]["member_kind"] == "member"
    assert zammad[numbered[0]]["job_title"] == "Support Engineer"
    invalid = first.asset_materializations_for_node("universal_users")[0].metadata["invalid_values"].value
    assert invalid >= 1

    writes = _user_writes(sandbox)
    second = runner.run()
    counts = runner.counts(second)
    assert second.success and (counts["created"], counts["updated"], counts["failed"]) == (0, 0, 0)
    assert _user_writes(sandbox) == writes


@pytest.mark.e2e
def test_a_field_zammad_lacks_blocks_the_plan_naming_it_and_nothing_is_written(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    identity_only = it_support_config(sandbox, tmp_path)
    setup_attributes(identity_only, dagster_env)  # the identity attributes, as before job_title was mapped
    config = it_support_config(sandbox, tmp_path, mapping={k: MAPPING[k] for k in list(MAPPING)[:5]})
    result = Runner(config, ["sandbox"], instance).run()
    assert not result.success
    check = _check(result, "sync_plan_fields")
    assert not check.passed
    assert check.description == (
        "Zammad lacks the mapped user field(s) job_title (text): run 'entrasync zammad-setup' to create them "
        "(needs a token with admin.object)"
    )
    assert not result.asset_materializations_for_node("zammad_sync")
    assert _user_writes(sandbox) == 0


@pytest.mark.e2e
def test_a_field_of_another_type_blocks_the_plan_naming_both_types(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    api = _Api(sandbox, http)
    assert api.attribute(attribute_spec(FieldSpec("employee_number"))).status_code == 201  # a text input
    config = it_support_config(sandbox, tmp_path, mapping=MAPPING)
    setup = entrasync("zammad-setup", env={**dagster_env, "ENTRASYNC_CONFIG": str(config)})
    assert setup.returncode == 1 and "job_title, member_kind, entra_created, on_premises and ran" in setup.stdout
    assert "'employee_number' is of data type 'input', but the mapping fills it as integer" in setup.stderr
    # Again, with everything else there: one answer per attribute, never "already present" and then an error.
    again = entrasync("zammad-setup", env={**dagster_env, "ENTRASYNC_CONFIG": str(config)})
    assert again.returncode == 1 and "already present" not in again.stdout
    assert "sandbox: job_title: present" in again.stdout and "sandbox: entra_key: present" in again.stdout
    assert "sandbox: employee_number: present as input, not integer" in again.stdout
    assert "delete the field in Zammad (Admin → Objects → User) and run 'entrasync zammad-setup'" in again.stderr
    assert sandbox.state("zammad")["attributes"][-1]["to_migrate"] is False  # the rest is usable
    result = Runner(config, ["sandbox"], instance).run()
    check = _check(result, "sync_plan_fields")
    assert not result.success and not check.passed
    assert "'employee_number' is of data type 'input', but the mapping fills it as integer" in check.description
    assert _user_writes(sandbox) == 0


@pytest.mark.e2e
def test_a_token_without_admin_object_still_sees_a_missing_field(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The least-privilege sync token (admin.user only) cannot read the object manager: the check
    looks at the keys of Zammad's user records instead, and says that it could not see types."""
    setup_attributes(it_support_config(sandbox, tmp_path), dagster_env)
    config = it_support_config(sandbox, tmp_path, mapping={k: MAPPING[k] for k in list(MAPPING)[:5]})
    monkeypatch.setenv("ZAMMAD_TOKEN", sandbox.zammad_token("user_admin"))
    result = Runner(config, ["sandbox"], instance).run()
    check = _check(result, "sync_plan_fields")
    assert not result.success and not check.passed and "job_title (text)" in check.description
    assert check.metadata["checked"].value == "presence only (the token lacks admin.object)"
    assert _user_writes(sandbox) == 0

    setup_attributes(config, dagster_env)  # an admin runs the setup with an admin.object token
    fixed = Runner(config, ["sandbox"], instance).run()  # the sync still runs with admin.user only
    assert fixed.success and _check(fixed, "sync_plan_fields").passed
    assert _check(fixed, "sync_plan_fields").metadata["checked"].value.startswith("presence only")


# --- end to end: the CLI -----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_cli_exits_1_on_a_missing_field_until_zammad_setup_creates_it(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    env = {**environ, "ENTRASYNC_CONFIG": str(it_support_config(sandbox, tmp_path))}
    assert entrasync("zammad-setup", env=env).returncode == 0
    config = it_support_config(sandbox, tmp_path, mapping={k: MAPPING[k] for k in list(MAPPING)[:5]})
    env["ENTRASYNC_CONFIG"] = str(config)

    for command in ("plan", "sync"):
        blocked = entrasync(command, "--json", env=env)
        assert blocked.returncode == 1, blocked.stderr
        summary = json.loads(blocked.stdout)
        assert summary["status"] == "failed" and summary["blocked"] is False
        assert summary["error"] == (
            "nothing written: Zammad lacks the mapped user field(s) job_title (text): run 'entrasync "
            "zammad-setup' to create them (needs a token with admin.object)"
        )
    assert _user_writes(sandbox) == 0
    table = entrasync("sync", env=env)
    assert table.returncode == 1 and "job_title" in table.stdout and "zammad-setup" in table.stdout

    setup = entrasync("zammad-setup", env=env)
    assert setup.returncode == 0 and "created job_title" in setup.stdout
    synced = entrasync("sync", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["updated"] > 0
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert (again["created"], again["updated"], again["status"]) == (0, 0, "ok")


def test_the_worked_example_in_the_configuration_reference_is_a_valid_mapping() -> None:
    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    block = text.split("## Worked example: typed custom fields", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    example = yaml.safe_load(block)["profiles"]["helpdesk"]["mapping"]
    mapping = parse_settings(_config(**example)).profiles["p"].mapping
    assert {name: rule.type for name, rule in mapping.items() if rule.type != "text"} == {
        "employee_number": "integer",
        "hired_on": "date",
        "on_premises": "boolean",
        "staff_kind": "select",
    }


def test_the_fields_zammad_must_hold_are_the_custom_and_typed_ones_but_not_organization() -> None:
    from entrasync_pipeline.steps import mapped_fields

    data = _config(
        department={"from": ["department"]},
        job_title={"from": ["jobTitle"]},
        kind={"from": ["employeeType"], "type": "select", "options": ["employee"]},
    )
    data["profiles"]["p"]["organization"] = {"from": ["companyName"]}  # an association: no attribute
    config = parse_settings(data).profiles["p"]
    assert mapped_fields(config) == [FieldSpec("job_title"), FieldSpec("kind", "select", (("employee", "employee"),))]
