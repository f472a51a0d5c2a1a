"""The sandbox's workload issuer and its token file: a valid service-account token is always there,
replaced before it expires (as the kubelet replaces a projected token at 80 % of its lifetime), and a
reader never sees half of one."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from entrasync_pipeline.sandbox.federation import FEDERATED_AUDIENCE, TokenFile, WorkloadIssuer
from entrasync_pipeline.sandbox.tls import new_signing_key


def _claims(issuer: WorkloadIssuer, token: str) -> dict[str, object]:
    key = issuer.credential().issuer_keys[jwt.get_unverified_header(token)["kid"]]
    return dict(jwt.decode(token, key, algorithms=["RS256"], audience=FEDERATED_AUDIENCE, issuer=issuer.issuer))


def test_a_minted_token_is_what_entra_expects_from_a_cluster() -> None:
    issuer = WorkloadIssuer("https://oidc.sandbox.invalid/t/1/", new_signing_key())
    claims = _claims(issuer, issuer.mint(lifetime_s=3600))
    assert claims["sub"] == "system:serviceaccount:entrasync:entrasync"
    assert claims["aud"] == [FEDERATED_AUDIENCE]
    assert 3590 <= int(claims["exp"]) - time.time() <= 3600  # type: ignore[call-overload]


def test_the_token_file_is_replaced_before_the_token_expires(tmp_path: Path) -> None:
    issuer = WorkloadIssuer("https://oidc.sandbox.invalid/t/1/", new_signing_key())
    token_file = TokenFile(issuer, tmp_path / "token", lifetime_s=2)
    token_file.start()
    try:
        first = (tmp_path / "token").read_text()
        first_id = _claims(issuer, first)["jti"]  # valid now
        assert (tmp_path / "token").stat().st_mode & 0o077 == 0
        deadline = time.monotonic() + 5
        while (tmp_path / "token").read_text() == first:
            assert time.monotonic() < deadline, "the token file was never refreshed"
            time.sleep(0.05)
        second = (tmp_path / "token").read_text()
        assert _claims(issuer, second)["jti"] != first_id  # valid too: replaced at 80 % of the lifetime
    finally:
        token_file.stop()
    assert not list(tmp_path.glob("*.tmp"))
