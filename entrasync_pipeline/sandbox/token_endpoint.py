"""The Entra ID v2.0 token endpoint for the client-credentials grant, and the access tokens it signs.

Follows reference/microsoft-graph-and-msal.md §5: the OIDC discovery document msal reads in its
constructor, ``POST /{tenant}/oauth2/v2.0/token`` with a client secret or a ``client_assertion``
JWT checked against the app's registered certificate, Entra-shaped errors with the six keys
(``error``, ``error_description``, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``), and ``Cache-Control: no-store``. Access tokens are RS256 JWTs carrying
``aud``, ``tid``, ``roles`` and ``exp`` so the Graph emulator can enforce permissions.

The only resource is the sandbox's own Graph: the scope must be ``<graph base>/.default`` (the port
may be left out) or Graph's application id; anything else, ``https://graph.microsoft.com``
included, is ``invalid_resource`` (AADSTS500011), as a national cloud refuses the global Graph.
A ``client_assertion`` whose issuer is the app itself is a certificate assertion; any other issuer
makes it a federated token (workload identity), checked as Entra checks one against the app's
federated credentials: issuer (AADSTS700211), signing key (AADSTS7000272), signature (AADSTS700027),
time range (AADSTS700024), audience (AADSTS700212) and subject (AADSTS700213).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from entrasync_pipeline.sandbox.federation import FederatedCredential
from entrasync_pipeline.sandbox.httpd import Request, Response, json_response

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
CLOCK_SKEW_S = 300  # Entra tolerates five minutes of clock difference on an assertion's nbf
FIC_HINT = (
    "Please check your federated identity credential Subject, Audience and Issuer against the presented "
    "assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
)
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass
class AppRegistration:
    """An Entra app registration with its service principal in the tenant."""

    name: str
    client_id: str
    client_secret: str
    roles: list[str]
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    certificate_pem: bytes | None = None
    federated_credentials: list[FederatedCredential] = field(default_factory=list)

    def public_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "roles": self.roles,
            "has_certificate": self.certificate_pem is not None,
            "federated_credentials": [
                {"issuer": c.issuer, "subject": c.subject, "audiences": list(c.audiences)}
                for c in self.federated_credentials
            ],
        }


class TokenIssuer:
    """Signs and verifies access tokens for one tenant."""

    def __init__(self, tenant_id: str, signing_key: rsa.RSAPrivateKey, lifetime_s: int = 3599) -> None:
        self.tenant_id = tenant_id
        self._key = signing_key
        self.kid = hashlib.sha256(str(signing_key.public_key().public_numbers().n).encode()).hexdigest()[:27]
        self.lifetime_s = lifetime_s
        self._verified: dict[str, dict[str, Any]] = {}

    def rotate(self) -> None:
        """A new signing key: every token issued so far stops validating (revocation)."""
        from entrasync_pipeline.sandbox.tls import new_signing_key

        self._key = new_signing_key()
        self._verified.clear()

    def issue(self, app: AppRegistration, audience: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "idtyp": "app",
            "oid": app.service_principal_id,
            "sub": app.service_principal_id,
            "roles": list(app.roles),
            "tid": self.tenant_id,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})
        return token, self.lifetime_s

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims; raises jwt.ExpiredSignatureError or jwt.InvalidTokenError."""
        claims = self._verified.get(token)
        if claims is None:
            claims = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False}
            )
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = claims
        if claims.get("tid") != self.tenant_id:
            raise jwt.InvalidTokenError("token issued for another tenant")
        if claims["exp"] <= time.time():
            raise jwt.ExpiredSignatureError("expired")
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64(numbers.e.to_bytes(3, "big")),
                    "issuer": f"https://login.microsoftonline.com/{self.tenant_id}/v2.0",
                }
            ]
        }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenEndpoint:
    """Handlers for discovery, keys and the token request."""

    def __init__(self, tenant_id: str, issuer: TokenIssuer, apps: dict[str, AppRegistration]) -> None:
        self.tenant_id = tenant_id
        self.issuer = issuer
        self.apps = apps

    def discovery(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if tenant != self.tenant_id:
            return entra_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        base = f"{request.base_url}/{tenant}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "ver", "oid"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return json_response(200, doc, {"Cache-Control": "max-age=86400, private"})

    def keys(self, request: Request) -> Response:
        return json_response(200, self.issuer.jwks(), {"Cache-Control": "max-age=86400, private"})

    def token(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if tenant != self.tenant_id:
            return entra_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        if form.get("grant_type") != "client_credentials":
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
            )
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id', '')}' was not "
                f"found in the directory '{tenant}'. This can happen if the "
                "application has not been installed by the administrator of the "
                "tenant or consented to by any user in the tenant.",
            )
        problem = self._authenticate(app, form, f"{request.base_url}/{tenant}/oauth2/v2.0/token")
        if problem is None:
            problem = self._scope_problem(form.get("scope", ""), request.base_url, tenant)
        if problem is not None:
            return problem
        access_token, lifetime = self.issuer.issue(app, request.base_url)
        body = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        return json_response(200, body, NO_STORE)

    def _scope_problem(self, scope: str, own_base: str, tenant: str) -> Response | None:
        """Entra's answer to a scope it cannot grant: malformed (AADSTS70011) or another resource (500011)."""
        resource = self._resource(scope)
        if resource is None:
            return entra_error(
                400,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter. The "
                "provided value for the input parameter 'scope' is not valid. The scope "
                f"{scope} is not valid. The scope format is invalid. "
                "Scope must be in a valid URI form <https://example/scope> or a valid "
                "Guid <guid/scope>.",
            )
        if not self._is_own_graph(resource, own_base):
            return entra_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant}. This can "
                "happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You might have sent your authentication request to "
                "the wrong tenant.",
            )
        return None

    def _authenticate(self, app: AppRegistration, form: dict[str, str], endpoint: str) -> Response | None:
        if "client_secret" in form:
            if hmac.compare_digest(form["client_secret"], app.client_secret):
                return None
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the "
                "request is the client secret value, not the client secret ID, for a "
                f"secret added to app '{app.client_id}'.",
            )
        assertion = form.get("client_assertion")
        if assertion and form.get("client_assertion_type") == (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ):
            return self._check_assertion(app, assertion, endpoint)
        return entra_error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        )

    def _check_assertion(self, app: AppRegistration, assertion: str, endpoint: str) -> Response | None:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return entra_error(
                401,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed. [Reason - The assertion is not a JWT.]",
            )
        if unverified.get("iss") != app.client_id:
            return _check_federated(app, assertion, unverified, str(header.get("kid", "")))
        if app.certificate_pem is None:
            return entra_error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is "
                "not registered on application. [Reason - The key was not found.]",
            )
        cert = x509.load_pem_x509_certificate(app.certificate_pem)
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),
                algorithms=["RS256", "PS256"],
                audience=endpoint,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            return entra_error(
                401, "invalid_client", 700027, f"Client assertion failed signature validation. [Reason - {exc}]"
            )
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return entra_error(
                401, "invalid_client", 700023, "Client assertion audience claim does not match Realm issuer."
            )
        return None

    @staticmethod
    def _resource(scope: str) -> str | None:
        """The resource of a client-credentials scope (``<resource>/.default``); None when malformed."""
        scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return None
        return scopes[0][: -len("/.default")].rstrip("/") or None

    @staticmethod
    def _is_own_graph(resource: str, own_base: str) -> bool:
        """This tenant's Graph: its base URL with or without the port, or Graph's application id."""
        without_port = own_base.rsplit(":", 1)[0] if own_base.count(":") == 2 else own_base
        return resource in (own_base, without_port, GRAPH_APP_ID)


