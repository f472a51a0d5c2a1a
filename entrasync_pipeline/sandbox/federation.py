"""Workload identity federation: an external OIDC issuer (what a Kubernetes cluster's service-account
issuer is to Entra), the federated identity credential on an app registration, and the token file
the platform keeps fresh.

On AKS the kubelet projects a service-account token (audience ``api://AzureADTokenExchange``) into
the pod and replaces it at 80 % of its lifetime; the workload sends it as ``client_assertion``.
Entra accepts it when an app's federated credential names its issuer, subject and audience and
the signature verifies against the issuer's published keys. The sandbox holds the issuer's
signing key, so it can mint such tokens; it does not serve the issuer's discovery document (the
token endpoint is given the issuer's keys directly, as Entra would have fetched them).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
SERVICE_ACCOUNT_SUBJECT = "system:serviceaccount:entrasync:entrasync"
TOKEN_LIFETIME_S = 3600  # AKS workload identity's default projected-token lifetime
REFRESH_SHARE = 0.8  # the kubelet rotates a projected token at 80 % of its lifetime


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential on an app registration, with the issuer's signing keys by kid."""

    issuer: str
    subject: str
    audiences: tuple[str, ...]
    issuer_keys: dict[str, Any] = field(repr=False)


class WorkloadIssuer:
    """An OIDC issuer that signs service-account tokens (RS256, ``kid`` in the header)."""

    def __init__(self, issuer: str, signing_key: rsa.RSAPrivateKey, subject: str = SERVICE_ACCOUNT_SUBJECT) -> None:
        self.issuer, self.subject, self._key = issuer, subject, signing_key
        self.kid = hashlib.sha256(str(signing_key.public_key().public_numbers().n).encode()).hexdigest()[:32]

    def credential(self) -> FederatedCredential:
        """The federated credential an admin adds to the app registration for this issuer's subject."""
        return FederatedCredential(self.issuer, self.subject, (FEDERATED_AUDIENCE,), {self.kid: self._key.public_key()})

    def mint(self, lifetime_s: int = TOKEN_LIFETIME_S, **overrides: Any) -> str:
        """A service-account token as the kubelet projects it; ``overrides`` replace claims (tests)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": [FEDERATED_AUDIENCE],
            "iss": self.issuer,
            "sub": self.subject,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": "entrasync", "serviceaccount": {"name": "entrasync"}},
        }
        claims.update(overrides)
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def write_key(self, path: Path) -> None:
        """The signing key as PEM (0600), so tests can mint tokens the sandbox must refuse."""
        path.write_bytes(
            self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)


class TokenFile:
    """Keeps a valid token in ``path``, replaced atomically at 80 % of its lifetime, as the kubelet does."""

    def __init__(self, issuer: WorkloadIssuer, path: Path, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        self.issuer, self.path, self.lifetime_s = issuer, path, lifetime_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-token-file", daemon=True)

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.issuer.mint(self.lifetime_s), encoding="ascii")
        tmp.chmod(0o600)
        tmp.replace(self.path)  # a reader sees the old token or the new one, never half of one

    def start(self) -> None:
        self.write()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.lifetime_s * REFRESH_SHARE):
            try:
                self.write()
            except OSError as exc:  # the state dir went away: the sandbox is stopping
                log.warning("cannot refresh the federated token file %s: %s", self.path, exc.strerror)
