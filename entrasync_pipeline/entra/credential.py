"""The app's credential: one msal confidential client per process and app, built lazily.

msal does network I/O in its constructor (OIDC discovery) and keeps its token cache per
instance, so the instance is cached per (authority, client id) for the life of the process
(reference/microsoft-graph-and-msal.md §5.1). ``instance_discovery=False`` keeps msal from
calling login.microsoftonline.com for custom hosts; our own verified session is its HTTP client,
so the token endpoint is reached through the same proxy and TLS rules as Graph (msal ignores its own
``verify``/``proxies`` when given an http client).

Three credentials: a client secret, a certificate (its key already decrypted by ``settings``), and
a federated token (workload identity): msal takes a callable ``client_assertion`` and calls it for
each token request, and the callable reads the token file again every time, because the platform
(AKS, a CI runner) replaces it before it expires. The assertion is never logged or put in a message.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import msal
import requests

from entrasync_pipeline.entra.errors import EntraAuthError, GraphTransportError
from entrasync_pipeline.settings import EntraCredentialMaterial, EntraSettings
from entrasync_pipeline.transport import HttpResponse, NoResponse, Transport

_APPS: dict[tuple[str, str, str], msal.ConfidentialClientApplication] = {}
_APPS_LOCK = threading.Lock()


class _MsalResponse:
    """The response shape msal's HTTP client interface expects (msal/oauth2cli/http.py)."""

    def __init__(self, response: HttpResponse) -> None:
        self.status_code = response.status
        self.headers = response.headers
        self.text = response.body.decode("utf-8", "replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP {self.status_code}")


class _MsalHttpClient:
    """Routes msal's requests through our transport, so token requests get the same retries.

    A client-credentials token request has no side effect, so it is retried like a read: msal
    then only ever sees final answers and never replays a throttled one from its own cache.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _send(self, method: str, url: str, route: str, **kwargs: Any) -> _MsalResponse:
        """The final answer, error statuses included: msal reads the token endpoint's error body itself."""
        try:
            return _MsalResponse(self._transport.send(method, url, route=route, idempotent=True, **kwargs))
        except NoResponse as exc:
            raise GraphTransportError(method, route, exc.kind, exc.detail) from None

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any) -> _MsalResponse:
        return self._send("POST", url, "/{tenant}/oauth2/v2.0/token", params=params, data=data, headers=headers)

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> _MsalResponse:
        return self._send("GET", url, "/{tenant}/v2.0/.well-known/openid-configuration", params=params, headers=headers)

    def close(self) -> None:
        """msal may close its client; the transport belongs to the Graph client."""


class _FederatedAssertion:
    """The client assertion msal asks for on each token request: the token file as it is now."""

    def __init__(self, path: Path, env_name: str) -> None:
        self.path, self.env_name = path, env_name

    def __call__(self) -> str:
        try:
            assertion = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a token (not ASCII)"
            raise EntraAuthError(
                "federated_token_unreadable",
                f"cannot read the federated token file {self.path} ({self.env_name}): {reason}",
            ) from None
        if not assertion:
            raise EntraAuthError(
                "federated_token_unreadable", f"the federated token file {self.path} ({self.env_name}) is empty"
            )
        return assertion


class EntraCredential:
    """Acquires Graph access tokens with client credentials (secret, certificate or federated token)."""

    def __init__(self, entra: EntraSettings, material: EntraCredentialMaterial, transport: Transport) -> None:
        self.entra, self._material = entra, material
        self._http = _MsalHttpClient(transport)

    def _fingerprint(self) -> str:
        m = self._material
        raw = (m.secret.reveal() if m.secret else "") + (m.certificate_pem or "") + str(m.federated_token_file or "")
        return hashlib.sha256(raw.encode()).hexdigest()

    def _app(self) -> msal.ConfidentialClientApplication:
        key = (self.entra.authority, self.entra.client_id, self._fingerprint())
        with _APPS_LOCK:
            app = _APPS.get(key)
            if app is None:
                app = self._build()
                _APPS[key] = app
            return app

    def _build(self) -> msal.ConfidentialClientApplication:
        m = self._material
        credential: Any
        if m.kind == "secret":
            assert m.secret is not None
            credential = m.secret.reveal()
        elif m.kind == "federated":
            assert m.federated_token_file is not None
            credential = {
                "client_assertion": _FederatedAssertion(m.federated_token_file, str(m.federated_token_file_env))
            }
        else:
            assert m.private_key is not None and m.certificate_pem is not None
            credential = {"private_key": m.private_key.reveal(), "public_certificate": m.certificate_pem}
        try:
            return msal.ConfidentialClientApplication(
                self.entra.client_id,
                client_credential=credential,
                authority=self.entra.authority,
                instance_discovery=False,
                http_client=self._http,
            )
        except ValueError as exc:
            raise EntraAuthError("invalid_authority", f"{self.entra.authority}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise GraphTransportError(
                "GET", "/{tenant}/v2.0/.well-known/openid-configuration", "connection", type(exc).__name__
            ) from None
        except msal.exceptions.MsalServiceError as exc:
            raise EntraAuthError("discovery_failed", str(exc)[:200]) from None

    def token(self) -> str:
        """A valid access token (from msal's cache when it has one)."""
        try:
            result = self._app().acquire_token_for_client([self.entra.scope])
        except requests.exceptions.RequestException as exc:
            raise GraphTransportError("POST", "/{tenant}/oauth2/v2.0/token", "connection", type(exc).__name__) from None
        except msal.exceptions.MsalServiceError as exc:
            # msal raises for 5xx and replays the answer for Retry-After seconds (reference §5.1).
            raise EntraAuthError("service_error", str(exc)[:200]) from None
        if "access_token" not in result:
            raise EntraAuthError(
                str(result.get("error")), str(result.get("error_description", ""))[:500], result.get("correlation_id")
            )
        return str(result["access_token"])

    def drop_cached_token(self) -> None:
        """Forget the cached token so the next call fetches a new one (after a 401 expiry)."""
        self._app().remove_tokens_for_client()
