"""The two references, each run in its own process on the same sandbox and data.

floor: a bare loop that only downloads every Graph page and every Zammad page with requests
(the I/O any correct sync must do). naive: what the n8n template does, sequentially: for each
Entra user one Zammad search by email and one write (create when absent, update otherwise).
"""

from __future__ import annotations

import json
import sys
import time

import requests


def _session(info: dict) -> requests.Session:
    session = requests.Session()
    session.verify = info["ca_bundle"]
    session.trust_env = False
    return session


def app_token(session: requests.Session, info: dict, app: str = "sync_app") -> str:
    """A Graph token for one of the sandbox's app registrations (``sync_app`` reads, ``admin_app`` writes)."""
    response = session.post(
        f"{info['authority']}/oauth2/v2.0/token",
        data={
            "client_id": info[app]["client_id"],
            "client_secret": info[app]["client_secret"],
            "grant_type": "client_credentials",
            "scope": f"{info['graph_url']}/.default",  # the sandbox grants only its own Graph
        },
    )
    return response.json()["access_token"]


def _graph_users(session: requests.Session, info: dict, group: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {app_token(session, info)}"}
    url = f"{info['graph_url']}/v1.0/groups/{group}/members?$select=id,mail,givenName,surname,department&$top=999"
    users = []
    while url:
        body = session.get(url, headers=headers).json()
        users += body["value"]
        url = body.get("@odata.nextLink")
    return users


def floor(info: dict, group: str) -> dict:
    session = _session(info)
    started = time.perf_counter()
    graph = _graph_users(session, info, group)
    zammad, page = 0, 1
    headers = {"Authorization": f"Token token={info['zammad_token']}"}
    while True:
        batch = session.get(
            f"{info['zammad_url']}/api/v1/users", params={"page": page, "per_page": 1000}, headers=headers
        ).json()
        if not batch:
            break
        zammad += len(batch)
        page += 1
    return {"wall_s": round(time.perf_counter() - started, 3), "graph_users": len(graph), "zammad_users": zammad}


def naive(info: dict, group: str, limit: int) -> dict:
    session = _session(info)
    started = time.perf_counter()
    users = _graph_users(session, info, group)
    read_s = time.perf_counter() - started
    headers = {"Authorization": f"Token token={info['zammad_token']}"}
    sample = users[:limit]
    t0 = time.perf_counter()
    requests_made = 0
    for user in sample:
        hits = session.get(
            f"{info['zammad_url']}/api/v1/users/search", params={"query": user["mail"], "limit": 1}, headers=headers
        ).json()
        body = {
            "email": user["mail"],
            "firstname": user["givenName"],
            "lastname": user["surname"],
            "department": user["department"],
            "entra_key": user["id"],
            "entra_object_type": "user",
        }
        if hits:
            session.put(f"{info['zammad_url']}/api/v1/users/{hits[0]['id']}", json=body, headers=headers)
        else:
            session.post(f"{info['zammad_url']}/api/v1/users", json=body, headers=headers)
        requests_made += 2
    per_user = (time.perf_counter() - t0) / max(1, len(sample))
    return {
        "sampled_users": len(sample),
        "total_users": len(users),
        "read_s": round(read_s, 3),
        "per_user_s": per_user,
        "wall_s": round(read_s + per_user * len(users), 3),
        "requests": requests_made + (len(users) + 998) // 999 + 1,
        "extrapolated": len(sample) < len(users),
        "requests_extrapolated": 2 * len(users) + (len(users) + 998) // 999 + 1,
    }


if __name__ == "__main__":
    info = json.loads(open(sys.argv[2]).read())
    group = info["groups"]["All Staff"]
    if sys.argv[1] == "floor":
        print(json.dumps(floor(info, group)))
    else:
        print(json.dumps(naive(info, group, int(sys.argv[3]))))
