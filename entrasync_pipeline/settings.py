"""The configuration model: one YAML file, validated with pydantic; the single source of every option.

Everything an admin can set lives here with its default and description; the configuration
reference (docs/configuration.md) is generated from this model by ``entrasync config-reference``.
Secrets never live in the YAML: a profile names environment variables, and this module is the
only place (besides Dagster's ``EnvVar``) that reads the environment (STYLE.md §2.9, §3.2).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import phonenumbers
import yaml
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from entrasync_pipeline import contacts
from entrasync_pipeline.fields import SELECT_MAXLENGTH, InvalidValue, convert
from entrasync_pipeline.normalize import CORE_FIELDS

CONFIG_ENV = "ENTRASYNC_CONFIG"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TRANSFORMS = ("strip", "lower", "upper", "first", "join", "collapse_spaces")


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRule(_Model):
    """One target Zammad field: the first non-empty source attribute (after transforms) or a constant."""

    source: list[str] = Field(
        default_factory=list,
        alias="from",
        description="Graph user attributes tried in order; the first non-empty wins.",
    )
    constant: str | None = Field(None, description="A fixed value instead of a source attribute.")
    transforms: list[str] = Field(
        default_factory=lambda: ["strip"], description=f"Applied in order to each candidate: {', '.join(TRANSFORMS)}."
    )
    default: str | None = Field(None, description="Used when no source has a value (null otherwise).")
    type: Literal["text", "boolean", "integer", "date", "select"] = Field(
        "text",
        description="How Zammad stores the field: text, boolean (true/false, yes/no, 1/0, on/off; empty is "
        "false), integer, date (ISO 8601; the date as written) or select (one of 'options'). "
        "'entrasync zammad-setup' creates a missing field with this type; a value that does not convert "
        "is reported and the field gets its default (or none).",
    )
    options: dict[str, str] = Field(
        default_factory=dict,
        description="For type select: option key → label (a list of keys: the labels are the keys). A value "
        "matches a key, or a key or label ignoring case.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("options", mode="before")
    @classmethod
    def _options_as_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(key): str(key) for key in value}
        return value

    @model_validator(mode="after")
    def _typed(self) -> "FieldRule":
        if self.type == "select":
            _check_options(self.options)
        elif self.options:
            raise ValueError("'options' belong to type select")
        for name, value in (("constant", self.constant), ("default", self.default)):
            if value is not None:
                try:
                    convert(self.type, value, self.options)
                except InvalidValue as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transform(s) {unknown}; known: {list(TRANSFORMS)}")
        return value

    @model_validator(mode="after")
    def _source_or_constant(self) -> "FieldRule":
        if not self.source and self.constant is None:
            raise ValueError("a field needs 'from' (source attributes) or 'constant'")
        return self


def _check_options(options: dict[str, str]) -> None:
    """A select needs options, each key short enough for Zammad's column, none matching two options."""
    if not options:
        raise ValueError("type select needs 'options' (key: label, or a list of keys)")
    seen: dict[str, str] = {}
    for key, label in options.items():
        if not key or len(key) > SELECT_MAXLENGTH:
            raise ValueError(f"option key {key!r} must have 1 to {SELECT_MAXLENGTH} characters")
        for name in {key.casefold(), str(label).casefold()}:
            if seen.setdefault(name, key) != key:
                raise ValueError(f"options {seen[name]!r} and {key!r} both match {name!r}; make them distinct")


