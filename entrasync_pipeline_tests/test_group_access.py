"""Agent group access (group_access.py, and the plan's use of it): members get the union of the access
their Entra groups grant, as Zammad stores it (``group_ids``: {"<group id>": [verbs]}); only the
Zammad groups named in the config are managed, so access granted by hand elsewhere stays; leaving an
Entra group takes back what it gave; only agents get access (Zammad shows none for a customer, so
planning it would write on every run); a configured group that is missing or inactive is named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from entrasync_pipeline import group_access as access
from entrasync_pipeline.plan import Action, compute_plan, group_access_changes
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import (
    GROUP,
    graph_user,
    plan_options,
    universal,
    write_config,
    zammad_frame,
    zammad_user,
)
from entrasync_pipeline_tests.tenant import Admin, Helpdesk, Runner, setup_attributes
from entrasync_pipeline_tests.tenant import check_evaluation as _check
from entrasync_pipeline_tests.tenant import user_writes as _user_writes
from entrasync_pipeline_tests.test_cli import entrasync

SECOND = "9a0f1b7c-0000-4000-8000-000000000002"
CONFIG = {GROUP: {"Service Desk": ("full",), "Users": ("read",)}, SECOND: {"Users": ("change", "read")}}
IDS = {"Service Desk": 2, "Users": 1}
AGENT_ROLE = 2


@pytest.mark.parametrize(
    "groups, expected",
    [
        ((GROUP,), {"Service Desk": ["full"], "Users": ["read"]}),
        ((SECOND,), {"Users": ["change", "read"]}),
        ((GROUP, SECOND), {"Service Desk": ["full"], "Users": ["change", "read"]}),
        (("no-access-group",), {}),
        ((), {}),
    ],
    ids=["one-group", "other-group", "union", "group-without-access", "no-group"],
)
def test_members_get_the_union_over_their_entra_groups(groups: tuple, expected: dict) -> None:
    assert access.wanted_access(groups, CONFIG) == expected


@pytest.mark.parametrize(
    "current, wanted, expected",
    [
        ({}, {"Users": ["read"]}, {"1": ["read"]}),
        ({"7": ["full"]}, {"Users": ["read"]}, {"1": ["read"], "7": ["full"]}),  # hand-granted: kept
        ({"1": ["full"], "7": ["read"]}, {}, {"7": ["read"]}),  # left the Entra group: managed access goes
        ({"2": ["full"], "1": ["read"]}, {"Users": ["read"]}, {"1": ["read"]}),  # left one of two
        ({1: "read"}, {"Users": ["read"]}, {"1": ["read"]}),  # key types and a single verb as Zammad may send
        (None, {"Service Desk": ["full"]}, {"2": ["full"]}),
        (float("nan"), {}, {}),
    ],
    ids=["grant", "hand-granted-kept", "leaving-removes", "left-one-of-two", "stored-form", "none", "nan"],
)
def test_the_desired_map_keeps_unmanaged_groups_and_replaces_managed_ones(
    current: Any, wanted: dict, expected: dict
) -> None:
    assert access.desired_map(current, wanted, IDS) == expected


def test_maps_compare_as_zammad_stores_them() -> None:
    assert access.same({"1": ["read", "full"]}, {1: ["full", "read"]})
    assert access.same(None, {}) and access.same(float("nan"), {})
    assert not access.same({"1": ["read"]}, {"1": ["full"]})
    assert not access.same({"1": ["read"]}, {"1": ["read"], "2": ["read"]})


def test_a_missing_or_inactive_group_is_named() -> None:
    problems = access.missing_groups(["Service Desk", "Users", "Archive"], {"Users": True, "Archive": False})
    assert len(problems) == 2
    assert "'Service Desk'" in problems[0] and "does not exist" in problems[0] and "Users" in problems[0]
    assert "'Archive'" in problems[1] and "inactive" in problems[1]
    assert access.missing_groups(["Users"], {"Users": True}) == []


# --- the plan ------------------------------------------------------------------------------------------
JANE = graph_user("jane.doe")
AGENT = zammad_user(10, "jane.doe@contoso.example", JANE["id"], role_ids=(AGENT_ROLE,), group_ids={})


def _options(**overrides: Any) -> Any:
    return plan_options(group_access=CONFIG, zammad_group_ids=IDS, agent_role_ids=frozenset({AGENT_ROLE}), **overrides)


def _one(users: pd.DataFrame, zammad: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    plan = compute_plan(users, zammad_frame(*zammad), _options(**overrides))
    assert len(plan) == 1, plan
    return plan.iloc[0].to_dict()


def test_an_agent_gets_the_access_of_their_group_and_a_second_plan_writes_nothing() -> None:
    row = _one(universal(JANE), [AGENT])
    assert row["action"] == Action.UPDATE.value
    assert row["payload"] == {"group_ids": {"1": ["read"], "2": ["full"]}}
    assert row["changes"]["group_ids"] == [{}, {"1": ["read"], "2": ["full"]}]
    applied = {**AGENT, "group_ids": {"2": ["full"], "1": ["read"]}}  # Zammad's order of keys
    again = _one(universal(JANE), [applied])
    assert again["action"] == Action.NOOP.value and again["reason"] is None


def test_hand_granted_access_to_an_unmanaged_group_is_kept() -> None:
    row = _one(universal(JANE), [{**AGENT, "group_ids": {"5": ["full"]}}])
    assert row["payload"] == {"group_ids": {"1": ["read"], "2": ["full"], "5": ["full"]}}


def test_leaving_the_entra_group_removes_the_access_it_gave() -> None:
    users = universal(JANE)
    users.at[0, "source_groups"] = (SECOND,)
    granted = {**AGENT, "group_ids": {"1": ["read"], "2": ["full"], "5": ["full"]}}
    row = _one(users, [granted])
    assert row["payload"] == {"group_ids": {"1": ["change", "read"], "5": ["full"]}}
    users.at[0, "source_groups"] = ("no-access-group",)
    assert _one(users, [granted])["payload"] == {"group_ids": {"5": ["full"]}}


def test_a_customer_gets_no_access_and_the_reason_says_why() -> None:
    customer = {**AGENT, "role_ids": (3,)}
    row = _one(universal(JANE), [customer])
    assert row["action"] == Action.NOOP.value and row["reason"] == access.NOT_AGENT_NOTE
    created = _one(universal(JANE), [])
    assert created["action"] == Action.CREATE.value and "group_ids" not in created["payload"]


def test_mapped_agent_roles_come_with_the_access_on_create() -> None:
    users = universal(JANE, group_roles={GROUP: ("Agent",)})
    row = _one(users, [], role_ids={"Admin": 1, "Agent": 2, "Customer": 3})
    assert row["payload"]["role_ids"] == [2] and row["payload"]["group_ids"] == {"1": ["read"], "2": ["full"]}


def test_the_column_wise_noop_path_leaves_access_to_the_per_user_rules() -> None:
    """A member whose groups grant nothing but who holds managed access is not a noop."""
    users = universal(JANE, graph_user("john.roe"))
    users["source_groups"] = [("no-access-group",), ("no-access-group",)]
    john = zammad_user(11, "john.roe@contoso.example", users.at[1, "entra_key"], role_ids=(2,), group_ids={})
    plan = compute_plan(users, zammad_frame({**AGENT, "group_ids": {"2": ["full"]}}, john), _options())
    assert sorted(plan["action"]) == ["noop", "update"]
    assert group_access_changes(plan) == 1
    assert plan[plan["action"] == "update"].iloc[0]["payload"] == {"group_ids": {}}


def test_without_zammad_groups_nothing_changes() -> None:
    plan = compute_plan(universal(JANE), zammad_frame({**AGENT, "group_ids": {"2": ["full"]}}), plan_options())
    assert list(plan["action"]) == ["noop"] and group_access_changes(plan) == 0


# --- end to end: the job and the CLI against the sandbox ----------------------------------------------------
ACCESS = {"2nd Level": ["full"], "Users": ["read"]}  # the sandbox's Zammad groups 2 and 1


def _config(sandbox: Sandbox, tmp_path: Path, access: dict[str, list[str]], sales: bool = False) -> Path:
    groups = [{"id": sandbox.info["groups"]["IT Support"], "roles": ["Agent"], "zammad_groups": access}]
    if sales:  # a second group that makes its members agents without granting group access
        groups.append({"id": sandbox.info["groups"]["Sales"], "roles": ["Agent"]})
    return write_config(tmp_path / "entrasync.yaml", sandbox.info, {"sandbox": {"groups": groups}})


def _access(sandbox: Sandbox, key: str) -> dict[str, list[str]]:
    user = next(u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == key)
    return access.stored_map(user["group_ids"])


@pytest.mark.e2e
def test_members_get_group_access_once_hand_grants_stay_and_leaving_takes_it_back(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = _config(sandbox, tmp_path, ACCESS, sales=True)
    setup_attributes(config, dagster_env)
    admin, helpdesk = Admin(sandbox, http), Helpdesk(sandbox, http)
    it_support, sales = sandbox.info["groups"]["IT Support"], sandbox.info["groups"]["Sales"]
    members = [m for m in admin.members(it_support) if m in sandbox.state("graph")["objects"]]
    mover = next(m for m in members if sandbox.state("graph")["objects"][m].get("@odata.type", "").endswith("user"))
    admin.add(sales, mover)
    runner = Runner(config, ["sandbox"], instance)

    first = runner.run()
    assert first.success and _check(first, "sync_plan_groups").passed
    granted = first.asset_materializations_for_node("sync_plan")[0].metadata["group_access_changes"].value
    assert granted > 0 and runner.counts(first)["group_access_changes"] == granted
    assert _access(sandbox, mover) == {"1": ["read"], "2": ["full"]}

    writes = _user_writes(sandbox)
    second = runner.run()
    assert second.success and runner.counts(second)["group_access_changes"] == 0
    assert _user_writes(sandbox) == writes  # a second run writes nothing

    helpdesk.edit(mover, group_ids={"1": ["read"], "2": ["full"], "3": ["full"]})  # Service Desk, by hand
    writes = _user_writes(sandbox)
    assert runner.run().success and _user_writes(sandbox) == writes  # hand-granted access is kept

    admin.remove(it_support, mover)  # still an agent through Sales, which grants no group access
    targeted = runner.targeted([mover])
    assert targeted.success and runner.counts(targeted)["group_access_changes"] == 1
    assert _access(sandbox, mover) == {"3": ["full"]}
    writes = _user_writes(sandbox)
    assert runner.run().success and _user_writes(sandbox) == writes  # the full run agrees with the targeted one


@pytest.mark.e2e
def test_a_missing_zammad_group_blocks_the_plan_naming_it_and_nothing_is_written(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = _config(sandbox, tmp_path, {"Tier 3": ["full"], "Users": ["read"]})
    setup_attributes(config, dagster_env)
    writes = _user_writes(sandbox)
    result = Runner(config, ["sandbox"], instance).run()
    check = _check(result, "sync_plan_groups")
    assert not result.success and not check.passed
    assert check.description.startswith("Zammad group 'Tier 3' (groups[].zammad_groups) does not exist")
    assert not result.asset_materializations_for_node("zammad_sync")
    assert _user_writes(sandbox) == writes


@pytest.mark.e2e
def test_a_token_that_may_not_list_groups_blocks_the_plan_naming_the_fix(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zammad answers GET /groups only to ticket.agent or admin.group: the least-privilege sync token
    (admin.user alone) cannot see whether the configured groups exist, so nothing is written."""
    config = _config(sandbox, tmp_path, ACCESS)
    setup_attributes(config, dagster_env)
    monkeypatch.setenv("ZAMMAD_TOKEN", sandbox.zammad_token("user_admin"))
    writes = _user_writes(sandbox)
    result = Runner(config, ["sandbox"], instance).run()
    check = _check(result, "sync_plan_groups")
    assert not result.success and not check.passed
    assert "needs a token with ticket.agent or admin.group" in check.description
    assert _user_writes(sandbox) == writes


