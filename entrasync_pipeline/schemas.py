"""Pandera schemas of the four tables (DESIGN.md §1); the single source of their columns.

The raw snapshots get Dagster types (a bad frame fails the step and stores nothing); the
normalized users and the plan are validated again by blocking asset checks (checks.py).
Every check here looks at a whole column at once: validating 100,000 rows must stay a small
part of the step that produced them, so no check calls Python once per row unless the column
fails, and then only to name the failing rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine

from entrasync_pipeline.plan import Action


@pandas_engine.Engine.register_dtype
@dtypes.immutable
class Text(pandas_engine.NpString):
    """``str`` (text or missing), checked for the whole column at once.

    pandera checks a ``str`` column with one Python call per value (``isinstance(x, str)``
    mapped over it); ``infer_dtype`` answers for the column in C. A column it does not clear
    goes through pandera's own check, which names the failing values.
    """

    def check(self, pandera_dtype: dtypes.DataType, data_container: Any = None) -> Any:
        if (
            data_container is not None
            and super().check(pandera_dtype) is True
            and pd.api.types.infer_dtype(data_container, skipna=True) in ("string", "empty")
        ):
            return True
        return super().check(pandera_dtype, data_container)


def _length(*, min_value: int = 0, max_value: int | None = None) -> pa.Check:
    """``pa.Check.str_length``, answered for the whole column when every text fits.

    Only a column with a text too short or too long is measured per value, so that pandera can
    name the failing rows (missing values are ignored, as pandera's checks do).
    """

    def within(values: pd.Series) -> Any:
        texts = values.tolist()
        try:  # empty texts and missing values are falsy: only a minimum above 0 needs them all truthy
            fits = (min_value <= 0 or all(texts)) and (
                max_value is None or max(map(len, filter(None, texts)), default=0) <= max_value
            )
            fits = fits and (min_value <= 1 or min(map(len, texts)) >= min_value)
        except TypeError:  # not text (the dtype check reports it), or NaN among it: measure each
            fits = False
        if fits:
            return True
        measured = values.str.len()
        return (measured >= min_value) & (measured <= max_value if max_value is not None else True)

    bounds = f"{min_value}..{max_value if max_value is not None else ''}"
    return pa.Check(within, name="str_length", error=f"str_length({bounds})")


def _unique() -> pa.Check:
    """``unique=True``, answered by a set when nothing repeats (hashing once, not sorting)."""

    def once(values: pd.Series) -> Any:
        return len(set(values.tolist())) == len(values) or ~values.duplicated(keep=False)

    return pa.Check(once, name="unique", error="values must be unique")


ENTRA_MEMBERS = pa.DataFrameSchema(
    {
        "group_id": pa.Column(Text, nullable=False, description="Object id of the configured group"),
        "group_name": pa.Column(Text, nullable=True, description="Label of the group from the config"),
        "id": pa.Column(Text, nullable=False, description="Object id of the member"),
        "@odata.type": pa.Column(
            str,
            pa.Check.str_startswith("#microsoft.graph."),
            nullable=False,
            description="Member type; users are synced, and orgContacts when the profile syncs contacts",
        ),
    },
    unique=["group_id", "id"],
    strict=False,
    name="EntraGroupMembers",
    description="One row per (group, member) with the selected Graph properties",
)

UNIVERSAL_USERS = pa.DataFrameSchema(
    {
        "entra_key": pa.Column(Text, [_length(min_value=1), _unique()], description="Entra object id"),
        "entra_object_type": pa.Column(Text, pa.Check.isin(["user", "contact"])),
        "email": pa.Column(Text, nullable=False, description="Lower-cased email; '' when skipped"),
        "firstname": pa.Column(Text, _length(max_value=100)),
        "lastname": pa.Column(Text, _length(max_value=100)),
        "phone": pa.Column(Text, _length(max_value=100), nullable=True),
        "mobile": pa.Column(Text, _length(max_value=100), nullable=True),
        "department": pa.Column(Text, _length(max_value=200), nullable=True),
        "active": pa.Column(bool, description="accountEnabled is not false"),
        "roles": pa.Column(object, description="Zammad role names from the group mapping"),
        "source_groups": pa.Column(object, description="Configured groups the user came through"),
        "skip_reason": pa.Column(Text, nullable=True, description="Why the user is not synced"),
        "scope_reason": pa.Column(
            Text, nullable=True, required=False, description="The scope rule that leaves the user out"
        ),
        "phone_problem": pa.Column(
            Text, nullable=True, required=False, description="Phone numbers kept as typed, and why"
        ),
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
        "login": pa.Column(Text, nullable=False),
        "email": pa.Column(Text, nullable=True),
        "active": pa.Column(bool),
        "role_ids": pa.Column(object),
        "entra_key": pa.Column(Text, nullable=True),
    },
    strict=False,
    name="ZammadUsers",
    description="Every Zammad user (system and inactive users included)",
)

SYNC_PLAN = pa.DataFrameSchema(
    {
        "action": pa.Column(Text, pa.Check.isin([a.value for a in Action])),
        "entra_key": pa.Column(Text, nullable=True),
        "zammad_id": pa.Column("Int64", nullable=True),
        "email": pa.Column(Text, nullable=True),
        "upn": pa.Column(Text, nullable=True),
        "changes": pa.Column(object),
        "payload": pa.Column(object),
        "reason": pa.Column(Text, nullable=True),
    },
    checks=[
        pa.Check(
            lambda df: df.loc[df["action"] == "create", "zammad_id"].isna().all(), name="creates_have_no_zammad_id"
        ),
        pa.Check(
            lambda df: (
                df.loc[df["action"].isin(["update", "reactivate", "relink", "deactivate"]), "zammad_id"].notna().all()
            ),
            name="writes_name_their_zammad_user",
        ),
        pa.Check(
            lambda df: (
                not df.loc[df["action"].isin(["update", "reactivate", "relink", "deactivate"]), "zammad_id"]
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
    description="One row per decision: create, update, reactivate, relink, deactivate, grace, noop, skip, "
    "conflict, opted_out",
)
