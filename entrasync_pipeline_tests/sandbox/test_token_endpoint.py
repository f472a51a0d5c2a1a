"""The emulated Entra token endpoint answers msal 1.39 like Entra does (reference §5).

msal talks to it unmodified over TLS: discovery, client secret, certificate (client_assertion
checked against the registered certificate), its token cache, and Entra-shaped errors.
"""

from __future__ import annotations

from pathlib import Path

import jwt
import msal
import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
ERROR_KEYS = {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id"}


def _msal(
    sandbox: Sandbox, credential: object, client_id: str | None = None, authority: str | None = None
) -> msal.ConfidentialClientApplication:
    session = sandbox.session()
    return msal.ConfidentialClientApplication(
        client_id or sandbox.info["sync_app"]["client_id"],
        client_credential=credential,
        authority=authority or sandbox.info["authority"],
        instance_discovery=False,
        http_client=session,
    )


def _cert_credential(sandbox: Sandbox) -> dict[str, str]:
    app = sandbox.info["sync_app"]
    return {
        "private_key": Path(app["private_key_path"]).read_text(),
        "public_certificate": Path(app["certificate_path"]).read_text(),
    }


def test_msal_gets_a_token_with_the_client_secret(sandbox: Sandbox) -> None:
    result = _msal(sandbox, sandbox.info["sync_app"]["client_secret"]).acquire_token_for_client(GRAPH_SCOPE)
    assert result["token_source"] == "identity_provider"
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599 and result["ext_expires_in"] == 3599
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == sandbox.info["tenant_id"]
    assert sorted(claims["roles"]) == ["GroupMember.Read.All", "User.Read.All"]
    assert claims["exp"] > claims["iat"]


def test_msal_gets_a_token_with_the_certificate(sandbox: Sandbox) -> None:
    result = _msal(sandbox, _cert_credential(sandbox)).acquire_token_for_client(GRAPH_SCOPE)
    assert "access_token" in result, result


def test_a_certificate_that_is_not_registered_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    from entrasync_pipeline.sandbox.tls import make_client_certificate

    other = make_client_certificate(tmp_path, "intruder")
    credential = {
        "private_key": other.private_key_path.read_text(),
        "public_certificate": other.certificate_pem.decode(),
    }
    result = _msal(sandbox, credential).acquire_token_for_client(GRAPH_SCOPE)
    assert result["error"] == "invalid_client"
    assert 700027 in result["error_codes"]


def test_msal_reuses_its_cache_without_a_second_request(sandbox: Sandbox) -> None:
    app = _msal(sandbox, sandbox.info["sync_app"]["client_secret"])
    app.acquire_token_for_client(GRAPH_SCOPE)
    second = app.acquire_token_for_client(GRAPH_SCOPE)
    assert second["token_source"] == "cache"
    assert sandbox.stats("graph")["requests"]["POST /{tenant}/oauth2/v2.0/token"] == 1


def test_wrong_secret_is_invalid_client_with_entra_error_keys(sandbox: Sandbox) -> None:
    result = _msal(sandbox, "not-the-secret").acquire_token_for_client(GRAPH_SCOPE)
    assert ERROR_KEYS <= set(result)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "not-the-secret" not in result["error_description"]


def test_unknown_client_is_unauthorized_client(sandbox: Sandbox) -> None:
    result = _msal(sandbox, "x", client_id="00000000-0000-0000-0000-000000000000").acquire_token_for_client(GRAPH_SCOPE)
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_unknown_tenant_fails_in_the_msal_constructor(sandbox: Sandbox) -> None:
    authority = f"{sandbox.info['graph_url']}/11111111-1111-1111-1111-111111111111"
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        _msal(sandbox, "x", authority=authority)


def test_token_request_for_an_unknown_tenant_is_invalid_request(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.post(
        f"{sandbox.info['graph_url']}/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "x",
            "client_secret": "y",
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert ERROR_KEYS <= set(body) and body["error"] == "invalid_request" and body["error_codes"] == [90002]


def test_wrong_scope_is_invalid_scope(sandbox: Sandbox) -> None:
    app = _msal(sandbox, sandbox.info["sync_app"]["client_secret"])
    result = app.acquire_token_for_client(["https://outlook.office.com/Mail.Read"])
    assert result["error"] == "invalid_scope"
    assert result["error_codes"] == [70011]


def test_discovery_document_has_what_msal_requires(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(f"{sandbox.info['authority']}/v2.0/.well-known/openid-configuration")
    doc = response.json()
    assert doc["token_endpoint"] == f"{sandbox.info['authority']}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].startswith("https://")
    assert doc["issuer"] == f"{sandbox.info['authority']}/v2.0"
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    keys = http.get(doc["jwks_uri"]).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA"


def test_token_responses_are_not_cacheable(sandbox: Sandbox, http: requests.Session) -> None:
    app = sandbox.info["sync_app"]
    response = http.post(
        f"{sandbox.info['authority']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert response.headers["Cache-Control"] == "no-store, no-cache"
    assert response.headers["Pragma"] == "no-cache"


def test_tls_is_verified_against_the_sandbox_ca(sandbox: Sandbox) -> None:
    with requests.Session() as plain:
        plain.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(f"{sandbox.info['authority']}/v2.0/.well-known/openid-configuration", timeout=10)
