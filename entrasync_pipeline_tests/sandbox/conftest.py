"""A small Graph caller for the emulator's tests: real HTTPS to the session's sandbox, the sync
app's token for reads, the admin app's for writes, and checks of Graph's error shape (§4.1)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox


class GraphCaller:
    def __init__(self, sandbox: Sandbox, http: requests.Session, token: str) -> None:
        self.sandbox, self.http, self.token = sandbox, http, token
        self._admin_token: str | None = None

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.sandbox.admin_token()
        return self._admin_token

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.sandbox.info['graph_url']}/v1.0{path}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, token: str | None = None, **params: Any
    ) -> requests.Response:
        auth = {"Authorization": f"Bearer {token or self.token}"}
        return self.http.get(
            self.url(path),
            params={f"${k}": v for k, v in params.items()} or None,
            headers={**auth, **(headers or {})},
            timeout=30,
        )

    def post(self, path: str, body: Any, token: str | None = None) -> requests.Response:
        auth = {"Authorization": f"Bearer {token or self.token}"}
        return self.http.post(self.url(path), json=body, headers=auth, timeout=30)

    def write(self, method: str, path: str, body: Any = None) -> requests.Response:
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        return self.http.request(method, self.url(path), json=body, headers=auth, timeout=30)

    def batch(self, steps: list[dict[str, Any]], token: str | None = None) -> requests.Response:
        return self.post("/$batch", {"requests": steps}, token=token)

    def group(self, name: str) -> str:
        return self.sandbox.info["groups"][name]

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items, response = [], self.get(path, **params)
        while True:
            body = response.json()
            items += body["value"]
            if "@odata.nextLink" not in body:
                return items
            response = self.get(body["@odata.nextLink"])

    def delta_round(
        self, url: str, headers: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
        """Follow a delta round to its deltaLink: (items, deltaLink, every page's body)."""
        items: list[dict[str, Any]] = []
        pages: list[dict[str, Any]] = []
        response = self.get(url, headers=headers)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body)
            items += body["value"]
            if "@odata.deltaLink" in body:
                return items, body["@odata.deltaLink"], pages
            response = self.get(body["@odata.nextLink"], headers=headers)

    def create_users(self, count: int, prefix: str = "temp") -> list[str]:
        """Create users through the write API, 20 per $batch; returns their ids."""
        ids: list[str] = []
        for start in range(0, count, 20):
            steps = [
                {
                    "id": str(i),
                    "method": "POST",
                    "url": "/users",
                    "headers": {"Content-Type": "application/json"},
                    "body": {
                        "accountEnabled": True,
                        "displayName": f"{prefix.title()} {i}",
                        "mailNickname": f"{prefix}{i}",
                        "userPrincipalName": f"{prefix}{i}@contoso.example",
                        "passwordProfile": {"password": "x"},
                    },
                }
                for i in range(start, min(start + 20, count))
            ]
            response = self.batch(steps, token=self.admin_token)
            assert response.status_code == 200, response.text
            created = sorted(response.json()["responses"], key=lambda r: int(r["id"]))
            assert all(r["status"] == 201 for r in created), created
            ids += [r["body"]["id"] for r in created]
        return ids

    def user_in(self, department: str) -> str:
        return next(i for i, o in self.sandbox.state("graph")["objects"].items() if o.get("department") == department)

    def member_ref(self, object_id: str) -> dict[str, str]:
        return {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{object_id}"}


@pytest.fixture
def graph(sandbox: Sandbox, http: requests.Session) -> GraphCaller:
    return GraphCaller(sandbox, http, sandbox.sync_token())


def assert_graph_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """A Graph error body (§4.1) with the given status and code; returns ``error``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    return error
