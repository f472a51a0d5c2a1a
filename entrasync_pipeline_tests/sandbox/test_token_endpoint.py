"""The emulated Entra token endpoint answers msal 1.39 like Entra does (reference §5).

msal talks to it unmodified over TLS: discovery, client secret, certificate (client_assertion
checked against the registered certificate), its token cache, and Entra-shaped errors.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import msal
import pytest
import requests

from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import federated_assertion

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


def _scope(sandbox: Sandbox) -> list[str]:
    """The sandbox's own Graph is the only resource it grants (as a national cloud grants its own)."""
    return [f"{sandbox.info['graph_url']}/.default"]


def _cert_credential(sandbox: Sandbox) -> dict[str, str]:
    app = sandbox.info["sync_app"]
    return {
        "private_key": Path(app["private_key_path"]).read_text(),
        "public_certificate": Path(app["certificate_path"]).read_text(),
    }


def test_msal_gets_a_token_with_the_client_secret(sandbox: Sandbox) -> None:
    result = _msal(sandbox, sandbox.info["sync_app"]["client_secret"]).acquire_token_for_client(_scope(sandbox))
    assert result["token_source"] == "identity_provider"
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599 and result["ext_expires_in"] == 3599
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == sandbox.info["graph_url"]
    assert claims["tid"] == sandbox.info["tenant_id"]
    assert sorted(claims["roles"]) == ["GroupMember.Read.All", "OrgContact.Read.All", "User.Read.All"]
    assert claims["exp"] > claims["iat"]


def test_msal_gets_a_token_with_the_certificate(sandbox: Sandbox) -> None:
    result = _msal(sandbox, _cert_credential(sandbox)).acquire_token_for_client(_scope(sandbox))
    assert "access_token" in result, result


def test_a_certificate_that_is_not_registered_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    from entrasync_pipeline.sandbox.tls import make_client_certificate

    other = make_client_certificate(tmp_path, "intruder")
    credential = {
        "private_key": other.private_key_path.read_text(),
        "public_certificate": other.certificate_pem.decode(),
    }
    result = _msal(sandbox, credential).acquire_token_for_client(_scope(sandbox))
    assert result["error"] == "invalid_client"
    assert 700027 in result["error_codes"]


def test_msal_reuses_its_cache_without_a_second_request(sandbox: Sandbox) -> None:
    app = _msal(sandbox, sandbox.info["sync_app"]["client_secret"])
    app.acquire_token_for_client(_scope(sandbox))
    second = app.acquire_token_for_client(_scope(sandbox))
    assert second["token_source"] == "cache"
    assert sandbox.stats("graph")["requests"]["POST /{tenant}/oauth2/v2.0/token"] == 1


def test_wrong_secret_is_invalid_client_with_entra_error_keys(sandbox: Sandbox) -> None:
    result = _msal(sandbox, "not-the-secret").acquire_token_for_client(_scope(sandbox))
    assert ERROR_KEYS <= set(result)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "not-the-secret" not in result["error_description"]


def test_unknown_client_is_unauthorized_client(sandbox: Sandbox) -> None:
    result = _msal(sandbox, "x", client_id="00000000-0000-0000-0000-000000000000").acquire_token_for_client(
        _scope(sandbox)
    )
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
            "scope": f"{sandbox.info['graph_url']}/.default",
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
            "scope": f"{sandbox.info['graph_url']}/.default",
        },
    )
    assert response.headers["Cache-Control"] == "no-store, no-cache"
    assert response.headers["Pragma"] == "no-cache"


def test_tls_is_verified_against_the_sandbox_ca(sandbox: Sandbox) -> None:
    with requests.Session() as plain:
        plain.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            plain.get(f"{sandbox.info['authority']}/v2.0/.well-known/openid-configuration", timeout=10)


# --- the only resource is the sandbox's own Graph -------------------------------------------------
@pytest.mark.parametrize("with_port", [True, False], ids=["with-port", "without-port"])
def test_the_own_graph_base_is_granted_with_or_without_the_port(sandbox: Sandbox, with_port: bool) -> None:
    base = sandbox.info["graph_url"] if with_port else sandbox.info["graph_url"].rsplit(":", 1)[0]
    result = _msal(sandbox, sandbox.info["sync_app"]["client_secret"]).acquire_token_for_client([f"{base}/.default"])
    assert "access_token" in result, result


def test_graphs_application_id_is_granted(sandbox: Sandbox) -> None:
    app = _msal(sandbox, sandbox.info["sync_app"]["client_secret"])
    result = app.acquire_token_for_client(["00000003-0000-0000-c000-000000000000/.default"])
    assert "access_token" in result, result


