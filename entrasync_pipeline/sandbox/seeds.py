"""Seeds: the tenant and the helpdesk the sandbox starts from (and returns to on reset).

``demo`` reads like a small company (DESIGN.md; issue "Foundation" §6): about 60 users in three
groups, one nested; a guest with a ``#EXT#`` UPN; a user with only ``otherMails``; a disabled
account; device, group and service-principal members; diacritics, stray whitespace and upper-case
mail; and in Zammad the seeded system/admin/agent users, a customer who matches an Entra user by
email in another case, and customers who are not in Entra. ``bench:N[:share]`` generates a large
tenant for benchmarks, ``share`` of whose users already exist, unchanged, in Zammad. A file seed
(YAML or JSON) has the same keys as ``Seed``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

SEED_NAMESPACE = uuid.UUID("6f1c9a52-3c3e-4f0e-9d7e-0b6a3c1e5a11")


@dataclass
class Seed:
    name: str
    tenant_id: str
    domain: str
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    service_principals: list[dict[str, Any]] = field(default_factory=list)
    org_contacts: list[dict[str, Any]] = field(default_factory=list)
    zammad_users: list[dict[str, Any]] = field(default_factory=list)
    zammad_attributes: list[dict[str, Any]] = field(default_factory=list)
    zammad_groups: list[dict[str, Any]] = field(default_factory=list)  # besides Zammad's own "Users" (id 1)
    zammad_page_cap: int = 1000

    def directory_objects(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        yield "user", self.users
        yield "group", [{k: v for k, v in g.items() if k != "members"} for g in self.groups]
        yield "device", self.devices
        yield "servicePrincipal", self.service_principals
        yield "orgContact", self.org_contacts

    def group_ids(self) -> dict[str, str]:
        return {g["displayName"]: g["id"] for g in self.groups}


def seed_id(seed: str, name: str) -> str:
    return str(uuid.uuid5(SEED_NAMESPACE, f"{seed}:{name}"))


def load_seed(name_or_path: str) -> Seed:
    """Resolve ``demo``, ``bench:N[:share]`` or a path to a YAML/JSON seed file."""
    if name_or_path == "demo":
        return demo_seed()
    if name_or_path.startswith("bench:"):
        parts = name_or_path.split(":")
        share = float(parts[2]) if len(parts) > 2 else 1.0
        return bench_seed(int(parts[1]), share)
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown seed {name_or_path!r}: use 'demo', 'bench:N[:share]' or a seed file")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return Seed(name=data.pop("name", path.stem), **data)


# --- demo ----------------------------------------------------------------------------------------
# Zammad groups besides "Users" (id 1): the demo config grants IT Support Tier 2 (mapped to the
# Agent role) access to "2nd Level"; "Archive" is inactive, as a retired group is.
DEMO_ZAMMAD_GROUPS = [
    {"id": 2, "name": "2nd Level", "active": True},
    {"id": 3, "name": "Service Desk", "active": True},
    {"id": 4, "name": "Archive", "active": False},
]
_DEMO_PEOPLE = [
    # (given, surname, department, extra) -- group membership is assigned below
    ("Anna", "Schmidt", "IT Support", {}),
    ("Jonas", "Weber", "IT Support", {}),
    ("Lena", "Fischer", "IT Support", {}),
    ("Lukas", "Meyer", "IT Support", {}),
    ("Sofia", "Wagner", "IT Support", {}),
    ("Elias", "Becker", "IT Support", {}),
    ("Mia", "Schulz", "IT Support", {}),
    ("Noah", "Hoffmann", "IT Support", {}),
    ("Emma", "Koch", "IT Support", {}),
    ("Paul", "Richter", "IT Support", {}),
    ("José", "Müller", "IT Support", {}),
    ("Zoë", "Łukasiewicz", "IT Support", {}),
    ("Ørjan", "Håland", "IT Support", {}),
    ("  Clara ", " Neumann  ", "IT Support", {}),
    ("Peter", "Smith", "IT Support", {"mail": "PETER.SMITH@CONTOSO.EXAMPLE"}),
    ("Ben", "Schwarz", "IT Support", {}),
    ("Hanna", "Zimmermann", "IT Support", {}),
    ("Finn", "Braun", "IT Support", {}),
    ("Lea", "Krüger", "IT Support", {}),
    ("Tom", "Hartmann", "IT Support", {"accountEnabled": False}),
    # Tier 2 (nested group)
    ("Marie", "Lange", "IT Operations", {}),
    ("Felix", "Schmitt", "IT Operations", {}),
    ("Laura", "Werner", "IT Operations", {}),
    ("David", "Krause", "IT Operations", {}),
    ("Julia", "Meier", "IT Operations", {}),
    ("Simon", "Lehmann", "IT Operations", {}),
    # Sales
    ("Sarah", "Köhler", "Sales", {}),
    ("Max", "Herrmann", "Sales", {}),
    ("Nina", "König", "Sales", {}),
    ("Leon", "Walter", "Sales", {}),
    ("Amelie", "Mayer", "Sales", {}),
    ("Tim", "Huber", "Sales", {}),
    ("Johanna", "Kaiser", "Sales", {}),
    ("Moritz", "Fuchs", "Sales", {}),
    ("Lina", "Peters", "Sales", {}),
    ("Jan", "Lang", "Sales", {}),
    ("Emily", "Scholz", "Sales", {}),
    ("Niklas", "Möller", "Sales", {}),
    ("Charlotte", "Weiß", "Sales", {}),
    ("Philipp", "Jung", "Sales", {}),
    ("Marlene", "Hahn", "Sales", {}),
    ("Erik", "Schubert", "Sales", {}),
    ("Ida", "Vogel", "Sales", {}),
    ("Oskar", "Friedrich", "Sales", {}),
    ("Greta", "Keller", "Sales", {}),
    ("Henri", "Günther", "Sales", {}),
    ("Frieda", "Frank", "Sales", {}),
    ("Anton", "Berger", "Sales", {}),
    ("Mila", "Winkler", "Sales", {}),
    ("Karl", "Roth", "Sales", {}),
    ("Luisa", "Beck", "Sales", {}),
    ("Jakob", "Lorenz", "Sales", {}),
    # Not in any synced group
    ("Victoria", "Baumann", "Finance", {}),
    ("Samuel", "Franke", "Finance", {}),
]


def _ascii(text: str) -> str:
    table = str.maketrans(
        {
            "ä": "ae",
            "ö": "oe",
            "ü": "ue",
            "ß": "ss",
            "é": "e",
            "ë": "e",
            "ø": "o",
            "å": "a",
            "ł": "l",
            "Ł": "l",
            "Ø": "o",
            "Å": "a",
        }
    )
    return text.strip().lower().translate(table)


def _demo_user(
    seed: str, domain: str, given: str, surname: str, dept: str, idx: int, extra: dict[str, Any]
) -> dict[str, Any]:
    alias = f"{_ascii(given)}.{_ascii(surname)}"
    user = {
        "id": seed_id(seed, alias),
        "displayName": f"{given.strip()} {surname.strip()}",
        "givenName": given,
        "surname": surname,
        "mail": f"{alias}@{domain}",
        "userPrincipalName": f"{alias}@{domain}",
        "businessPhones": [f"+49 30 5550{idx:03d}"],
        "mobilePhone": f"+49 170 555{idx:04d}",
        "jobTitle": "Support Engineer" if dept.startswith("IT") else "Account Manager",
        "officeLocation": "Berlin",
        "preferredLanguage": "de-DE",
        "department": dept,
        "companyName": "Contoso Sandbox GmbH",
        "employeeId": f"E{1000 + idx}",
        "accountEnabled": True,
        "userType": "Member",
        "otherMails": [],
        "createdDateTime": "2024-01-15T08:00:00Z",
    }
    user.update(extra)
    return user


def demo_seed() -> Seed:
    name, domain = "demo", "contoso.example"
    users = [_demo_user(name, domain, g, s, d, i, e) for i, (g, s, d, e) in enumerate(_DEMO_PEOPLE)]
    by_dept: dict[str, list[str]] = {}
    for user in users:
        by_dept.setdefault(user["department"], []).append(user["id"])
    quirky = _demo_quirky_users(name, domain)
    users += quirky
    device = {
        "id": seed_id(name, "device:ws-042"),
        "displayName": "WS-042",
        "deviceId": seed_id(name, "dev"),
        "accountEnabled": True,
        "operatingSystem": "Windows",
        "operatingSystemVersion": "11",
    }
    sp = {
        "id": seed_id(name, "sp:ticket-bot"),
        "displayName": "Ticket Bot",
        "appId": seed_id(name, "app:bot"),
        "accountEnabled": True,
        "servicePrincipalType": "Application",
    }
    contact = {  # an orgContact (mail contact from Exchange Online) in Sales
        "id": seed_id(name, "contact:vendor"),
        "displayName": "Vendor Support",
        "mail": "support@vendor.example",
        "mailNickname": "vendor-support",
        "givenName": "Vendor",
        "surname": "Support",
        "companyName": "Vendor Ltd",
        "department": "Customer Support",
        "jobTitle": "Support Desk",
        "phones": [
            {"number": "+44 20 7946 0018", "type": "business"},
            {"number": "+44 7700 900123", "type": "mobile"},
        ],
        "addresses": [
            {
                "city": "London",
                "countryOrRegion": "United Kingdom",
                "officeLocation": None,
                "postalCode": "EC1A 1BB",
                "state": None,
                "street": "1 Example Street",
            }
        ],
        "proxyAddresses": ["SMTP:support@vendor.example"],
    }
    tier2 = seed_id(name, "group:it-support-tier-2")
    it_support = seed_id(name, "group:it-support")
    sales = seed_id(name, "group:sales")
    groups = [
        {
            "id": it_support,
            "displayName": "IT Support",
            "description": "First-line IT support",
            "mailNickname": "it-support",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "createdDateTime": "2023-11-02T09:15:00Z",
            "members": by_dept["IT Support"] + [q["id"] for q in quirky[:3]] + [tier2, device["id"], sp["id"]],
        },
        {
            "id": tier2,
            "displayName": "IT Support Tier 2",
            "description": "Second-line operations",
            "mailNickname": "it-support-tier-2",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "createdDateTime": "2023-11-02T09:20:00Z",
            "members": by_dept["IT Operations"],
        },
        {
            "id": sales,
            "displayName": "Sales",
            "description": "Sales team",
            "mail": "sales@contoso.example",
            "mailNickname": "sales",
            "mailEnabled": True,
            "securityEnabled": False,
            "groupTypes": ["Unified"],
            "createdDateTime": "2023-06-20T14:05:00Z",
            "members": by_dept["Sales"] + [q["id"] for q in quirky[3:]] + [contact["id"]],
        },
    ]
    zammad_users = _zammad_base_users() + [
        # matches Entra's lena.fischer@contoso.example in another case: adopted, not duplicated
        {
            "login": "lena.fischer",
            "firstname": "Lena",
            "lastname": "Fischer",
            "email": "Lena.Fischer@Contoso.example",
            "role_ids": [3],
        },
        {
            "login": "walk-in.customer@example.org",
            "firstname": "Walter",
            "lastname": "Kunde",
            "email": "walk-in.customer@example.org",
            "role_ids": [3],
            "has_tickets": True,
        },
        {
            "login": "partner@supplier.example",
            "firstname": "Petra",
            "lastname": "Partner",
            "email": "partner@supplier.example",
            "role_ids": [3],
        },
        {
            "login": "former.contractor@example.net",
            "firstname": "Fritz",
            "lastname": "Former",
            "email": "former.contractor@example.net",
            "role_ids": [3],
            "active": False,
        },
    ]
    return Seed(
        name=name,
        tenant_id=seed_id(name, "tenant"),
        domain=domain,
        users=users,
        groups=groups,
        devices=[device],
        service_principals=[sp],
        org_contacts=[contact],
        zammad_users=zammad_users,
        zammad_groups=DEMO_ZAMMAD_GROUPS,
    )


def _demo_quirky_users(seed: str, domain: str) -> list[dict[str, Any]]:
    base = len(_DEMO_PEOPLE)
    guest = _demo_user(
        seed,
        domain,
        "Grace",
        "Guest",
        "External",
        base,
        {
            "userPrincipalName": f"grace_partner.example#EXT#@{domain.split('.')[0]}.onmicrosoft.com",
            "mail": "grace@partner.example",
            "userType": "Guest",
            "otherMails": ["grace@partner.example"],
            "businessPhones": [],
            "mobilePhone": None,
            "employeeId": None,
            "companyName": "Partner Ltd",
        },
    )
    guest_no_mail = _demo_user(
        seed,
        domain,
        "Gus",
        "Visitor",
        "External",
        base + 1,
        {
            "userPrincipalName": f"gus_visitor.example#EXT#@{domain.split('.')[0]}.onmicrosoft.com",
            "mail": None,
            "userType": "Guest",
            "otherMails": [],
            "businessPhones": [],
            "mobilePhone": None,
        },
    )
    other_mails = _demo_user(
        seed,
        domain,
        "Olga",
        "Othermail",
        "IT Support",
        base + 2,
        {"mail": None, "otherMails": ["olga.private@mailbox.example"], "userPrincipalName": f"olga.othermail@{domain}"},
    )
    display_only = _demo_user(
        seed,
        domain,
        "Dana",
        "Displayname",
        "Sales",
        base + 3,
        {"givenName": None, "surname": None, "displayName": "Dana Displayname"},
    )
    no_phone = _demo_user(
        seed,
        domain,
        "Ulf",
        "Unlisted",
        "Sales",
        base + 4,
        {"businessPhones": [], "mobilePhone": None, "department": None, "jobTitle": None},
    )
    return [guest, guest_no_mail, other_mails, display_only, no_phone]


def _zammad_base_users() -> list[dict[str, Any]]:
    """Users a fresh Zammad has, plus the admin that owns the sync token and one agent."""
    return [
        {"id": 1, "login": "-", "firstname": "-", "lastname": "", "email": "", "active": False, "role_ids": [3]},
        {
            "id": 2,
            "login": "nicole.braun@zammad.org",
            "firstname": "Nicole",
            "lastname": "Braun",
            "email": "nicole.braun@zammad.org",
            "role_ids": [3],
            "has_tickets": True,
            "organization_id": 1,
        },
        {
            "id": 3,
            "login": "admin@helpdesk.example",
            "firstname": "Sandbox",
            "lastname": "Admin",
            "email": "admin@helpdesk.example",
            "role_ids": [1, 2],
            "group_ids": {"1": ["full"]},  # Zammad's setup gives its first admin full access to "Users"
            "password": "sandbox-admin-password",
            "token_owner": True,
        },
        {
            "id": 4,
            "login": "agent@helpdesk.example",
            "firstname": "Helga",
            "lastname": "Agent",
            "email": "agent@helpdesk.example",
            "role_ids": [2],
            "group_ids": {"1": ["full"]},
            "password": "sandbox-agent-password",
        },
    ]


# --- bench ---------------------------------------------------------------------------------------
def bench_user(index: int, domain: str = "bench.example") -> dict[str, Any]:
    alias = f"user{index:06d}"
    return {
        "id": str(uuid.uuid5(SEED_NAMESPACE, f"bench:{alias}")),
        "displayName": f"Bench User{index:06d}",
        "givenName": "Bench",
        "surname": f"User{index:06d}",
        "mail": f"{alias}@{domain}",
        "userPrincipalName": f"{alias}@{domain}",
        "businessPhones": [f"+1 555 {index:07d}"],
        "mobilePhone": None,
        "jobTitle": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "department": f"Dept {index % 50:02d}",
        "accountEnabled": True,
        "userType": "Member",
        "otherMails": [],
    }


def bench_zammad_user(user: dict[str, Any]) -> dict[str, Any]:
    """The Zammad record an earlier sync with the default mapping would have written."""
    return {
        "login": user["mail"],
        "email": user["mail"],
        "firstname": user["givenName"],
        "lastname": user["surname"],
        "phone": user["businessPhones"][0] if user["businessPhones"] else "",
        "mobile": user["mobilePhone"] or "",
        "department": user["department"],
        "role_ids": [3],
        "entra_key": user["id"],
        "entra_object_type": "user",
        "entrasync_profile": "bench",
    }


def bench_seed(count: int, share_present: float = 1.0) -> Seed:
    users = [bench_user(i) for i in range(count)]
    group = {
        "id": str(uuid.uuid5(SEED_NAMESPACE, "bench:group:all")),
        "displayName": "All Staff",
        "description": "Everyone",
        "members": [u["id"] for u in users],
    }
    present = int(count * share_present)
    zammad = _zammad_base_users() + [bench_zammad_user(u) for u in users[:present]]
    return Seed(
        name=f"bench-{count}",
        tenant_id=str(uuid.uuid5(SEED_NAMESPACE, "bench:tenant")),
        domain="bench.example",
        users=users,
        groups=[group],
        zammad_users=zammad,
        zammad_attributes=ENTRASYNC_ATTRIBUTES_MIGRATED,
    )


# Attributes as `entrasync zammad-setup` creates them, already migrated (for bench seeds).
ENTRASYNC_ATTRIBUTES_MIGRATED = [
    {
        "name": "entra_key",
        "display": "Entra object id",
        "data_type": "input",
        "data_option": {"type": "text", "maxlength": 64, "default": ""},
        "migrated": True,
    },
    {
        "name": "entra_object_type",
        "display": "Entra object type",
        "data_type": "select",
        "data_option": {"options": {"user": "User", "contact": "Contact"}, "default": ""},
        "migrated": True,
    },
    {
        "name": "entrasync_profile",
        "display": "entrasync profile",
        "data_type": "input",
        "data_option": {"type": "text", "maxlength": 64, "default": ""},
        "migrated": True,
    },
]
