"""Generates docs/configuration.md from the config model, so the reference cannot drift from the code."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from entrasync_pipeline.settings import FieldRule, Settings

HEADER = """# Configuration reference

Generated from `entrasync_pipeline/settings.py` by `entrasync config-reference`; a test fails when
this file is stale. One YAML file (`--config` or `$ENTRASYNC_CONFIG`). Secrets never go in the file:
each profile names the environment variables that hold them.

| key | type | default | description |
|---|---|---|---|
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (list, dict, typing.Union) or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = ", ".join(_type_name(a) for a in args)
        name = {list: "list", dict: "map"}.get(origin, "")
        optional = type(None) in typing.get_args(annotation)
        text = f"{name}[{inner}]" if name else inner
        return f"{text} (optional)" if optional else text
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, dict) and value and all(isinstance(v, FieldRule) for v in value.values()):
        return ", ".join(f"{k} ← {'/'.join(v.source) or v.constant}" for k, v in value.items())
    return f"`{json.dumps(value)}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        args = typing.get_args(annotation)
        if (
            typing.get_origin(annotation) is dict
            and args
            and isinstance(args[1], type)
            and issubclass(args[1], BaseModel)
        ):
            child = "<profile>" if name == "profiles" else "<field>"
            rows.append(f"| `{path}` | map | {_default(field)} | {field.description or ''} |")
            rows += _rows(args[1], f"{path}.{child}.")
            continue
        if (
            typing.get_origin(annotation) is list
            and args
            and isinstance(args[0], type)
            and issubclass(args[0], BaseModel)
        ):
            rows.append(f"| `{path}` | list | {_default(field)} | {field.description or ''} |")
            rows += _rows(args[0], f"{path}[].")
            continue
        if nested is not None:
            rows += _rows(nested, f"{path}.")
            continue
        optional = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if optional:  # an optional section (e.g. organization): the section itself, then its keys
            rows.append(f"| `{path}` | section (optional) | {_default(field)} | {field.description or ''} |")
            rows += _rows(optional[0], f"{path}.")
            continue
        rows.append(f"| `{path}` | {_type_name(annotation)} | {_default(field)} | {field.description or ''} |")
    return rows


TYPED_FIELDS_EXAMPLE = """
## Worked example: typed custom fields

Each key under `mapping` is a Zammad user field. Zammad's own text fields (email, names, phones,
department) exist already; every other field is created by `entrasync zammad-setup`, with the
field's `type` (Zammad data type `input`, `boolean`, `integer`, `date` or `select`), and the
object-manager migrations are run (restart Zammad afterwards, as its documentation asks).

```yaml
profiles:
  helpdesk:
    # entra, groups, zammad: as above
    mapping:
      email: {from: [mail, otherMails, userPrincipalName], transforms: [first, strip, lower]}
      firstname: {from: [givenName]}
      lastname: {from: [surname]}
      department: {from: [department]}
      job_title: {from: [jobTitle]}                     # text (the default): an input of 255
      employee_number: {from: [employeeId], type: integer}
      hired_on: {from: [employeeHireDate], type: date}  # "2021-03-01T00:00:00Z" → 2021-03-01
      on_premises: {from: [onPremisesSyncEnabled], type: boolean}
      staff_kind:
        from: [employeeType]
        type: select
        options: {employee: Employee, contractor: Contractor}  # key: label
        default: employee
```

- **What is sent and compared** is the value as Zammad stores it: `true`/`false`, a number,
  `"YYYY-MM-DD"`, an option key. Zammad answers with the same, so a second run writes nothing.
- **Converting**: a boolean takes true/false, yes/no, 1/0, on/off (any case; empty is false); an
  integer takes whole numbers (also `12.0`) within ±2147483647; a date takes ISO 8601 dates and
  date-times (the date as written); a select takes an option key, or a key or label in any case
  (`Contractor` → `contractor`). Zammad would store other values silently as something else
  ("no" as true, "E1000" as 0, "31.02.2024" as null), so entrasync does not send them: the field
  gets its `default` (or none), and `universal_users` reports each one (`invalid_values`).
- **Before any write**, the blocking check `sync_plan_fields` reads Zammad's object manager: a
  mapped field Zammad lacks, has not migrated, holds as another data type, or (a select) without
  an option of the mapping holds the whole plan and names the field and the fix, usually
  `entrasync zammad-setup`; `entrasync plan` and `entrasync sync` exit 1. A token without
  `admin.object` can only see whether the fields exist, not their types; the check says so.
"""


