"""The config model: errors name the key; secrets only from the environment; defaults in one place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from entrasync_pipeline.settings import (
    ConfigError,
    entra_credential,
    load_settings,
    notification_urls,
    parse_settings,
    zammad_token,
)

TENANT = "00000000-0000-0000-0000-000000000001"
GROUP = "00000000-0000-0000-0000-0000000000aa"


def _config(**profile: object) -> dict:
    base = {
        "entra": {"tenant_id": TENANT, "client_id": "app"},
        "groups": [{"id": GROUP}],
        "zammad": {"url": "https://helpdesk.example.com"},
    }
    base.update(profile)
    return {"profiles": {"main": base}}


def test_a_minimal_config_gets_safe_defaults() -> None:
    settings = parse_settings(_config())
    name, profile = settings.profile(None)
    assert name == "main" and profile.entra.credential == "certificate"
    assert profile.adopt_by_email and profile.protected.admins and profile.membership == "direct"
    assert settings.schedule.cron == "0 2 * * *" and settings.workers == 8 and not settings.dry_run
    assert set(profile.mapping) == {"email", "firstname", "lastname", "phone", "mobile", "department"}
    assert set(profile.graph_select()) >= {
        "id",
        "mail",
        "otherMails",
        "userPrincipalName",
        "accountEnabled",
        "businessPhones",
        "mobilePhone",
        "department",
    }


@pytest.mark.parametrize(
    "change, key",
    [
        ({"entra": {"tenant_id": "common", "client_id": "app"}}, "profiles.main.entra.tenant_id"),
        ({"groups": [{"id": "IT Support"}]}, "profiles.main.groups.0.id"),
        ({"zammad": {"url": "helpdesk.example.com"}}, "profiles.main.zammad.url"),
        ({"mapping": {"phone": {"from": ["businessPhones"], "transforms": ["shout"]}}}, "profiles.main.mapping"),
        ({"membership": "nested"}, "profiles.main.membership"),
        ({"colour": "blue"}, "profiles.main.colour"),
        (
            {"entra": {"tenant_id": TENANT, "client_id": "app", "graph_url": "http://graph"}},
            "profiles.main.entra.graph_url",
        ),
    ],
    ids=[
        "tenant-not-guid",
        "group-not-id",
        "zammad-url",
        "unknown-transform",
        "membership",
        "unknown-key",
        "graph-not-https",
    ],
)
def test_errors_name_the_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_config(**change))
    assert key in str(info.value)


def test_load_reports_a_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="ENTRASYNC_CONFIG"):
        load_settings(None, environ={})


def test_several_profiles_need_a_choice() -> None:
    data = _config()
    data["profiles"]["second"] = data["profiles"]["main"]
    settings = parse_settings(data)
    with pytest.raises(ConfigError, match="--profile"):
        settings.profile(None)
    assert settings.profile("second")[0] == "second"


def test_secrets_come_from_the_named_environment_variables(tmp_path: Path) -> None:
    settings = parse_settings(
        _config(
            entra={"tenant_id": TENANT, "client_id": "app", "credential": "secret", "client_secret_env": "MY_SECRET"}
        )
    )
    profile = settings.profiles["main"]
    with pytest.raises(ConfigError, match="MY_SECRET is not set"):
        entra_credential(profile.entra, environ={})
    material = entra_credential(profile.entra, environ={"MY_SECRET": "s3cr3t-value"})
    assert material.secret is not None and material.secret.reveal() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(material) and "s3cr3t-value" not in str(material.secret)
    token = zammad_token(profile.zammad, environ={"ZAMMAD_TOKEN": "tok-123"})
    assert token.reveal() == "tok-123" and "tok-123" not in repr(token)


def test_certificate_paths_are_read_and_reported_clearly(tmp_path: Path) -> None:
    settings = parse_settings(_config())
    entra = settings.profiles["main"].entra
    with pytest.raises(ConfigError, match="ENTRA_CLIENT_CERTIFICATE"):
        entra_credential(entra, environ={"ENTRA_CLIENT_KEY": "x"})
    with pytest.raises(ConfigError, match="cannot read the Entra certificate"):
        entra_credential(
            entra,
            environ={
                "ENTRA_CLIENT_CERTIFICATE": str(tmp_path / "no.pem"),
                "ENTRA_CLIENT_KEY": str(tmp_path / "no.key"),
            },
        )


def test_notification_urls_may_come_from_the_environment() -> None:
    settings = parse_settings(_config(notifications={"urls": ["${TEAMS_HOOK}", "json://127.0.0.1:9/x"]}))
    urls = notification_urls(settings.profiles["main"].notifications, environ={"TEAMS_HOOK": "msteams://a/b/c"})
    assert [u.reveal() for u in urls] == ["msteams://a/b/c", "json://127.0.0.1:9/x"]


KEY = "profiles.main.notifications.heartbeat_url"


@pytest.mark.parametrize(
    ("url", "environ", "said"),
    [
        pytest.param("not a url secret-token", {}, "must be an http:// or https:// URL", id="not-a-url"),
        pytest.param("ftp://hc.example/secret-token", {}, "must be an http:// or https:// URL", id="not-http"),
        pytest.param("https://hc.example/${HC_TOKEN}", {}, "environment variable HC_TOKEN is not set", id="unset-var"),
        pytest.param("${HC_URL}", {"HC_URL": "hc.example/secret-token"}, "must be an http", id="var-not-a-url"),
    ],
)
def test_a_heartbeat_url_is_checked_when_the_config_loads_without_showing_it(
    tmp_path: Path, url: str, environ: dict[str, str], said: str
) -> None:
    """Found by trying it as an admin: "not a url" was accepted and an unset ${VAR} only logged in a run."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(notifications={"heartbeat_url": url})))
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ)
    assert KEY in str(info.value) and said in str(info.value)
    assert "secret-token" not in str(info.value)