@pytest.mark.e2e
def test_the_cli_grants_access_exits_1_on_a_missing_group_and_a_second_sync_writes_nothing(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    missing = _config(sandbox, tmp_path, {"Archive": ["full"]})  # inactive in the sandbox
    env = {**environ, "ENTRASYNC_CONFIG": str(missing)}
    assert entrasync("zammad-setup", env=env).returncode == 0
    writes = _user_writes(sandbox)
    for command in ("plan", "sync"):
        blocked = entrasync(command, "--json", env=env)
        assert blocked.returncode == 1, blocked.stderr
        summary = json.loads(blocked.stdout)
        assert summary["status"] == "failed" and "Zammad group 'Archive'" in summary["error"]
        assert summary["error"].startswith("nothing written:") and "inactive" in summary["error"]
    assert _user_writes(sandbox) == writes

    env["ENTRASYNC_CONFIG"] = str(_config(sandbox, tmp_path, ACCESS))
    synced = entrasync("sync", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["created"] > 0
    agents = [u for u in sandbox.state("zammad")["users"] if u.get("entrasync_profile") == "sandbox"]
    assert agents and all(access.stored_map(u["group_ids"]) == {"1": ["read"], "2": ["full"]} for u in agents)
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert (again["created"], again["updated"], again["status"]) == (0, 0, "ok")


def test_the_worked_example_in_the_configuration_reference_parses_and_grants_the_union() -> None:
    import yaml

    from entrasync_pipeline.settings import GroupSettings

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    block = text.split("## Worked example: agent group access", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    groups = [GroupSettings(**g) for g in yaml.safe_load(block)["profiles"]["helpdesk"]["groups"]]
    config = {g.id: g.zammad_groups for g in groups}
    union = access.wanted_access([g.id for g in groups], config)
    assert union == {"2nd Level": ["full"], "Service Desk": ["full"], "Users": ["change", "read"]}
    assert access.desired_map({}, union, {"Users": 1, "2nd Level": 2, "Service Desk": 3}) == {
        "1": ["change", "read"],
        "2": ["full"],
        "3": ["full"],
    }


def test_an_empty_or_unknown_access_list_is_a_config_error() -> None:
    from pydantic import ValidationError

    from entrasync_pipeline.settings import GroupSettings

    with pytest.raises(ValidationError, match="give at least one access"):
        GroupSettings(id=GROUP, zammad_groups={"Users": []})
    with pytest.raises(ValidationError):
        GroupSettings(id=GROUP, zammad_groups={"Users": ["admin"]})
    assert GroupSettings(id=GROUP, zammad_groups={"Users": ["read", "full", "read"]}).zammad_groups == {
        "Users": ["full", "read"]
    }