GROUP_ACCESS_EXAMPLE = """
## Worked example: agent group access

A group may give its members Zammad roles (`roles`) and access to Zammad groups (`zammad_groups`:
Zammad group name → access list, of `full`, `read`, `create`, `change`, `overview`). Zammad keeps
group access only for agents, so the group that grants access usually maps to the `Agent` role too.

```yaml
profiles:
  helpdesk:
    # entra, zammad: as above
    groups:
      - id: 22222222-2222-2222-2222-222222222222
        name: IT Support
        roles: [Agent]
        zammad_groups:
          Service Desk: [full]
          Users: [read]
      - id: 33333333-3333-3333-3333-333333333333
        name: IT Support Tier 2
        roles: [Agent]
        zammad_groups:
          2nd Level: [full]
          Users: [read, change]
```

- A member of both groups gets the **union**: Service Desk `full`, 2nd Level `full`, Users
  `change` + `read`. Zammad stores it as the user's `group_ids`, e.g.
  `{"1": ["change", "read"], "2": ["full"], "3": ["full"]}`, and entrasync compares it in that
  form, so a second run writes nothing.
- **Only the Zammad groups named here are managed.** Access someone granted by hand to another
  Zammad group (say "Sales") is kept. Access to a managed group is exactly what the config gives:
  a member who leaves IT Support loses Service Desk (and keeps what Tier 2 gives); a hand-added
  access to a managed group is taken back.
- **Only agents.** Zammad shows no group access for a user without a role that has
  `ticket.agent` (and none for an inactive user), whatever it stores. A member who is not an agent
  gets none, and the decision says why ("group access not set: …"). A deactivated leaver keeps
  what they had; Zammad ignores it while they are inactive.
- **Before any write**, the blocking check `sync_plan_groups` reads Zammad's groups: a group named
  here that does not exist or is inactive holds the whole plan, naming it (`entrasync plan` and
  `entrasync sync` exit 1). Listing groups needs a token whose permissions include `ticket.agent`
  or `admin.group` besides `admin.user`; without it the check says so.
- `sync_plan` and `zammad_sync` count the decisions that change a user's group access
  (`group_access_changes` in their metadata).
"""

ORGANIZATION_EXAMPLE = """
## Worked example: organizations

`organization` puts each member into a Zammad organization, here their Entra `companyName`:

```yaml
profiles:
  helpdesk:
    # entra, groups, zammad, mapping: as above
    organization:
      from: [companyName]      # Graph attributes tried in order; or constant: "Contoso GmbH"
      create_missing: true     # the default; false: a member whose organization is missing gets none
```

With the members' `companyName` "Contoso GmbH" (40 of them) and "Fabrikam Ltd" (2), and a Zammad
that already has the organization "CONTOSO GMBH":

- **Found ignoring case.** Zammad keeps organization names unique ignoring case, so "Contoso GmbH"
  is "CONTOSO GMBH": the 40 get its id (`organization_id`). entrasync never renames an organization.
- **Created when missing.** "Fabrikam Ltd" is created once (`POST /organizations`), before the
  members' writes; the run reports `organizations_created: 1` (CLI summary, `zammad_sync` metadata,
  notifications) and the audit has a row with action `organization`. `entrasync plan` shows
  `organizations_created` as what it would create, `sync_plan` as `organizations_to_create`.
- **`create_missing: false`**: the two get no organization, the plan's reason for each says
  `organization 'Fabrikam Ltd' does not exist in Zammad`, and `sync_plan` counts them in
  `organizations_missing`. Create the organization in Zammad and the next run assigns it.
- **An empty `companyName`** removes the organization only when entrasync set it (the audit's last
  write to that user is their current organization); an organization a person gave the user is kept.
- **Never deleted.** An organization nobody belongs to any more stays in Zammad.
- A second run writes nothing. The sync token needs `ticket.agent` or `admin.organization` to see
  every organization and create missing ones (with `admin.user` alone, Zammad lists only the token
  user's own organization).
"""