class OrganizationSettings(_Model):
    """The Zammad organization of each member: found by name (ignoring case, as Zammad compares
    names) or created; never renamed or deleted."""

    source: list[str] = Field(
        default_factory=list,
        alias="from",
        description="Graph user attributes tried in order (e.g. [companyName]); the first non-empty wins.",
    )
    constant: str | None = Field(None, description="One organization for every member instead of 'from'.")
    create_missing: bool = Field(
        True,
        description="Create an organization Zammad lacks (needs admin.organization or ticket.agent). "
        "False: the member gets no organization and the plan says so.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _source_or_constant(self) -> "OrganizationSettings":
        if bool(self.source) == (self.constant is not None):
            raise ValueError("organization needs either 'from' (source attributes) or 'constant'")
        if self.constant is not None and not self.constant.strip():
            raise ValueError("organization.constant must not be empty")
        return self


def default_mapping() -> dict[str, FieldRule]:
    """Zammad field ← Graph attributes; email and names also follow the fixed rules of DESIGN.md §2."""
    return {
        "email": FieldRule(
            **{"from": ["mail", "otherMails", "userPrincipalName"], "transforms": ["first", "strip", "lower"]}
        ),
        "firstname": FieldRule(**{"from": ["givenName"], "transforms": ["strip", "collapse_spaces"]}),
        "lastname": FieldRule(**{"from": ["surname"], "transforms": ["strip", "collapse_spaces"]}),
        "phone": FieldRule(**{"from": ["businessPhones"], "transforms": ["first", "strip"]}),
        "mobile": FieldRule(**{"from": ["mobilePhone"], "transforms": ["strip"]}),
        "department": FieldRule(**{"from": ["department"], "transforms": ["strip"]}),
    }


# Authority host and Graph base of each Microsoft cloud (learn.microsoft.com: "National cloud
# deployments" and "Microsoft Graph national cloud deployments"). US Government L4 (GCC High) and
# L5 (DoD) share the login host but not the Graph host.
CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "usgov_dod": ("https://login.microsoftonline.us", "https://dod-graph.microsoft.us"),
    "china": ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}


