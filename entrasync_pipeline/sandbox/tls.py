"""Key material the sandbox makes at start: a private CA, the servers' certificate, the sync app's
client certificate and the token-signing key.

The CA is new on every start and written to ``ca.pem`` in the state dir, so clients verify TLS
exactly as against a private CA in production (reference/microsoft-graph-and-msal.md §5.2: msal
needs HTTPS, the certificate carries SAN IP:127.0.0.1 and DNS:localhost).
"""

from __future__ import annotations

import datetime as dt
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerTls:
    ca_bundle: Path
    context: ssl.SSLContext


def make_server_tls(state_dir: Path) -> ServerTls:
    """Create a CA, a loopback server certificate and a server SSL context."""
    ca = trustme.CA(organization_name="entrasync sandbox")
    server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_bundle = state_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_bundle))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    server_cert.configure_cert(context)
    return ServerTls(ca_bundle=ca_bundle, context=context)


@dataclass(frozen=True)
class ClientCertificate:
    certificate_path: Path
    private_key_path: Path
    certificate_pem: bytes
    encrypted_private_key_path: Path
    private_key_passphrase: str


def make_client_certificate(state_dir: Path, name: str) -> ClientCertificate:
    """A self-signed RSA certificate, as an admin uploads to an Entra app registration.

    The key is written twice: plain, and encrypted with a new passphrase (PKCS#8, the form
    ``openssl pkcs8 -topk8`` and most key vault exports produce), so both ways of keeping a key work.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path = state_dir / f"{name}.crt.pem"
    key_path = state_dir / f"{name}.key.pem"
    passphrase = secrets.token_urlsafe(18)
    encrypted_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    encrypted_path = state_dir / f"{name}.key.encrypted.pem"
    cert_path.write_bytes(cert_pem)
    for path, pem in ((key_path, key_pem), (encrypted_path, encrypted_pem)):
        path.write_bytes(pem)
        path.chmod(0o600)
    return ClientCertificate(cert_path, key_path, cert_pem, encrypted_path, passphrase)


def new_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
