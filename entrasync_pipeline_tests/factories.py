"""Builders of Graph users, member frames, Zammad users and configs shared by the tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from entrasync_pipeline.normalize import NormalizeOptions, Rule, normalize_members
from entrasync_pipeline.plan import PlanOptions
from entrasync_pipeline.settings import default_mapping

GROUP = "9a0f1b7c-0000-4000-8000-000000000001"
PROFILE = "helpdesk"


def graph_user(name: str = "jane.doe", **overrides: Any) -> dict[str, Any]:
    given, _, surname = name.partition(".")
    user = {
        "@odata.type": "#microsoft.graph.user",
        "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        "displayName": f"{given.title()} {surname.title()}".strip(),
        "givenName": given.title(),
        "surname": surname.title() or None,
        "mail": f"{name}@contoso.example",
        "otherMails": [],
        "userPrincipalName": f"{name}@contoso.example",
        "accountEnabled": True,
        "userType": "Member",
        "businessPhones": ["+1 555 0100"],
        "mobilePhone": None,
        "department": "IT",
    }
    user.update(overrides)
    return user


def members_frame(*users: dict[str, Any], group: str = GROUP) -> pd.DataFrame:
    rows = [{"group_id": group, "group_name": "IT Support", **u} for u in users]
    return pd.DataFrame(
        rows,
        columns=[
            "group_id",
            "group_name",
            "id",
            "@odata.type",
            "displayName",
            "givenName",
            "surname",
            "mail",
            "otherMails",
            "userPrincipalName",
            "accountEnabled",
            "userType",
            "businessPhones",
            "mobilePhone",
            "department",
            "employeeType",
        ],
    )


def normalize_options(**overrides: Any) -> NormalizeOptions:
    mapping = {
        k: Rule(tuple(r.source), r.constant, tuple(r.transforms), r.default) for k, r in default_mapping().items()
    }
    options = {"mapping": mapping, "group_roles": {}, "sync_users_without_email": False}
    options.update(overrides)
    return NormalizeOptions(**options)


def universal(*users: dict[str, Any], **options: Any) -> pd.DataFrame:
    return normalize_members(members_frame(*users), normalize_options(**options))


def zammad_user(
    user_id: int, email: str, entra_key: str | None = None, profile: str | None = PROFILE, **overrides: Any
) -> dict[str, Any]:
    local = email.split("@")[0]
    given, _, surname = local.partition(".")
    user = {
        "id": user_id,
        "login": email,
        "email": email,
        "firstname": given.title(),
        "lastname": surname.title(),
        "phone": "+1 555 0100",
        "mobile": "",
        "department": "IT",
        "active": True,
        "role_ids": (3,),
        "entra_key": entra_key,
        "entra_object_type": "user" if entra_key else None,
        "entrasync_profile": profile if entra_key else None,
    }
    user.update(overrides)
    return user


def zammad_frame(*users: dict[str, Any]) -> pd.DataFrame:
    base = [
        {
            "id": 1,
            "login": "-",
            "email": "",
            "firstname": "-",
            "lastname": "",
            "phone": "",
            "mobile": "",
            "department": "",
            "active": False,
            "role_ids": (3,),
            "entra_key": None,
            "entra_object_type": None,
            "entrasync_profile": None,
        },
        {
            "id": 3,
            "login": "admin@helpdesk.example",
            "email": "admin@helpdesk.example",
            "firstname": "Sandbox",
            "lastname": "Admin",
            "phone": "",
            "mobile": "",
            "department": "",
            "active": True,
            "role_ids": (1, 2),
            "entra_key": None,
            "entra_object_type": None,
            "entrasync_profile": None,
        },
    ]
    return pd.DataFrame(base + list(users))


def plan_options(**overrides: Any) -> PlanOptions:
    options: dict[str, Any] = {"profile": PROFILE, "fields": tuple(default_mapping())}
    options.update(overrides)
    return PlanOptions(**options)


def write_config(
    path: Path, info: dict[str, Any], profiles: dict[str, dict[str, Any]] | None = None, **top: Any
) -> Path:
    """A config for the sandbox described by ``info`` (sandbox.json)."""
    entra = {
        "tenant_id": info["tenant_id"],
        "client_id": info["sync_app"]["client_id"],
        "credential": "certificate",
        "authority_host": info["graph_url"],
        "graph_url": info["graph_url"],
    }
    if profiles is None:
        profiles = {"sandbox": {"groups": [{"id": g, "name": n} for n, g in info["groups"].items()]}}
    top.setdefault("audit", {"url": f"sqlite:///{path.parent / 'audit.db'}"})
    config = {
        "tls": {"ca_bundle": info["ca_bundle"]},
        "http": {"backoff_base_s": 0.05, "backoff_max_s": 1.0},
        "profiles": {
            name: {"entra": dict(entra), "zammad": {"url": info["zammad_url"]}, **p} for name, p in profiles.items()
        },
        **top,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def federated_assertion(
    info: dict[str, Any], lifetime_s: int = 600, key_pem: bytes | None = None, kid: str | None = None, **claims: Any
) -> str:
    """A service-account token from the sandbox's workload issuer, as the platform writes it to the
    token file; ``claims`` replace the issuer's (another audience, subject, issuer, ``nbf``), and
    ``key_pem`` / ``kid`` sign it with another key or name another key."""
    import time

    import jwt

    federated = info["federated"]
    now = int(time.time())
    body = {
        "iss": federated["issuer"],
        "sub": federated["subject"],
        "aud": [federated["audience"]],
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    own_key = Path(federated["signing_key_path"]).read_bytes()
    own_kid = jwt.get_unverified_header(Path(federated["token_file"]).read_text())["kid"]
    return jwt.encode(body, key_pem or own_key, algorithm="RS256", headers={"kid": kid or own_kid})