class EntraSettings(_Model):
    tenant_id: str = Field(description="Directory (tenant) id of the Entra tenant. Never 'common'.")
    client_id: str = Field(description="Application (client) id of the app registration.")
    credential: Literal["certificate", "secret", "federated"] = Field(
        "certificate",
        description="Certificate credentials are recommended; a secret also works; 'federated' exchanges a "
        "workload identity token (e.g. AKS workload identity) read from the file named by "
        "federated_token_file_env, so no secret exists at all.",
    )
    client_secret_env: str = Field("ENTRA_CLIENT_SECRET", description="Env var holding the client secret.")
    certificate_env: str = Field("ENTRA_CLIENT_CERTIFICATE", description="Env var: path of the PEM certificate.")
    private_key_env: str = Field("ENTRA_CLIENT_KEY", description="Env var: path of the PEM private key.")
    private_key_passphrase_env: str = Field(
        "ENTRA_CLIENT_KEY_PASSPHRASE",
        description="Env var holding the passphrase of an encrypted private key (needed only when the key is "
        "encrypted).",
    )
    federated_token_file_env: str = Field(
        "AZURE_FEDERATED_TOKEN_FILE",
        description="Env var: path of the file holding the federated token (credential: federated). Read again "
        "for every token request, because the platform rotates it.",
    )
    cloud: Literal["global", "usgov", "usgov_dod", "china"] = Field(
        "global",
        description="Microsoft cloud: sets the authority host and the Graph base ("
        + "; ".join(f"{name}: {hosts[0]}, {hosts[1]}" for name, hosts in CLOUDS.items())
        + "). authority_host and graph_url, when set, win.",
    )
    authority_host: str | None = Field(
        None, description="Token authority host; default: the one of `cloud`. Set it only for a custom endpoint."
    )
    graph_url: str | None = Field(
        None,
        description="Microsoft Graph base URL; default: the one of `cloud`. The token scope is always "
        "`<graph_url>/.default`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _cloud_hosts(cls, data: Any) -> Any:
        """Fill the hosts the config leaves out from the cloud, so an explicit host always wins."""
        if not isinstance(data, Mapping):
            return data
        hosts = CLOUDS.get(str(data.get("cloud", "global")))
        if hosts is None:
            return data  # the Literal check names the bad cloud
        data = dict(data)
        if data.get("authority_host") is None:
            data["authority_host"] = hosts[0]
        if data.get("graph_url") is None:
            data["graph_url"] = hosts[1]
        return data

    @field_validator("tenant_id")
    @classmethod
    def _tenant_is_a_guid(cls, value: str) -> str:
        if not GUID.match(value):
            raise ValueError("must be the tenant's GUID (msal deprecates 'common'/'organizations' for apps)")
        return value

    @field_validator("authority_host", "graph_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (msal refuses anything else)")
        return value.rstrip("/")

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def scope(self) -> str:
        """The app-permission scope of the configured Graph: each cloud grants only its own resource."""
        return f"{self.graph_url}/.default"


class GroupSettings(_Model):
    id: str = Field(description="Object id of the Entra group.")
    name: str | None = Field(None, description="A label for logs and the UI; the id is what counts.")
    roles: list[str] = Field(
        default_factory=list, description="Zammad role names for members of this group (empty: no role management)."
    )
    zammad_groups: dict[str, list[Literal["full", "read", "create", "change", "overview"]]] = Field(
        default_factory=dict,
        description="Zammad group name → access (full, read, create, change, overview) for the members who "
        "are agents: the union over their Entra groups. Only the groups named here are managed.",
    )

    @field_validator("zammad_groups")
    @classmethod
    def _access_lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, access in value.items():
            if not name.strip():
                raise ValueError("a Zammad group name must not be empty")
            if not access:
                raise ValueError(
                    f"Zammad group {name!r}: give at least one access (full, read, create, change, overview)"
                )
        return {name: sorted(set(access)) for name, access in value.items()}

    @field_validator("id")
    @classmethod
    def _guid(cls, value: str) -> str:
        if not GUID.match(value):
            raise ValueError("must be the group's object id (a GUID)")
        return value.lower()


class ZammadSettings(_Model):
    url: str = Field(description="Base URL of Zammad, e.g. https://helpdesk.example.com.")
    token_env: str = Field("ZAMMAD_TOKEN", description="Env var holding the Zammad API token.")
    per_page: int = Field(1000, ge=1, le=1000, description="Users per list page (Zammad caps at 1000, older at 500).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")


class ProtectedSettings(_Model):
    logins: list[str] = Field(default_factory=list, description="Zammad logins never modified.")
    emails: list[str] = Field(default_factory=list, description="Emails never modified (case-insensitive).")
    ids: list[int] = Field(default_factory=list, description="Zammad user ids never modified.")
    admins: bool = Field(True, description="Never modify anyone holding the Zammad Admin role.")


class SafetySettings(_Model):
    max_deactivations: int = Field(25, ge=0, description="Block the apply above this many deactivations per run.")
    max_deactivation_share: float = Field(
        0.10, ge=0, le=1, description="Block above this share of managed users deactivated per run."
    )
    failure_share: float = Field(0.40, ge=0, le=1, description="Stop the apply when this share of writes failed ...")
    failure_min_attempts: int = Field(20, ge=1, description="... after at least this many attempts (escrow).")


class NotificationSettings(_Model):
    urls: list[str] = Field(
        default_factory=list,
        description="apprise URLs (msteams://, slack://, mailto://, json://...). "
        "A value '${VAR}' is read from the environment.",
    )
    on_changes: bool = Field(True, description="Notify after a run that wrote changes.")
    on_failure: bool = Field(True, description="Notify when a run fails.")
    on_blocked: bool = Field(True, description="Notify when a safety rule blocks the apply.")
    max_examples: int = Field(5, ge=0, le=50, description="Example changes per message.")
    heartbeat_url: str | None = Field(
        None,
        description="A dead man's switch (healthchecks.io, Uptime Kuma, Cronitor, ...): one GET after each "
        "successful run, full or targeted. '${VAR}' is read from the environment (the URL is a secret). "
        "Checked when the config loads: an http(s) URL, every ${VAR} set. "
        "A dry run pings only when the config file's dry_run is on.",
    )
    heartbeat_fail_suffix: str | None = Field(
        None,
        description="Appended verbatim to heartbeat_url for one GET when a run fails (e.g. '/fail' for "
        "healthchecks.io). Empty: failures send no heartbeat.",
    )
    heartbeat_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Connect and read timeout of a heartbeat; a late one is logged, never fatal."
    )

    @field_validator("heartbeat_url")
    @classmethod
    def _heartbeat_url(cls, value: str | None) -> str | None:
        """Its shape now, with each ``${VAR}`` standing for a word (``load_settings`` reads them)."""
        if value is None or not value.strip():
            return None
        shape = _ENV_REFERENCE.sub("x", value.strip())
        if shape != "x" and (problem := _web_url_problem(shape)):  # a URL wholly from ${VAR}: checked on load
            raise ValueError(problem)
        return value


