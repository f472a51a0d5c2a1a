"""Docs stay true: every test RELIABILITY.md names exists; the README keeps its two-command quickstart;
the product docs point only inside the repository; the deploy files stay runnable as documented."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "entrasync_pipeline_tests").rglob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE))
    return names


def test_reliability_names_only_existing_tests() -> None:
    named = set(re.findall(r"`(test_\w+)`", (REPO / "RELIABILITY.md").read_text()))
    assert named and not named - _defined_tests(), sorted(named - _defined_tests())


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```", 2)[1]
    assert block.strip().splitlines() == ["make demo", "make test"]


def test_the_production_instance_config_is_valid_dagster_config(monkeypatch) -> None:
    import yaml
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(var, "x")
    for name in ("deploy/dagster.production.yaml", "dagster.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        result = process_config(dagster_instance_config_schema(), config)
        assert result.success, (name, [e.message for e in result.errors])


def test_the_systemd_units_run_the_three_services() -> None:
    units = {p.name: p.read_text() for p in (REPO / "deploy" / "systemd").glob("*.service")}
    assert any("dagster-webserver" in u for u in units.values())
    assert any("dagster-daemon run" in u for u in units.values())
    assert any("dagster api grpc -m entrasync_pipeline.definitions" in u for u in units.values())
    assert all("EnvironmentFile=/etc/entrasync/entrasync.env" in u for u in units.values())


def _product_docs() -> dict[str, str]:
    paths = [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")]
    return {str(p.relative_to(REPO)): p.read_text() for p in paths}


def test_the_product_docs_never_point_outside_the_repository() -> None:
    offenders = {
        name
        for name, text in _product_docs().items()
        if "../shared" in text or "shared/DESIGN.md" in text or "shared/STYLE.md" in text
    }
    assert not offenders, sorted(offenders)


def test_relative_links_in_the_product_docs_resolve() -> None:
    missing = []
    for name, text in _product_docs().items():
        base = (REPO / name).parent
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (base / target).exists():
                missing.append(f"{name} -> {target}")
    assert not missing, missing


def test_the_systemd_units_run_as_the_service_user_with_a_plain_environment_file() -> None:
    units = {p.name: p.read_text() for p in (REPO / "deploy" / "systemd").glob("*.service")}
    assert units
    for name, unit in units.items():
        assert "User=entrasync" in unit and "Group=entrasync" in unit, name
        assert "DAGSTER_HOME=/var/lib/entrasync/dagster" in unit, name
    wrapper = (REPO / "deploy" / "systemd" / "entrasync-cli").read_text()
    assert "--property=EnvironmentFile=/etc/entrasync/entrasync.env" in wrapper
    assert "--uid=entrasync" in wrapper and "DAGSTER_HOME=/var/lib/entrasync/dagster" in wrapper


def test_no_shell_tricks_load_the_environment_file() -> None:
    texts = {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "deploy").rglob("*") if p.is_file()}
    texts.update(_product_docs())
    offenders = sorted(name for name, text in texts.items() if "xargs" in text or "env $(cat" in text)
    assert not offenders, offenders


def test_the_environment_file_example_is_plain_key_value_lines() -> None:
    lines = [
        line
        for line in (REPO / "deploy" / "entrasync.env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    keys = [line.split("=", 1)[0] for line in lines]
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line) for line in lines), lines
    assert {"ENTRASYNC_CONFIG", "DAGSTER_HOME", "ENTRASYNC_AUDIT_PASSWORD", "ZAMMAD_TOKEN"} <= set(keys)
    assert len(keys) == len(set(keys))


def test_the_helm_values_keep_the_audit_on_postgresql_with_the_password_from_a_secret() -> None:
    import yaml

    text = (REPO / "deploy" / "kubernetes" / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert "audit:" in text and "url: postgresql+psycopg2://entrasync:${ENTRASYNC_AUDIT_PASSWORD}@" in text
    env = values["dagster-user-deployments"]["deployments"][0]["env"]
    password = next(e for e in env if e["name"] == "ENTRASYNC_AUDIT_PASSWORD")
    assert "secretKeyRef" in password["valueFrom"]
    assert values["global"]["dagsterHome"]


def test_the_changelog_has_an_unreleased_section_and_the_first_release() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and "## [0.1.0]" in text
    assert "resources: {run_options:" in text and "64" in text


def test_the_architecture_names_the_five_assets_and_the_checks() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    for name in (
        "entra_group_members",
        "universal_users",
        "zammad_users",
        "sync_plan",
        "zammad_sync",
        "universal_users_schema",
        "sync_plan_schema",
        "sync_plan_safety",
        "sync_plan_fields",
        "sync_plan_groups",
        "entrasync_sync_job",
        "entrasync_daily_sync",
        "entrasync_membership_delta",
        "entrasync_lease",
    ):
        assert f"`{name}`" in text, name


def test_the_workload_identity_overlay_gives_the_code_server_and_every_run_pod_the_identity() -> None:
    import yaml

    values = yaml.safe_load((REPO / "deploy" / "kubernetes" / "values-workload-identity.yaml").read_text())
    users = values["dagster-user-deployments"]
    account = users["serviceAccount"]
    assert account["create"] and "azure.workload.identity/client-id" in account["annotations"]
    deployment = users["deployments"][0]
    assert deployment["labels"]["azure.workload.identity/use"] == "true"
    assert not any(e["name"].startswith("ENTRA_CLIENT") for e in deployment["env"])
    run = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run["podSpecConfig"]["serviceAccountName"] == account["name"]
    assert run["podTemplateSpecMetadata"]["labels"]["azure.workload.identity/use"] == "true"
