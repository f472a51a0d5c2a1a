"""A sandbox tenant driven the way an admin changes it, and the sync job run against it (test helpers).

``Admin`` changes Entra through the real Graph write API with the sandbox's admin app; ``Runner``
executes ``entrasync_sync_job`` in process, full or targeted, on a test instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from entrasync_pipeline.definitions import build_definitions
from entrasync_pipeline.run_options import RUN_OPTIONS_RESOURCE, scope_tags
from entrasync_pipeline.settings import ScheduleSettings, load_settings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config


class Admin:
    """Changes the sandbox tenant through the real Graph write API (the admin app)."""

    def __init__(self, sandbox: Sandbox, http: Any) -> None:
        self.sandbox, self.http, self.token = sandbox, http, sandbox.admin_token()
        self.base = f"{sandbox.info['graph_url']}/v1.0"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(
            method, f"{self.base}{path}", json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def hire(self, alias: str, group: str, department: str = "IT Support") -> str:
        user = self._call(
            "POST",
            "/users",
            {
                "accountEnabled": True,
                "displayName": alias.replace(".", " ").title(),
                "mailNickname": alias,
                "userPrincipalName": f"{alias}@contoso.example",
                "mail": f"{alias}@contoso.example",
                "givenName": alias.split(".")[0].title(),
                "surname": alias.split(".")[1].title(),
                "department": department,
                "businessPhones": ["+49 30 1234"],
                "passwordProfile": {"password": "x"},
            },
        )
        self.add(group, user["id"])
        return user["id"]

    def add(self, group: str, user_id: str) -> None:
        self._call(
            "POST",
            f"/groups/{group}/members/$ref",
            {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"},
        )

    def remove(self, group: str, user_id: str) -> None:
        self._call("DELETE", f"/groups/{group}/members/{user_id}/$ref")

    def patch(self, user_id: str, **changes: Any) -> None:
        self._call("PATCH", f"/users/{user_id}", changes)

    def delete(self, user_id: str) -> None:
        """A soft delete: the user goes to deleted items, restorable for 30 days."""
        self._call("DELETE", f"/users/{user_id}")

    def restore(self, user_id: str) -> None:
        self._call("POST", f"/directory/deletedItems/{user_id}/restore")

    def members(self, group: str) -> list[str]:
        return self.sandbox.state("graph")["groups"][group]

    def contact(
        self,
        alias: str,
        group: str | None = None,
        company: str | None = None,
        phones: list[dict[str, str]] | None = None,
        **props: Any,
    ) -> str:
        """A new organizational contact ``alias@partner.example`` (``given.surname`` names it).

        Contacts are read-only in Graph (Exchange Online owns them), so it is created through the
        sandbox's control API; joining ``group`` is the real ``POST /groups/{id}/members/$ref``.
        ``phones`` as Graph has them: ``[{"number": "+49 …", "type": "business"|"mobile"|…}]``.
        """
        given, _, surname = alias.partition(".")
        record = {
            "displayName": alias.replace(".", " ").title(),
            "givenName": given.title(),
            "surname": surname.title() or None,
            "mail": f"{alias}@partner.example",
            "mailNickname": alias.replace(".", "-"),
            "companyName": company,
            "phones": phones or [],
            **props,
        }
        contact_id = str(self.sandbox.control("POST", "graph", "contacts", record)["id"])
        if group is not None:
            self.add(group, contact_id)
        return contact_id

    def patch_contact(self, contact_id: str, **changes: Any) -> None:
        """Change a contact's properties as Exchange Online would (the control API)."""
        self.sandbox.control("PATCH", "graph", f"contacts/{contact_id}", changes)

    def delete_contact(self, contact_id: str) -> None:
        """Delete a contact for good: contacts have no deleted items to restore from."""
        self.sandbox.control("DELETE", "graph", f"contacts/{contact_id}")


class Helpdesk:
    """Changes Zammad users by hand, as a helpdesk admin does in the UI (the REST API with an admin token)."""

    def __init__(self, sandbox: Sandbox, http: Any) -> None:
        self.sandbox, self.http = sandbox, http
        self.base, self.token = f"{sandbox.info['zammad_url']}/api/v1", sandbox.zammad_token("sync")

    def user(self, entra_key: str) -> dict[str, Any]:
        return next(u for u in self.sandbox.state("zammad")["users"] if u.get("entra_key") == entra_key)

    def create(self, **fields: Any) -> int:
        response = self.http.post(
            f"{self.base}/users", json=fields, headers={"Authorization": f"Token token={self.token}"}
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def edit(self, entra_key: str, **changes: Any) -> None:
        response = self.http.put(
            f"{self.base}/users/{self.user(entra_key)['id']}",
            json=changes,
            headers={"Authorization": f"Token token={self.token}"},
        )
        assert response.status_code == 200, response.text


class Runner:
    def __init__(self, config: Path, profiles: list[str], instance: dg.DagsterInstance) -> None:
        self.defs = build_definitions(profiles, ScheduleSettings(), config_path=str(config))
        self.config, self.instance = config, instance

    def run(
        self, profile: str = "sandbox", tags: dict[str, str] | None = None, run_config: dict[str, Any] | None = None
    ) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("entrasync_sync_job")
        return job.execute_in_process(
            instance=self.instance,
            partition_key=profile,
            tags=tags or {},
            run_config=run_config or {},
            raise_on_error=False,
        )

    def targeted(self, targets: list[str], profile: str = "sandbox", **options: Any) -> dg.ExecuteInProcessResult:
        """The job scoped to these Entra ids, as the change-feed sensor launches it."""
        config = {"resources": {RUN_OPTIONS_RESOURCE: {"config": {"targets": targets, **options}}}}
        return self.run(profile, tags=scope_tags(targets), run_config=config)

    def counts(self, result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        materialization = result.asset_materializations_for_node("zammad_sync")[0]
        return {k: v.value for k, v in materialization.metadata.items()}


def it_support_config(sandbox: Sandbox, tmp_path: Path, **extra: Any) -> Path:
    groups = [{"id": sandbox.info["groups"]["IT Support"], "name": "IT Support"}]
    return write_config(tmp_path / "entrasync.yaml", sandbox.info, {"sandbox": {"groups": groups, **extra}})


def setup_attributes(config: Path, environ: dict[str, str]) -> None:
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.steps import setup_zammad

    with ProfileRuntime("sandbox", load_settings(config), environ) as runtime:
        setup_zammad(runtime)


def user_writes(sandbox: Sandbox) -> int:
    """User creates and updates Zammad received (the sandbox's request counters)."""
    requests = sandbox.stats("zammad")["requests"]
    return sum(n for route, n in requests.items() if route in ("POST /api/v1/users", "PUT /api/v1/users/{id}"))


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> Any:
    """The evaluation of the asset check ``name`` in a run's result."""
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == name)