class FreshnessSettings(_Model):
    max_age_h: float = Field(
        26.0,
        gt=0,
        description="The profile's freshness check fails when its last successful full run is older than "
        "this (hours); announced once per episode, and again when it recovers.",
    )
    approval_reminder_h: float = Field(
        24.0,
        gt=0,
        description="A plan blocked waiting for approval longer than this (hours) is reminded once "
        "through the profile's notification URLs.",
    )


class ScopeRule(_Model):
    """One test on a Graph user attribute: exactly one of ``equals``, ``in`` or ``matches``."""

    attribute: str = Field(description="Graph user attribute, e.g. userType, employeeType, companyName.")
    equals: str | None = Field(None, description="Matches when the value equals this text (case-insensitive).")
    one_of: list[str] | None = Field(
        None, alias="in", description="Matches when the value equals one of these texts (case-insensitive)."
    )
    matches: str | None = Field(
        None, description="Matches when this regular expression matches the whole value (case-insensitive)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("attribute")
    @classmethod
    def _attribute_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not a Graph attribute name")
        return value

    @field_validator("matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"'matches' is not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_test(self) -> "ScopeRule":
        given = [
            k for k, v in (("equals", self.equals), ("in", self.one_of), ("matches", self.matches)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"a scope rule needs exactly one of equals, in, matches (got {given or 'none'})")
        return self


class ScopeSettings(_Model):
    include: list[ScopeRule] = Field(
        default_factory=list,
        description="When set, a member is in scope only if at least one of these rules matches.",
    )
    exclude: list[ScopeRule] = Field(
        default_factory=list, description="A member any of these rules matches is out of scope."
    )


PHONE_FIELDS = ("phone", "mobile", "fax")


class DriftSettings(_Model):
    default: Literal["entra", "zammad"] = Field(
        "entra",
        description="Who wins when a field was changed by hand in Zammad since entrasync last wrote it: "
        "entra (overwrite, and report) or zammad (keep the hand edit, and report).",
    )
    fields: dict[str, Literal["entra", "zammad"]] = Field(
        default_factory=dict, description="The same, per mapped Zammad field, e.g. {phone: zammad}."
    )
    manual_deactivation: Literal["keep", "reactivate"] = Field(
        "keep",
        description="A managed user deactivated by hand in Zammad while still in scope: kept inactive, "
        "or reactivated (both reported).",
    )


class PhoneSettings(_Model):
    format: Literal["as_is", "e164"] = Field(
        "as_is",
        description="How phone, mobile and fax are written: as typed in Entra, or E.164 (+4930123456); "
        "a number that is not a valid phone number is kept as typed and reported.",
    )
    default_region: str | None = Field(
        None, description="Region (ISO 3166 code, e.g. DE) of numbers typed without a country code."
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (ISO 3166 alpha-2, e.g. DE)")
        return value.upper() if value is not None else None


# What the fixed rules read of every member, whatever the mapping (the email chain, names, enabled, guest).
FIXED_SELECT = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "otherMails",
    "userPrincipalName",
    "accountEnabled",
    "userType",
)


class ProfileSettings(_Model):
    entra: EntraSettings
    groups: list[GroupSettings] = Field(min_length=1, description="The Entra groups whose members are synced.")
    membership: Literal["direct", "transitive"] = Field("direct", description="Direct members or nested too.")
    zammad: ZammadSettings
    mapping: dict[str, FieldRule] = Field(
        default_factory=default_mapping, description="Zammad field ← Graph attributes; replaces the default mapping."
    )
    adopt_by_email: bool = Field(
        True, description="Link existing Zammad users without entra_key by email (or, without email, by login)."
    )
    relink_deleted: bool = Field(
        True,
        description="Relink a managed Zammad user whose Entra object Graph no longer has to the new member "
        "with its email (a re-hire), instead of a conflict.",
    )
    sync_users_without_email: bool = Field(False, description="Create users that have no usable email.")
    contacts: Literal["none", "members", "all"] = Field(
        "none",
        description="Entra organizational contacts synced as Zammad customers (entra_object_type contact): "
        "none, the contacts among the configured groups' members, or every contact of the tenant "
        "(needs OrgContact.Read.All).",
    )
    organization: OrganizationSettings | None = Field(
        None,
        description="Each member's Zammad organization (from a Graph attribute or a constant); unset: "
        "organizations are not managed.",
    )
    scope: ScopeSettings = Field(default_factory=ScopeSettings)
    phones: PhoneSettings = Field(default_factory=PhoneSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    on_leave: Literal["deactivate", "ignore"] = Field(
        "deactivate",
        description="A managed user who left the groups or the scope: deactivated, or left as is (ignore).",
    )
    grace_days: int = Field(
        0, ge=0, description="Deactivate a managed user only after missing from the scope this many days."
    )
    protected: ProtectedSettings = Field(default_factory=ProtectedSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)

    @field_validator("mapping")
    @classmethod
    def _mapping_has_email(cls, value: dict[str, FieldRule]) -> dict[str, FieldRule]:
        if "email" not in value:
            raise ValueError("the mapping needs an 'email' field (it is how users are adopted and reached)")
        if "organization" in value:
            raise ValueError("set a member's organization with profiles.<p>.organization, not mapping.organization")
        typed_core = [f for f, rule in value.items() if f in CORE_FIELDS and rule.type != "text"]
        if typed_core:
            raise ValueError(f"{', '.join(typed_core)}: Zammad's own text fields take type text only")
        return value

    @model_validator(mode="after")
    def _drift_fields_are_mapped(self) -> "ProfileSettings":
        unknown = sorted(set(self.drift.fields) - set(self.mapping))
        if unknown:
            raise ValueError(f"drift.fields names fields the mapping does not have: {', '.join(unknown)}")
        return self

    def graph_select(self) -> list[str]:
        """Exactly the Graph properties the mapping and the fixed rules need (reference §2)."""
        fixed = list(FIXED_SELECT)
        sources = [s for rule in self.mapping.values() for s in rule.source]
        sources += self.organization.source if self.organization is not None else []
        scoped = [r.attribute for r in (*self.scope.include, *self.scope.exclude)]
        return list(dict.fromkeys(fixed + sources + scoped))

    def member_select(self) -> list[str]:
        """``graph_select`` for a member list: with contacts, also what a contact has instead of
        the user's phone and address properties (contacts.py)."""
        select = self.graph_select()
        return contacts.member_select(select) if self.contacts != "none" else select


class TlsSettings(_Model):
    ca_bundle: str | None = Field(
        None,
        description="PEM CA bundle for Graph, the token endpoint, Zammad and the heartbeat "
        "(private CAs). Verification is never switched off.",
    )


class HttpSettings(_Model):
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(60.0, gt=0, description="Read timeout per request.")
    max_attempts: int = Field(6, ge=1, le=20, description="Attempts per idempotent request (reads, PUT).")
    backoff_base_s: float = Field(0.5, ge=0, description="First backoff; doubles with jitter.")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest backoff between attempts.")
    max_retry_after_s: float = Field(300.0, gt=0, description="A longer Retry-After fails the request instead.")
    proxy: str | None = Field(
        None,
        description="Outbound proxy for the token endpoint, Graph and Zammad, e.g. http://proxy.example.com:3128 "
        "or http://user:${PROXY_PASSWORD}@proxy.example.com:3128 (${VAR} is read from the environment). "
        "Default: $HTTPS_PROXY (https:// targets) and $HTTP_PROXY (http:// targets). $NO_PROXY applies "
        "either way. TLS is verified end to end through the proxy's CONNECT tunnel.",
    )


class ScheduleSettings(_Model):
    cron: str = Field("0 2 * * *", description="When the scheduled sync runs (cron).")
    timezone: str = Field("UTC", description="IANA timezone of the cron, e.g. Europe/Berlin.")
    sensor_interval_s: int = Field(
        30, ge=10, description="How often the change-feed sensor polls Graph (users and group delta)."
    )
    targeted_max_users: int = Field(
        500,
        ge=1,
        description="A change touching more users than this runs a full sync instead of a targeted one "
        "(reading everything is then cheaper than reading each user).",
    )
    health_interval_s: int = Field(
        120,
        ge=10,
        description="How often the daemon's health sensor evaluates each profile's freshness check "
        "and blocked plans (reads the Dagster instance only).",
    )


class AuditSettings(_Model):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the audit store, e.g. postgresql+psycopg2://"
        "entrasync:${ENTRASYNC_AUDIT_PASSWORD}@db/entrasync_audit "
        "(${VAR} is read from the environment). Default: "
        "sqlite:///$DAGSTER_HOME/entrasync-audit.db; with neither, "
        "every command refuses to run.",
    )


class LockSettings(_Model):
    wait_s: float = Field(
        300.0,
        ge=0,
        description="How long a run waits for another run of the same profile "
        "(CLI, schedule, sensor, UI, another host) before it fails.",
    )
    ttl_s: float = Field(
        120.0, ge=5, description="A run renews its hold every third of this; a crashed holder's hold lapses after it."
    )


class Settings(_Model):
    profiles: dict[str, ProfileSettings] = Field(min_length=1, description="Sync profiles by name.")
    tls: TlsSettings = Field(default_factory=TlsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    lock: LockSettings = Field(default_factory=LockSettings)
    workers: int = Field(8, ge=1, le=64, description="Concurrent Zammad writes.")
    dry_run: bool = Field(False, description="Compute and show everything, write nothing.")
    dagster_url: str | None = Field(None, description="Dagster webserver URL for run links in notifications.")

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, value: dict[str, ProfileSettings]) -> dict[str, ProfileSettings]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"profile name {name!r} may use letters, digits, '_', '.', '-' only")
        return value

    def profile(self, name: str | None) -> tuple[str, ProfileSettings]:
        if name is None:
            if len(self.profiles) == 1:
                return next(iter(self.profiles.items()))
            raise ConfigError(f"several profiles ({', '.join(self.profiles)}): name one with --profile")
        if name not in self.profiles:
            raise ConfigError(f"unknown profile {name!r}; configured: {', '.join(self.profiles)}")
        return name, self.profiles[name]

    def audit_url(self, environ: Mapping[str, str] | None = None) -> SecretValue:
        """``audit.url`` with ``${VAR}`` expanded, else the SQLite file in ``$DAGSTER_HOME``.

        Never the current directory: an audit trail created wherever a command happened to run
        is one nobody finds again (and on a short-lived pod, one that is lost).
        """
        environ = os.environ if environ is None else environ
        if self.audit.url:
            return SecretValue(expand_env(self.audit.url, environ, "audit.url"), "audit.url")
        home = environ.get("DAGSTER_HOME")
        if not home:
            raise ConfigError(
                "no audit store: set audit.url in the config (e.g. postgresql+psycopg2://user:"
                "${ENTRASYNC_AUDIT_PASSWORD}@host/db) or DAGSTER_HOME (the audit then lives in "
                "$DAGSTER_HOME/entrasync-audit.db)"
            )
        return SecretValue(f"sqlite:///{Path(home).resolve() / 'entrasync-audit.db'}", "audit store")


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        lines.append(f"  {key}: {error['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def parse_settings(data: Any) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load the config from ``path`` or ``$ENTRASYNC_CONFIG``."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"no configuration: pass --config or set {CONFIG_ENV}")
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {file} is not valid YAML: {exc}") from None
    settings = parse_settings(data)
    _check_heartbeats(settings, environ)
    return settings


def _web_url_problem(url: str) -> str | None:
    """Why ``url`` is no http(s) URL with a host, in words that never repeat it (it may be a secret)."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is no number
        valid = False
    return None if valid else "must be an http:// or https:// URL with a host (the value is not shown: it is secret)"


def _check_heartbeats(settings: Settings, environ: Mapping[str, str]) -> None:
    """Each heartbeat URL with its ``${VAR}`` read: an unset variable or a value that is no URL is a
    config error naming the key now, not a warning in some run's log after the monitor went red."""
    for name, profile in settings.profiles.items():
        key = f"profiles.{name}.notifications.heartbeat_url"
        try:
            url = heartbeat_url(profile.notifications, environ)
        except ConfigError as exc:  # names the variable, never a value
            raise ConfigError(f"invalid configuration:\n  {key}: {exc}") from None
        if url is not None and (problem := _web_url_problem(url.reveal())):
            raise ConfigError(f"invalid configuration:\n  {key}: {problem}")


def configured_profile_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """Profile names for the Dagster partitions; ``['default']`` when no config is set (loading only)."""
    environ = os.environ if environ is None else environ
    if not environ.get(CONFIG_ENV):
        return ["default"]
    return list(load_settings(environ=environ).profiles)


# --- secrets -------------------------------------------------------------------------------------
class SecretValue:
    """A secret that never shows itself in repr, str, logs or exceptions."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str) -> None:
        self._value, self.name = value, name

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue(<{self.name}>)"

    __str__ = __repr__


@dataclass(frozen=True)
class EntraCredentialMaterial:
    """What the credential needs: a secret, a certificate and its (decrypted) key, or a token file."""

    kind: Literal["certificate", "secret", "federated"]
    secret: SecretValue | None = None
    certificate_pem: str | None = None
    private_key: SecretValue | None = None
    federated_token_file: Path | None = None
    federated_token_file_env: str | None = None


def _require_env(environ: Mapping[str, str], name: str, purpose: str) -> str:
    value = environ.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} is not set ({purpose})")
    return value


def entra_credential(entra: EntraSettings, environ: Mapping[str, str] | None = None) -> EntraCredentialMaterial:
    environ = os.environ if environ is None else environ
    if entra.credential == "secret":
        value = _require_env(environ, entra.client_secret_env, "Entra client secret")
        return EntraCredentialMaterial("secret", secret=SecretValue(value, entra.client_secret_env))
    if entra.credential == "federated":
        path = _require_env(environ, entra.federated_token_file_env, "path of the federated token file")
        return EntraCredentialMaterial(
            "federated", federated_token_file=Path(path), federated_token_file_env=entra.federated_token_file_env
        )
    cert_path = _require_env(environ, entra.certificate_env, "path of the Entra client certificate")
    key_path = _require_env(environ, entra.private_key_env, "path of the Entra client private key")
    try:
        certificate = Path(cert_path).read_text(encoding="ascii")
        key = Path(key_path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the Entra certificate or key ({exc.strerror}); "
            f"check {entra.certificate_env} and {entra.private_key_env}"
        ) from None
    return EntraCredentialMaterial(
        "certificate",
        certificate_pem=certificate,
        private_key=SecretValue(_unlocked_key(key, key_path, entra, environ), entra.private_key_env),
    )


def _unlocked_key(key: bytes, key_path: str, entra: EntraSettings, environ: Mapping[str, str]) -> str:
    """The private key as unencrypted PEM, decrypted with the passphrase when it is encrypted.

    Decrypted here, once, so a missing or wrong passphrase is a clear config error at the start
    instead of an error deep inside msal; the message names the variable, never its value.
    """
    passphrase = environ.get(entra.private_key_passphrase_env) or None
    encrypted = b"ENCRYPTED" in key  # PKCS#8 "ENCRYPTED PRIVATE KEY" or OpenSSL "Proc-Type: 4,ENCRYPTED"
    if encrypted and passphrase is None:
        raise ConfigError(
            f"the Entra private key {key_path} is encrypted: set {entra.private_key_passphrase_env} to its passphrase"
        )
    try:
        loaded = serialization.load_pem_private_key(key, passphrase.encode() if encrypted and passphrase else None)
    except (TypeError, ValueError):
        reason = (
            f"the passphrase in {entra.private_key_passphrase_env} does not open it" if encrypted else "not a PEM key"
        )
        raise ConfigError(f"cannot load the Entra private key {key_path}: {reason}") from None
    return loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def zammad_token(zammad: ZammadSettings, environ: Mapping[str, str] | None = None) -> SecretValue:
    environ = os.environ if environ is None else environ
    return SecretValue(_require_env(environ, zammad.token_env, "Zammad API token"), zammad.token_env)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, environ: Mapping[str, str], purpose: str) -> str:
    """Replace every ``${VAR}`` with its value, so passwords and webhook keys stay out of the YAML."""
    return _ENV_REFERENCE.sub(lambda m: _require_env(environ, m.group(1), purpose), text)


def notification_urls(settings: NotificationSettings, environ: Mapping[str, str] | None = None) -> list[SecretValue]:
    """apprise URLs with ``${VAR}`` resolved; kept secret because URLs embed webhook keys."""
    environ = os.environ if environ is None else environ
    return [
        SecretValue(expand_env(raw.strip(), environ, "notification URL"), "notification URL") for raw in settings.urls
    ]


def heartbeat_url(settings: NotificationSettings, environ: Mapping[str, str] | None = None) -> SecretValue | None:
    """``heartbeat_url`` with ``${VAR}`` resolved, or None; secret, because ping URLs are tokens."""
    environ = os.environ if environ is None else environ
    if not settings.heartbeat_url:
        return None
    return SecretValue(expand_env(settings.heartbeat_url.strip(), environ, "heartbeat URL"), "heartbeat URL")


def schedule_settings(environ: Mapping[str, str] | None = None) -> ScheduleSettings:
    """The schedule of the configured file, or the defaults when no config is set (loading only)."""
    environ = os.environ if environ is None else environ
    if not environ.get(CONFIG_ENV):
        return ScheduleSettings()
    return load_settings(environ=environ).schedule


# --- proxy ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyChoice:
    """The proxy URL for one target scheme (it may carry a password) and where it came from."""

    url: SecretValue
    source: str


@dataclass(frozen=True)
class Proxies:
    """The proxies per target scheme and the NO_PROXY rules, read once from the config and environment."""

    by_scheme: dict[str, ProxyChoice]
    no_proxy: tuple[str, ...]


def _first_env(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first set variable, lower case first as curl and urllib read them."""
    for name in names:
        value = (environ.get(name) or "").strip()
        if value:
            return name, value
    return None


def _proxy_url(raw: str, source: str) -> SecretValue:
    """Check the scheme; ``host:port`` alone means ``http://host:port``, as curl and requests read it."""
    url = raw if "://" in raw else f"http://{raw}"
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: the proxy must be an http:// or https:// URL (socks is not supported)")
    try:
        valid = bool(urlsplit(url).hostname) and urlsplit(url).port != 0
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{source}: the proxy URL needs a host and a valid port")
    return SecretValue(url.rstrip("/"), source)


def proxy_settings(http: HttpSettings, environ: Mapping[str, str] | None = None) -> Proxies:
    """``http.proxy`` (``${VAR}`` expanded) or else HTTPS_PROXY / HTTP_PROXY, and the NO_PROXY rules.

    Read here and nowhere else: the transports keep ``trust_env`` off so the CA-bundle variables
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) can never replace ``tls.ca_bundle``.
    """
    environ = os.environ if environ is None else environ
    by_scheme: dict[str, ProxyChoice] = {}
    if http.proxy:
        url = _proxy_url(expand_env(http.proxy.strip(), environ, "http.proxy"), "http.proxy")
        by_scheme = {"https": ProxyChoice(url, "http.proxy"), "http": ProxyChoice(url, "http.proxy")}
    else:
        for scheme, names in (("https", ("https_proxy", "HTTPS_PROXY")), ("http", ("http_proxy", "HTTP_PROXY"))):
            found = _first_env(environ, *names)
            if found is not None:
                by_scheme[scheme] = ProxyChoice(_proxy_url(found[1], found[0]), found[0])
    rules = _first_env(environ, "no_proxy", "NO_PROXY")
    no_proxy = tuple(r.strip() for r in rules[1].split(",") if r.strip()) if rules else ()
    return Proxies(by_scheme, no_proxy)