@pytest.mark.parametrize(
    "resource", ["https://graph.microsoft.com", "https://graph.microsoft.us", "https://127.0.0.1:1"]
)
def test_another_graph_is_invalid_resource_as_in_a_national_cloud(sandbox: Sandbox, resource: str) -> None:
    result = _msal(sandbox, sandbox.info["sync_app"]["client_secret"]).acquire_token_for_client(
        [f"{resource}/.default"]
    )
    assert ERROR_KEYS <= set(result)
    assert result["error"] == "invalid_resource"
    assert result["error_codes"] == [500011]
    assert f"The resource principal named {resource} was not found" in result["error_description"]


# --- federated credentials (workload identity) ----------------------------------------------------
def _federated(sandbox: Sandbox, assertion: str) -> dict[str, object]:
    return _msal(sandbox, {"client_assertion": lambda: assertion}).acquire_token_for_client(_scope(sandbox))


def test_the_token_file_holds_a_valid_assertion_for_the_sync_app(sandbox: Sandbox) -> None:
    federated = sandbox.info["federated"]
    assertion = Path(federated["token_file"]).read_text()
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert (claims["iss"], claims["sub"]) == (federated["issuer"], federated["subject"])
    assert claims["aud"] == ["api://AzureADTokenExchange"] == [federated["audience"]]
    result = _federated(sandbox, assertion)
    assert "access_token" in result, result
    token = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert token["appid"] == sandbox.info["sync_app"]["client_id"]


def _other_key() -> bytes:
    from cryptography.hazmat.primitives import serialization

    from entrasync_pipeline.sandbox.tls import new_signing_key

    return new_signing_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("claims", "code", "words"),
    [
        (
            {"iss": "https://oidc.example.invalid/other/"},
            700211,
            "assertion issuer 'https://oidc.example.invalid/other/'",
        ),
        ({"lifetime_s": -600}, 700024, "not within its valid time range"),
        ({"nbf_ahead_s": 3600}, 700024, "not within its valid time range"),
        ({"aud": ["api://SomethingElse"]}, 700212, "assertion audience 'api://SomethingElse'"),
        ({"sub": "system:serviceaccount:other:intruder"}, 700213, "subject 'system:serviceaccount:other:intruder'"),
        ({"other_key": True}, 700027, "failed signature validation"),
        ({"kid": "unknown-kid"}, 7000272, "could not be found in the metadata of identity provider"),
    ],
    ids=["other-issuer", "expired", "not-yet-valid", "wrong-audience", "wrong-subject", "bad-signature", "unknown-key"],
)
def test_a_federated_assertion_entra_would_refuse_is_refused_with_its_aadsts_code(
    sandbox: Sandbox, claims: dict[str, object], code: int, words: str
) -> None:
    claims = dict(claims)
    if "nbf_ahead_s" in claims:
        claims["nbf"] = int(time.time()) + int(claims.pop("nbf_ahead_s"))  # type: ignore[call-overload]
    key = _other_key() if claims.pop("other_key", False) else None
    assertion = federated_assertion(sandbox.info, key_pem=key, **claims)
    result = _federated(sandbox, assertion)
    assert ERROR_KEYS <= set(result)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [code]
    assert words in result["error_description"]
    assert assertion not in str(result)


def test_an_app_without_a_federated_credential_refuses_the_assertion(sandbox: Sandbox) -> None:
    admin = sandbox.info["admin_app"]["client_id"]
    app = msal.ConfidentialClientApplication(
        admin,
        client_credential={"client_assertion": lambda: federated_assertion(sandbox.info)},
        authority=sandbox.info["authority"],
        instance_discovery=False,
        http_client=sandbox.session(),
    )
    result = app.acquire_token_for_client(_scope(sandbox))
    assert result["error_codes"] == [700211]


def test_the_encrypted_key_is_the_registered_key_behind_its_passphrase(sandbox: Sandbox) -> None:
    from cryptography.hazmat.primitives import serialization

    app = sandbox.info["sync_app"]
    encrypted = Path(app["encrypted_private_key_path"]).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(encrypted, None)
    key = serialization.load_pem_private_key(encrypted, app["private_key_passphrase"].encode())
    plain = serialization.load_pem_private_key(Path(app["private_key_path"]).read_bytes(), None)
    assert key.private_numbers() == plain.private_numbers()  # type: ignore[union-attr]
