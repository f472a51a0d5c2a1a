"""Pandera schemas of the four tables (DESIGN.md §1); the single source of their columns.

The raw snapshots get Dagster types (a bad frame fails the step and stores nothing); the
normalized users and the plan are validated again by blocking asset checks (checks.py).
"""

from __future__ import annotations

import pandera.pandas as pa

from entrasync_pipeline.plan import Action

ENTRA_MEMBERS = pa.DataFrameSchema(
    {
        "group_id": pa.Column(str, nullable=False, description="Object id of the configured group"),
        "group_name": pa.Column(str, nullable=True, description="Label of the group from the config"),
        "id": pa.Column(str, nullable=False, description="Object id of the member"),
        "@odata.type": pa.Column(
            str,
            pa.Check.str_startswith("#microsoft.graph."),
            nullable=False,
            description="Member type; only #microsoft.graph.user is synced",
        ),
    },
    unique=["group_id", "id"],
    strict=False,
    name="EntraGroupMembers",
    description="One row per (group, member) with the selected Graph properties",
)

UNIVERSAL_USERS = pa.DataFrameSchema(
    {
        "entra_key": pa.Column(str, pa.Check.str_length(min_value=1), unique=True, description="Entra object id"),
        "entra_object_type": pa.Column(str, pa.Check.isin(["user"])),
        "email": pa.Column(str, nullable=False, description="Lower-cased email; '' when skipped"),
        "firstname": pa.Column(str, pa.Check.str_length(max_value=100)),
        "lastname": pa.Column(str, pa.Check.str_length(max_value=100)),
        "phone": pa.Column(str, pa.Check.str_length(max_value=100), nullable=True),
        "mobile": pa.Column(str, pa.Check.str_length(max_value=100), nullable=True),
        "department": pa.Column(str, pa.Check.str_length(max_value=200), nullable=True),
        "active": pa.Column(bool, description="accountEnabled is not false"),
        "roles": pa.Column(object, description="Zammad role names from the group mapping"),
        "source_groups": pa.Column(object, description="Configured groups the user came through"),
        "skip_reason": pa.Column(str, nullable=True, description="Why the user is not synced"),
    },
    checks=[
        pa.Check(
            lambda df: (
                df["skip_reason"].notna() | (df["email"] != "") | (df["firstname"] != "") | (df["lastname"] != "")
            ).all(),
            name="synced_users_have_an_identifier",
        )
    ],
    strict=False,
    name="UniversalUsers",
    description="One row per Entra user in scope, in the form Zammad stores it",
)

ZAMMAD_USERS = pa.DataFrameSchema(
    {
        "id": pa.Column(int, pa.Check.ge(1), unique=True),
        "login": pa.Column(str, nullable=False),
        "email": pa.Column(str, nullable=True),
        "active": pa.Column(bool),
        "role_ids": pa.Column(object),
        "entra_key": pa.Column(str, nullable=True),
    },
    strict=False,
    name="ZammadUsers",
    description="Every Zammad user (system and inactive users included)",
)

SYNC_PLAN = pa.DataFrameSchema(
    {
        "action": pa.Column(str, pa.Check.isin([a.value for a in Action])),
        "entra_key": pa.Column(str, nullable=True),
        "zammad_id": pa.Column("Int64", nullable=True),
        "email": pa.Column(str, nullable=True),
        "upn": pa.Column(str, nullable=True),
        "changes": pa.Column(object),
        "payload": pa.Column(object),
        "reason": pa.Column(str, nullable=True),
    },
    checks=[
        pa.Check(
            lambda df: df.loc[df["action"] == "create", "zammad_id"].isna().all(), name="creates_have_no_zammad_id"
        ),
        pa.Check(
            lambda df: df.loc[df["action"].isin(["update", "reactivate", "deactivate"]), "zammad_id"].notna().all(),
            name="writes_name_their_zammad_user",
        ),
        pa.Check(
            lambda df: (
                not df.loc[df["action"].isin(["update", "reactivate", "deactivate"]), "zammad_id"]
                .dropna()
                .duplicated()
                .any()
            ),
            name="one_write_per_zammad_user",
        ),
        pa.Check(
            lambda df: not df.loc[df["action"] == "create", "entra_key"].duplicated().any(),
            name="one_create_per_entra_user",
        ),
    ],
    strict=True,
    name="SyncPlan",
    description="One row per decision: create, update, reactivate, deactivate, noop, skip, conflict",
)