CONTACTS_EXAMPLE = """
## Worked example: contacts

Contoso's "IT Support" group holds its 40 employees and two organizational contacts: the printer
supplier's service desk and an external SAP consultant. The helpdesk should know both as customers.

```yaml
profiles:
  helpdesk:
    # entra, groups, zammad: as above
    contacts: members          # none (default) | members | all (every contact of the tenant)
    mapping:
      email: {from: [mail, otherMails, userPrincipalName], transforms: [first, strip, lower]}
      firstname: {from: [givenName]}
      lastname: {from: [surname]}
      phone: {from: [businessPhones], transforms: [first, strip]}
      mobile: {from: [mobilePhone]}
      department: {from: [department]}
    organization:
      from: [companyName]      # the supplier's company becomes its Zammad organization
```

- **Read with the members.** The group's member list already names the contacts
  (`@odata.type: #microsoft.graph.orgContact`); entrasync selects their `phones` and `addresses`
  too. With `contacts: all` it also reads `/contacts` (every page), so a contact in no group is
  synced as well (its source group shows as "the tenant's contacts (contacts: all)"). Give
  `all` to one profile only: a second profile with `all` meets every contact as another profile's
  and reports a conflict for each.
- **One mapping.** A contact's `phones` of type `business` fill `businessPhones`, `mobile` fills
  `mobilePhone`, `businessFax` fills `faxNumber`; its address fills `streetAddress`, `city`,
  `postalCode`, `state`, `country` and `officeLocation`. `mail`, `givenName`, `surname`,
  `displayName`, `companyName`, `department` and `jobTitle` are read as they are. A property only
  users have (`userPrincipalName`, `accountEnabled`, `employeeId`, ...) is empty for a contact, also
  in scope rules (`scope.include` on `userType: Member` leaves contacts out).
- **A customer.** The Zammad user has `entra_object_type: contact` and the Customer role when the
  profile manages roles (whatever role its group maps to); it never gets agent group access.
- **The users' lifecycle.** Removed from the group (or deleted in Exchange/Entra): deactivated,
  never deleted; added back: reactivated. Contacts count toward `safety.max_deactivations` and the
  share limit like users. A contact without `mail` is skipped like a user without email.
- **A user's address stays the user's.** A contact whose mail an enabled Entra user of the profile
  also has is a conflict (`an Entra user has this email: a contact never takes a user's address`);
  the user is synced as if the contact did not exist. A contact adopts (or relinks) an existing
  Zammad user by email only when that user is a customer: an agent or admin account with the same
  address is a conflict naming it, never demoted.
- **The change feed** (sensor `entrasync_membership_delta`) follows contacts as well: a contact
  added to or removed from a watched group, deleted, or changed in a property `contacts/delta`
  reports (names, mail, company, department, job title) starts a targeted run. Graph's
  `contacts/delta` does not report `phones` or `addresses`: a change of only a contact's phone
  numbers or address reaches Zammad with the next full run (the daily schedule).
- **Permission.** Graph returns contacts' properties only with **OrgContact.Read.All** (or
  Directory.Read.All). Without it every contact arrives empty and is skipped with the reason
  `Graph returned no properties for this contact (is OrgContact.Read.All granted?)`; `contacts:
  all` fails at once with Graph's 403.
- Switching `contacts` back to `none` makes the contacts leavers: the next run deactivates them
  (within the safety limits), with the reason `a contact, and this profile no longer syncs contacts
  (contacts: none)`.
- `entrasync sync --user` takes a contact's mail or object id (also of a deleted contact this
  profile synced, for an offboarding on demand).
- A second run writes nothing; `entra_group_members` shows `contacts_read`.
"""


def render() -> str:
    return (
        HEADER
        + "\n".join(_rows(Settings, ""))
        + "\n"
        + TYPED_FIELDS_EXAMPLE
        + GROUP_ACCESS_EXAMPLE
        + ORGANIZATION_EXAMPLE
        + CONTACTS_EXAMPLE
    )
