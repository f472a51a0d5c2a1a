"""EntraCredential against the sandbox's token endpoint, through msal over TLS: every credential kind
and every cloud.

The token scope is always ``<graph base>/.default`` (a national cloud grants only its own Graph, and
so does the sandbox). A federated credential reads its token file again for every token request,
because the platform rotates it; an assertion Entra refuses is a clear error with Entra's code.
An encrypted key opens with its passphrase; without it, or with a wrong one, the error names the
variable, never the passphrase.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest

from entrasync_pipeline.entra.credential import EntraCredential
from entrasync_pipeline.entra.errors import EntraAuthError
from entrasync_pipeline.settings import CLOUDS, ConfigError, EntraSettings, HttpSettings, entra_credential
from entrasync_pipeline.transport import Transport
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import federated_assertion, write_config
from entrasync_pipeline_tests.test_cli import entrasync

FAST = HttpSettings(backoff_base_s=0.05, backoff_max_s=0.5)
TOKEN = "POST /{tenant}/oauth2/v2.0/token"


def _entra(info: dict[str, Any], **overrides: Any) -> EntraSettings:
    fields = {
        "tenant_id": info["tenant_id"],
        "client_id": info["sync_app"]["client_id"],
        "authority_host": info["graph_url"],
        "graph_url": info["graph_url"],
        **overrides,
    }
    return EntraSettings(**{k: v for k, v in fields.items() if v is not None})


@pytest.fixture
def credential(sandbox: Sandbox) -> Iterator[Any]:
    """A factory: the credential for these settings and environment, on a verified transport."""
    transports: list[Transport] = []

    def build(entra: EntraSettings, environ: dict[str, str]) -> EntraCredential:
        transport = Transport(FAST, sandbox.info["ca_bundle"], "graph")
        transports.append(transport)
        return EntraCredential(entra, entra_credential(entra, environ), transport)

    yield build
    for transport in transports:
        transport.close()


def _audience(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["aud"])


# --- the scope follows the Graph base -----------------------------------------------------------
def test_the_token_is_for_the_configured_graph(sandbox: Sandbox, environ: dict[str, str], credential: Any) -> None:
    token = credential(_entra(sandbox.info, credential="secret"), environ).token()
    assert _audience(token) == sandbox.info["graph_url"]


@pytest.mark.parametrize("cloud", ["global", "usgov", "usgov_dod", "china"])
def test_a_cloud_asks_for_its_own_graph_and_another_cloud_refuses_it(
    sandbox: Sandbox, environ: dict[str, str], credential: Any, cloud: str
) -> None:
    entra = _entra(sandbox.info, credential="secret", cloud=cloud, graph_url=None)
    assert entra.graph_url == CLOUDS[cloud][1]
    assert entra.scope == f"{CLOUDS[cloud][1]}/.default"
    with pytest.raises(EntraAuthError) as caught:
        credential(entra, environ).token()
    assert caught.value.error == "invalid_resource"
    assert f"AADSTS500011: The resource principal named {CLOUDS[cloud][1]} was not found" in str(caught.value)


# --- federated credential (workload identity) ----------------------------------------------------
@pytest.fixture
def token_file(sandbox: Sandbox, tmp_path: Path) -> Path:
    """A private copy of the sandbox's token file (tests rotate it; the sandbox's own stays valid)."""
    path = tmp_path / "azure-identity-token"
    shutil.copy(sandbox.info["federated"]["token_file"], path)
    return path


def test_the_token_file_is_read_again_for_every_token_request(
    sandbox: Sandbox, environ: dict[str, str], credential: Any, token_file: Path
) -> None:
    entra = _entra(sandbox.info, credential="federated")
    federated = credential(entra, {**environ, "AZURE_FEDERATED_TOKEN_FILE": str(token_file)})
    assert _audience(federated.token()) == sandbox.info["graph_url"]
    # The platform rotates the file; here the new content is expired, so the next request must fail.
    token_file.write_text(federated_assertion(sandbox.info, lifetime_s=-600))
    federated.drop_cached_token()
    with pytest.raises(EntraAuthError) as caught:
        federated.token()
    assert caught.value.error == "invalid_client" and "AADSTS700024" in str(caught.value)
    token_file.write_text(federated_assertion(sandbox.info))
    federated.drop_cached_token()
    assert federated.token()
    assert sandbox.stats("graph")["requests"][TOKEN] == 3


@pytest.mark.parametrize(
    ("claims", "code"),
    [({"lifetime_s": -600}, "AADSTS700024"), ({"aud": ["api://SomethingElse"]}, "AADSTS700212")],
    ids=["expired", "wrong-audience"],
)
def test_an_assertion_entra_refuses_is_a_clear_error_without_the_assertion(
    sandbox: Sandbox, environ: dict[str, str], credential: Any, token_file: Path, claims: dict[str, Any], code: str
) -> None:
    assertion = federated_assertion(sandbox.info, **claims)
    token_file.write_text(assertion)
    entra = _entra(sandbox.info, credential="federated")
    with pytest.raises(EntraAuthError) as caught:
        credential(entra, {**environ, "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}).token()
    assert code in str(caught.value)
    assert assertion not in str(caught.value) and assertion.split(".")[2] not in str(caught.value)


def test_a_missing_token_file_names_the_file_and_the_variable(
    sandbox: Sandbox, environ: dict[str, str], credential: Any, tmp_path: Path
) -> None:
    entra = _entra(sandbox.info, credential="federated", federated_token_file_env="MY_TOKEN_FILE")
    with pytest.raises(ConfigError, match="MY_TOKEN_FILE is not set"):
        entra_credential(entra, environ)
    missing = tmp_path / "gone"
    with pytest.raises(EntraAuthError) as caught:
        credential(entra, {**environ, "MY_TOKEN_FILE": str(missing)}).token()
    assert caught.value.error == "federated_token_unreadable"
    assert str(missing) in str(caught.value) and "MY_TOKEN_FILE" in str(caught.value)


# --- passphrase-protected private key -----------------------------------------------------------
def _encrypted(environ: dict[str, str], sandbox: Sandbox, passphrase: str | None) -> dict[str, str]:
    env = {**environ, "ENTRA_CLIENT_KEY": sandbox.info["sync_app"]["encrypted_private_key_path"]}
    env.pop("ENTRA_CLIENT_KEY_PASSPHRASE", None)
    return env if passphrase is None else {**env, "ENTRA_CLIENT_KEY_PASSPHRASE": passphrase}


def test_an_encrypted_key_works_with_its_passphrase(sandbox: Sandbox, environ: dict[str, str], credential: Any) -> None:
    env = _encrypted(environ, sandbox, sandbox.info["sync_app"]["private_key_passphrase"])
    assert credential(_entra(sandbox.info, credential="certificate"), env).token()


@pytest.mark.parametrize(
    ("passphrase", "words"),
    [(None, "is encrypted: set ENTRA_CLIENT_KEY_PASSPHRASE"), ("not-the-passphrase", "does not open it")],
    ids=["no-passphrase", "wrong-passphrase"],
)
def test_an_encrypted_key_without_its_passphrase_is_a_clear_config_error(
    sandbox: Sandbox, environ: dict[str, str], passphrase: str | None, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        entra_credential(_entra(sandbox.info), _encrypted(environ, sandbox, passphrase))
    assert sandbox.info["sync_app"]["encrypted_private_key_path"] in str(caught.value)
    assert "not-the-passphrase" not in str(caught.value)
    assert sandbox.info["sync_app"]["private_key_passphrase"] not in str(caught.value)


# --- whole syncs --------------------------------------------------------------------------------
def _config(sandbox: Sandbox, tmp_path: Path, **entra: Any) -> Path:
    groups = [{"id": g, "name": n} for n, g in sandbox.info["groups"].items()]
    return write_config(
        tmp_path / "entrasync.yaml", sandbox.info, {"sandbox": {"groups": groups, "entra": _entra_dict(sandbox, entra)}}
    )


def _entra_dict(sandbox: Sandbox, overrides: dict[str, Any]) -> dict[str, Any]:
    entra = {
        "tenant_id": sandbox.info["tenant_id"],
        "client_id": sandbox.info["sync_app"]["client_id"],
        "authority_host": sandbox.info["graph_url"],
        "graph_url": sandbox.info["graph_url"],
        **overrides,
    }
    return {k: v for k, v in entra.items() if v is not None}


def _sync(env: dict[str, str]) -> dict[str, Any]:
    result = entrasync("sync", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def test_a_sync_with_a_federated_credential_and_a_rotated_token(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, token_file: Path
) -> None:
    config = _config(sandbox, tmp_path, credential="federated")
    env = {k: v for k, v in environ.items() if k not in ("ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_KEY")}
    env |= {"ENTRASYNC_CONFIG": str(config), "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    assert entrasync("zammad-setup", env=env).returncode == 0
    assert _sync(env)["created"] > 0
    token_file.write_text(federated_assertion(sandbox.info))  # the platform's next token
    again = _sync(env)
    assert again["created"] == again["updated"] == again["failed"] == 0


def test_a_sync_with_an_encrypted_key(sandbox: Sandbox, environ: dict[str, str], tmp_path: Path) -> None:
    config = _config(sandbox, tmp_path, credential="certificate")
    env = _encrypted(environ, sandbox, sandbox.info["sync_app"]["private_key_passphrase"])
    env |= {"ENTRASYNC_CONFIG": str(config)}
    env.pop("ENTRA_CLIENT_SECRET")
    assert entrasync("zammad-setup", env=env).returncode == 0
    assert _sync(env)["created"] > 0


def test_a_sync_in_another_cloud_than_the_graph_fails_clearly_and_writes_nothing(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    """entra.cloud usgov with only the authority host pointed at the sandbox: the token is asked for
    graph.microsoft.us, which this tenant does not know, so the sync stops at the token."""
    config = _config(sandbox, tmp_path, credential="secret", cloud="usgov", graph_url=None)
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    before = sandbox.state("zammad")["users"]
    sandbox.control("DELETE", "graph", "stats")
    result = entrasync("sync", "--json", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "invalid_resource" in output and "The resource principal named https://graph.microsoft.us" in output
    # a refusal retries cannot cure fails at once: one token request, not one per step retry
    tokens = [n for route, n in sandbox.stats("graph")["requests"].items() if route.endswith("/token")]
    assert sum(tokens) == 1, sandbox.stats("graph")["requests"]
    assert sandbox.state("zammad")["users"] == before
    assert not any(key.startswith(("POST", "PUT")) for key in sandbox.stats("zammad")["requests"])
    assert environ["ENTRA_CLIENT_SECRET"] not in output
