"""Write the demo's config: two profiles (IT support, sales) syncing into the one sandbox Zammad.

Usage: demo_config.py SANDBOX_JSON CONFIG_OUT [DAGSTER_URL]; the URL follows DEMO_PORT so that links
in notifications point at the UI the demo actually serves.
"""

import json
import sys
from pathlib import Path

import yaml

from entrasync_pipeline.sandbox.serve import DEMO_GROUP_ACCESS

info = json.loads(Path(sys.argv[1]).read_text())
dagster_url = sys.argv[3] if len(sys.argv) > 3 else "http://127.0.0.1:3000"
entra = {
    "tenant_id": info["tenant_id"],
    "client_id": info["sync_app"]["client_id"],
    "credential": "certificate",
    "authority_host": info["graph_url"],
    "graph_url": info["graph_url"],
}
groups = info["groups"]
config = {
    "tls": {"ca_bundle": info["ca_bundle"]},
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "sensor_interval_s": 30},
    "dagster_url": dagster_url,
    "profiles": {
        "it-support": {
            "entra": entra,
            "membership": "transitive",
            "groups": [
                {"id": groups["IT Support"], "name": "IT Support"},
                # nested in IT Support: its members become agents with access to two Zammad groups
                {
                    "id": groups["IT Support Tier 2"],
                    "name": "IT Support Tier 2",
                    **DEMO_GROUP_ACCESS["IT Support Tier 2"],
                },
            ],
            "zammad": {"url": info["zammad_url"]},
            "organization": {"from": ["companyName"]},  # the seed's companies become organizations
            "protected": {"emails": ["agent@helpdesk.example"]},
        },
        "sales": {
            "entra": entra,
            "groups": [{"id": groups["Sales"], "name": "Sales"}],
            "zammad": {"url": info["zammad_url"]},
            "contacts": "members",  # the supplier's "Vendor Support" contact becomes a customer
            "organization": {"from": ["companyName"]},
            "mapping": {
                "email": {
                    "from": ["mail", "otherMails", "userPrincipalName"],
                    "transforms": ["first", "strip", "lower"],
                },
                "firstname": {"from": ["givenName"]},
                "lastname": {"from": ["surname"]},
                "phone": {"from": ["businessPhones"], "transforms": ["first", "strip"]},
                "mobile": {"from": ["mobilePhone"]},
                "department": {"from": ["department"]},
                "note": {"from": ["jobTitle"], "transforms": ["strip"]},
            },
        },
    },
}
Path(sys.argv[2]).write_text(yaml.safe_dump(config, sort_keys=False))
print(f"wrote {sys.argv[2]} with profiles: {', '.join(config['profiles'])}")
