"""Write the demo's config: two profiles (IT support, sales) syncing into the one sandbox Zammad."""

import json
import sys
from pathlib import Path

import yaml

info = json.loads(Path(sys.argv[1]).read_text())
entra = {"tenant_id": info["tenant_id"], "client_id": info["sync_app"]["client_id"], "credential": "certificate",
         "authority_host": info["graph_url"], "graph_url": info["graph_url"]}
groups = info["groups"]
config = {
    "tls": {"ca_bundle": info["ca_bundle"]},
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "sensor_interval_s": 30},
    "dagster_url": "http://127.0.0.1:3000",
    "profiles": {
        "it-support": {
            "entra": entra, "membership": "transitive",
            "groups": [{"id": groups["IT Support"], "name": "IT Support"}],
            "zammad": {"url": info["zammad_url"]},
            "protected": {"emails": ["agent@helpdesk.example"]},
        },
        "sales": {
            "entra": entra,
            "groups": [{"id": groups["Sales"], "name": "Sales"}],
            "zammad": {"url": info["zammad_url"]},
            "mapping": {
                "email": {"from": ["mail", "otherMails", "userPrincipalName"], "transforms": ["first", "strip", "lower"]},
                "firstname": {"from": ["givenName"]}, "lastname": {"from": ["surname"]},
                "phone": {"from": ["businessPhones"], "transforms": ["first", "strip"]},
                "mobile": {"from": ["mobilePhone"]}, "department": {"from": ["department"]},
                "note": {"from": ["jobTitle"], "transforms": ["strip"]},
            },
        },
    },
}
Path(sys.argv[2]).write_text(yaml.safe_dump(config, sort_keys=False))
print(f"wrote {sys.argv[2]} with profiles: {', '.join(config['profiles'])}")
