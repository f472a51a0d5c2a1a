"""The outbound proxy: which requests take it, and a real proxy (Debian's tinyproxy) in the path.

Corporate networks often reach Graph, the token endpoint and Zammad only through a forward proxy.
The proxy comes from ``http.proxy`` or the standard HTTPS_PROXY / NO_PROXY variables, read
explicitly (the CA-bundle variables stay ignored); an https:// request is a CONNECT tunnel with TLS
verified against the origin, so the proxy cannot read or forge the traffic. A proxy that refuses
is a clear error that names it, never with its password, and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from entrasync_pipeline.proxy import bypasses, choose, display
from entrasync_pipeline.settings import ConfigError, HttpSettings, Proxies, ProxyChoice, SecretValue, proxy_settings
from entrasync_pipeline.transport import NoResponse, Transport
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.test_cli import entrasync

FAST = HttpSettings(backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=3)
PASSWORD = "pr0xy-Pa55-4711"


# --- NO_PROXY rules (pure) -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "port", "rules", "direct"),
    [
        ("127.0.0.1", 8443, ("127.0.0.1",), True),
        ("127.0.0.2", 8443, ("127.0.0.1",), False),
        ("10.1.2.3", 443, ("10.0.0.0/8",), True),
        ("11.1.2.3", 443, ("10.0.0.0/8",), False),
        ("::1", 443, ("::1",), True),
        ("graph.microsoft.com", 443, ("microsoft.com",), True),
        ("graph.microsoft.com", 443, (".microsoft.com",), True),
        ("microsoft.com", 443, (".microsoft.com",), True),
        ("notmicrosoft.com", 443, ("microsoft.com",), False),
        ("Helpdesk.Example.COM", 443, ("helpdesk.example.com",), True),
        ("helpdesk.example.com", 443, ("helpdesk.example.com:443",), True),
        ("helpdesk.example.com", 8443, ("helpdesk.example.com:443",), False),
        ("127.0.0.1", 8443, ("localhost",), False),
        ("anything.example", 443, ("*",), True),
        ("graph.microsoft.com", 443, (), False),
        ("graph.microsoft.com", 443, ("", " "), False),
    ],
    ids=[
        "ip",
        "other-ip",
        "cidr",
        "outside-cidr",
        "ipv6",
        "domain-covers-subdomain",
        "leading-dot",
        "leading-dot-covers-the-domain",
        "no-partial-label",
        "case-insensitive",
        "host-and-port",
        "other-port",
        "no-dns-lookup",
        "star",
        "no-rules",
        "blank-rules",
    ],
)
def test_no_proxy_rules_work_as_curl_reads_them(host: str, port: int, rules: tuple[str, ...], direct: bool) -> None:
    assert bypasses(host, port, rules) is direct


def _proxies(url: str = "http://127.0.0.1:3128", no_proxy: tuple[str, ...] = (), source: str = "http.proxy") -> Proxies:
    choice = ProxyChoice(SecretValue(url, source), source)
    return Proxies({"https": choice, "http": choice}, no_proxy)


def test_a_request_takes_the_proxy_unless_no_proxy_names_its_host() -> None:
    proxies = _proxies(no_proxy=("helpdesk.example.com",))
    assert choose(proxies, "https://graph.microsoft.com/v1.0/users") is not None
    assert choose(proxies, "https://helpdesk.example.com/api/v1/users") is None
    assert choose(Proxies({}, ()), "https://graph.microsoft.com/v1.0/users") is None


def test_the_proxy_is_shown_without_its_credentials() -> None:
    choice = _proxies(f"http://svc-entrasync:{PASSWORD}@proxy.example.com:3128").by_scheme["https"]
    assert display(choice) == "http://***@proxy.example.com:3128 (from http.proxy)"
    assert PASSWORD not in repr(choice) and PASSWORD not in str(choice.url)


# --- where the proxy comes from ------------------------------------------------------------------
def test_http_proxy_wins_over_the_environment_and_expands_variables() -> None:
    http = HttpSettings(proxy="http://svc:${PROXY_PASSWORD}@proxy.example.com:3128")
    resolved = proxy_settings(
        http, {"PROXY_PASSWORD": PASSWORD, "HTTPS_PROXY": "http://other:1", "NO_PROXY": "a.example, .b.example"}
    )
    assert resolved.by_scheme["https"].url.reveal() == f"http://svc:{PASSWORD}@proxy.example.com:3128"
    assert resolved.by_scheme["https"].source == "http.proxy"
    assert resolved.no_proxy == ("a.example", ".b.example")


def test_without_http_proxy_the_standard_variables_apply_lower_case_first() -> None:
    resolved = proxy_settings(
        HttpSettings(), {"https_proxy": "proxy.example.com:3128", "HTTPS_PROXY": "http://ignored:1", "no_proxy": "x"}
    )
    assert resolved.by_scheme["https"].url.reveal() == "http://proxy.example.com:3128"  # host:port means http://
    assert resolved.by_scheme["https"].source == "https_proxy"
    assert "http" not in resolved.by_scheme and resolved.no_proxy == ("x",)
    assert proxy_settings(HttpSettings(), {}).by_scheme == {}


@pytest.mark.parametrize(
    ("proxy", "environ", "words"),
    [
        ("socks5://proxy.example.com:1080", {}, "http:// or https://"),
        ("http://svc:${PROXY_PASSWORD}@proxy.example.com:3128", {}, "PROXY_PASSWORD is not set"),
        ("http://:3128", {}, "needs a host"),
    ],
    ids=["socks", "unset-variable", "no-host"],
)
def test_a_bad_proxy_is_a_config_error_naming_the_key(proxy: str, environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        proxy_settings(HttpSettings(proxy=proxy), environ)
    assert "http.proxy" in str(caught.value)


# --- through tinyproxy --------------------------------------------------------------------------
def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


def _discovery(sandbox: Sandbox) -> str:
    return f"{sandbox.info['authority']}/v2.0/.well-known/openid-configuration"


def _get(sandbox: Sandbox, proxies: Proxies, ca_bundle: str | None = "sandbox") -> int:
    ca = sandbox.info["ca_bundle"] if ca_bundle == "sandbox" else ca_bundle
    transport = Transport(FAST, ca, "graph", proxies=proxies)
    try:
        return transport.send("GET", _discovery(sandbox), route="/{tenant}/discovery", idempotent=True).status
    finally:
        transport.close()


def test_a_request_goes_through_the_proxy_as_a_verified_tunnel(sandbox: Sandbox, tinyproxy: Any) -> None:
    proxy = tinyproxy()
    assert _get(sandbox, _proxies(proxy.url)) == 200
    assert proxy.tunnels() == [f"127.0.0.1:{_port(sandbox.info['graph_url'])}"]


def test_tls_is_verified_end_to_end_through_the_tunnel(sandbox: Sandbox, tinyproxy: Any) -> None:
    """The proxy opens the tunnel, but the sandbox's certificate is still checked (here: against the
    system CAs, which do not know the sandbox CA), so a proxy cannot stand in for the server."""
    proxy = tinyproxy()
    with pytest.raises(NoResponse) as caught:
        _get(sandbox, _proxies(proxy.url), ca_bundle=None)
    assert caught.value.kind == "tls"
    assert f"(via {proxy.url} (from http.proxy))" in caught.value.detail  # the operator sees which way
    assert proxy.tunnels()  # the tunnel was made: verification happened through it


def test_proxy_credentials_come_from_a_variable(sandbox: Sandbox, tinyproxy: Any) -> None:
    proxy = tinyproxy([f"BasicAuth entrasync {PASSWORD}"])
    http = HttpSettings(proxy=f"http://entrasync:${{PROXY_PASSWORD}}@127.0.0.1:{proxy.port}")
    assert _get(sandbox, proxy_settings(http, {"PROXY_PASSWORD": PASSWORD})) == 200
    with pytest.raises(NoResponse) as caught:
        _get(sandbox, proxy_settings(http, {"PROXY_PASSWORD": "wrong-password"}))
    assert caught.value.kind == "proxy"
    assert "401" in caught.value.detail and f"http://***@127.0.0.1:{proxy.port}" in caught.value.detail
    assert "wrong-password" not in str(caught.value) and PASSWORD not in str(caught.value)


def test_a_refusing_proxy_is_named_without_its_password_and_not_retried(sandbox: Sandbox, tinyproxy: Any) -> None:
    proxy = tinyproxy(["ConnectPort 443"])  # CONNECT only to 443: the sandbox's ports are refused
    with pytest.raises(NoResponse) as caught:
        _get(sandbox, _proxies(f"http://svc:{PASSWORD}@127.0.0.1:{proxy.port}"))
    error = caught.value
    assert error.kind == "proxy" and not error.ambiguous
    assert f"http://***@127.0.0.1:{proxy.port} (from http.proxy)" in error.detail
    assert "403" in error.detail and PASSWORD not in str(error)
    assert len(proxy.tunnels()) == 1  # a refusal will not change: asked once
    assert sandbox.stats("graph")["total"] == 0


def test_an_unreachable_proxy_is_retried_then_named(sandbox: Sandbox, tinyproxy: Any) -> None:
    proxy = tinyproxy()
    proxy.stop()  # nothing listens on its port any more
    with pytest.raises(NoResponse) as caught:
        _get(sandbox, _proxies(proxy.url))
    assert caught.value.kind == "proxy"
    assert f"http://127.0.0.1:{proxy.port} (from http.proxy)" in caught.value.detail
    assert sandbox.stats("graph")["total"] == 0


def test_no_proxy_with_the_address_reaches_the_sandbox_directly(sandbox: Sandbox, tinyproxy: Any) -> None:
    refusing = tinyproxy(["ConnectPort 443"])
    environ = {"HTTPS_PROXY": refusing.url, "NO_PROXY": "localhost,127.0.0.1"}
    assert _get(sandbox, proxy_settings(HttpSettings(), environ)) == 200
    assert refusing.tunnels() == []
    # Matching is on the host as written in the URL: "localhost" alone does not cover 127.0.0.1.
    with pytest.raises(NoResponse):
        _get(sandbox, proxy_settings(HttpSettings(), {**environ, "NO_PROXY": "localhost"}))
    assert len(refusing.tunnels()) == 1


# --- a whole sync -------------------------------------------------------------------------------
def _sync_env(environ: dict[str, str], config: Path, **extra: str) -> dict[str, str]:
    return {**environ, "ENTRASYNC_CONFIG": str(config), **extra}


def test_a_sync_goes_through_the_proxy_to_the_token_endpoint_graph_and_zammad(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, tinyproxy: Any
) -> None:
    proxy = tinyproxy([f"BasicAuth entrasync {PASSWORD}"])
    http = {"proxy": f"http://entrasync:${{PROXY_PASSWORD}}@127.0.0.1:{proxy.port}", "backoff_base_s": 0.05}
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, http=http)
    env = _sync_env(environ, config, PROXY_PASSWORD=PASSWORD)
    assert entrasync("zammad-setup", env=env).returncode == 0
    result = entrasync("-v", "sync", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["created"] > 0
    graph, zammad = _port(sandbox.info["graph_url"]), _port(sandbox.info["zammad_url"])
    assert {f"127.0.0.1:{graph}", f"127.0.0.1:{zammad}"} <= set(proxy.tunnels())
    assert PASSWORD not in result.stdout + result.stderr


def test_a_sync_through_a_refusing_proxy_fails_clearly_and_writes_nothing(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, tinyproxy: Any
) -> None:
    proxy = tinyproxy(["ConnectPort 443"])
    http = {"proxy": f"http://entrasync:${{PROXY_PASSWORD}}@127.0.0.1:{proxy.port}", "backoff_base_s": 0.05}
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, http=http)
    env = _sync_env(environ, config, PROXY_PASSWORD=PASSWORD)
    before = sandbox.state("zammad")["users"]
    result = entrasync("sync", "--json", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"http://***@127.0.0.1:{proxy.port} (from http.proxy)" in output and "403" in output
    assert PASSWORD not in output
    assert sandbox.state("zammad")["users"] == before
    assert sandbox.stats("zammad")["total"] == sandbox.stats("graph")["total"] == 0  # nothing got through