def test_a_heartbeat_url_from_the_environment_loads(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_config(notifications={"heartbeat_url": "https://hc.example/${HC_TOKEN}"})))
    settings = load_settings(config, {"HC_TOKEN": "abc"})
    assert settings.profiles["main"].notifications.heartbeat_url == "https://hc.example/${HC_TOKEN}"


def test_the_sandbox_config_is_a_valid_config(tmp_path: Path) -> None:
    from entrasync_pipeline.sandbox.serve import sandbox_config

    info = {
        "ca_bundle": "/x/ca.pem",
        "tenant_id": TENANT,
        "sync_app": {"client_id": "app"},
        "graph_url": "https://127.0.0.1:1",
        "zammad_url": "https://127.0.0.1:2",
        "groups": {"IT": GROUP},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(sandbox_config(info)))
    assert load_settings(path).profiles["sandbox"].groups[0].id == GROUP


@pytest.mark.parametrize(
    ("cloud", "authority", "graph"),
    [
        ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
        ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
        ("usgov_dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
        ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_the_cloud_sets_the_authority_the_graph_and_so_the_scope(cloud: str, authority: str, graph: str) -> None:
    entra = (
        parse_settings(_config(entra={"tenant_id": TENANT, "client_id": "app", "cloud": cloud})).profiles["main"].entra
    )
    assert (entra.authority, entra.graph_url) == (f"{authority}/{TENANT}", graph)
    assert entra.scope == f"{graph}/.default"


def test_explicit_hosts_win_over_the_cloud_and_the_scope_follows_graph_url() -> None:
    entra = (
        parse_settings(
            _config(
                entra={
                    "tenant_id": TENANT,
                    "client_id": "app",
                    "cloud": "china",
                    "authority_host": "https://login.example.com/",
                    "graph_url": "https://graph.example.com/",
                }
            )
        )
        .profiles["main"]
        .entra
    )
    assert entra.authority == f"https://login.example.com/{TENANT}"
    assert entra.scope == "https://graph.example.com/.default"
    assert parse_settings(_config()).profiles["main"].entra.scope == "https://graph.microsoft.com/.default"


def test_an_unknown_cloud_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="profiles.main.entra.cloud"):
        parse_settings(_config(entra={"tenant_id": TENANT, "client_id": "app", "cloud": "germany"}))


def test_a_federated_credential_names_its_token_file_variable(tmp_path: Path) -> None:
    entra = (
        parse_settings(_config(entra={"tenant_id": TENANT, "client_id": "app", "credential": "federated"}))
        .profiles["main"]
        .entra
    )
    with pytest.raises(ConfigError, match="AZURE_FEDERATED_TOKEN_FILE is not set"):
        entra_credential(entra, environ={})
    material = entra_credential(entra, environ={"AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token")})
    assert material.kind == "federated" and material.federated_token_file == tmp_path / "token"
    assert material.secret is None and material.private_key is None


def test_scope_rules_need_exactly_one_test_and_a_valid_pattern() -> None:
    from pydantic import ValidationError

    from entrasync_pipeline.settings import ScopeRule

    assert ScopeRule(attribute="userType", equals="Guest").equals == "Guest"
    assert ScopeRule.model_validate({"attribute": "employeeType", "in": ["Employee"]}).one_of == ["Employee"]
    for bad, message in (
        ({"attribute": "userType"}, "exactly one of equals, in, matches"),
        ({"attribute": "userType", "equals": "Guest", "in": ["Member"]}, "exactly one of equals, in, matches"),
        ({"attribute": "mail", "matches": "(unclosed"}, "not a regular expression"),
        ({"attribute": "user type", "equals": "x"}, "not a Graph attribute name"),
    ):
        with pytest.raises(ValidationError, match=message):
            ScopeRule.model_validate(bad)


def test_the_scope_rules_attributes_are_read_from_graph() -> None:
    from entrasync_pipeline.settings import ProfileSettings

    guid = "9a0f1b7c-0000-4000-8000-000000000001"
    profile = ProfileSettings(
        entra={"tenant_id": guid, "client_id": guid},
        groups=[{"id": guid}],
        zammad={"url": "https://helpdesk.example.com"},
        scope={"include": [{"attribute": "employeeType", "in": ["Employee"]}]},
        grace_days=7,
    )
    assert "employeeType" in profile.graph_select() and profile.grace_days == 7 and profile.on_leave == "deactivate"


def test_the_phone_region_is_one_phonenumbers_knows() -> None:
    from pydantic import ValidationError

    from entrasync_pipeline.settings import PhoneSettings

    assert PhoneSettings(format="e164", default_region="de").default_region == "DE"
    assert PhoneSettings().format == "as_is" and PhoneSettings().default_region is None
    with pytest.raises(ValidationError, match="not a region phonenumbers knows"):
        PhoneSettings(default_region="Germany")


def test_drift_fields_must_be_mapped_fields() -> None:
    from pydantic import ValidationError

    from entrasync_pipeline.settings import ProfileSettings

    guid = "9a0f1b7c-0000-4000-8000-000000000001"
    base = {
        "entra": {"tenant_id": guid, "client_id": guid},
        "groups": [{"id": guid}],
        "zammad": {"url": "https://z.example"},
    }
    assert ProfileSettings(**base, drift={"fields": {"phone": "zammad"}}).drift.fields == {"phone": "zammad"}
    assert ProfileSettings(**base).drift.manual_deactivation == "keep"
    with pytest.raises(ValidationError, match="drift.fields names fields the mapping does not have: pager"):
        ProfileSettings(**base, drift={"fields": {"pager": "zammad"}})


def test_an_organization_comes_from_attributes_or_a_constant_and_graph_reads_its_sources() -> None:
    profile = parse_settings(_config(organization={"from": ["companyName", "department"]})).profiles["main"]
    assert profile.organization is not None and profile.organization.create_missing is True
    assert {"companyName", "department"} <= set(profile.graph_select())
    fixed = parse_settings(_config(organization={"constant": "Contoso", "create_missing": False})).profiles["main"]
    assert fixed.organization is not None and fixed.organization.constant == "Contoso"
    assert parse_settings(_config()).profiles["main"].organization is None


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        pytest.param({"organization": {}}, "either 'from'", id="neither"),
        pytest.param({"organization": {"from": ["companyName"], "constant": "X"}}, "either 'from'", id="both"),
        pytest.param({"organization": {"constant": " "}}, "must not be empty", id="blank-constant"),
        pytest.param({"organization": {"from": ["companyName"], "renamed": True}}, "renamed", id="unknown-key"),
        pytest.param(
            {"mapping": {"email": {"from": ["mail"]}, "organization": {"from": ["companyName"]}}},
            "profiles.<p>.organization",
            id="mapping-organization",
        ),
    ],
)
def test_a_bad_organization_setting_names_the_key(profile: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(_config(**profile))