def _check_federated(app: AppRegistration, assertion: str, unverified: dict[str, Any], kid: str) -> Response | None:
    """A federated token checked as Entra checks one: issuer, key, signature, time, audience, subject."""
    issuer = str(unverified.get("iss", ""))
    candidates = [c for c in app.federated_credentials if c.issuer == issuer]
    if not candidates:
        return entra_error(
            401,
            "invalid_client",
            700211,
            f"No matching federated identity record found for presented assertion issuer '{issuer}'. {FIC_HINT}",
        )
    key = next((c.issuer_keys[kid] for c in candidates if kid in c.issuer_keys), None)
    if key is None:
        return entra_error(
            401,
            "invalid_client",
            7000272,
            f"The certificate with identifier {kid} used to sign the federated credential could not be found in "
            f"the metadata of identity provider {issuer}. Please validate that your Identity Provider's metadata "
            "exposes the key used to sign the incoming token.",
        )
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError:
        return entra_error(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature value did not match "
            "the expected signature value.]",
        )
    return _federated_claims_problem(candidates, claims)


def _federated_claims_problem(candidates: list[FederatedCredential], claims: dict[str, Any]) -> Response | None:
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
    if not isinstance(exp, (int, float)) or exp <= now or not isinstance(nbf, (int, float)) or nbf > now + CLOCK_SKEW_S:
        return entra_error(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion valid "
            f"from {_iso(nbf if isinstance(nbf, (int, float)) else 0)}, expiry time of assertion "
            f"{_iso(exp if isinstance(exp, (int, float)) else 0)}. Review the documentation at "
            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    candidates = [c for c in candidates if set(audiences) & set(c.audiences)]
    if not candidates:
        return entra_error(
            401,
            "invalid_client",
            700212,
            "No matching federated identity record found for presented assertion audience "
            f"'{','.join(audiences)}'. {FIC_HINT}",
        )
    if not any(c.subject == claims.get("sub") for c in candidates):
        return entra_error(
            401,
            "invalid_client",
            700213,
            f"No matching federated identity record found for presented assertion subject '{claims.get('sub')}'. "
            f"{FIC_HINT}",
        )
    return None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def entra_error(
    status: int, error: str, code: int, description: str, headers: dict[str, str] | None = None
) -> Response:
    """An Entra error body with the six keys real responses carry."""
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return json_response(status, body, {**NO_STORE, **(headers or {})})
