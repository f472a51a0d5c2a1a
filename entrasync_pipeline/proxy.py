"""Which proxy a request goes through: the configured one, unless a NO_PROXY rule names the host.

The rules follow curl's NO_PROXY, which requests, urllib and most tools share: comma-separated
entries; ``*`` bypasses every host; a host name matches itself and its subdomains (``example.com``
and ``.example.com`` both match ``graph.example.com``); an IP address matches itself; a CIDR range
(``10.0.0.0/8``) matches the addresses in it; ``host:port`` matches only that port. Matching is on
the URL's host as written (no DNS look-up) and ignores case. This module decides only; the
transport carries the decision out, and the settings read the environment.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from entrasync_pipeline.settings import Proxies, ProxyChoice

DEFAULT_PORTS = {"https": 443, "http": 80}


def bypasses(host: str, port: int, rules: tuple[str, ...]) -> bool:
    """True when a NO_PROXY rule says ``host:port`` is reached directly."""
    host = host.strip("[]").lower().rstrip(".")
    return any(_matches(host, port, rule.strip().lower()) for rule in rules if rule.strip())


def _matches(host: str, port: int, rule: str) -> bool:
    if rule == "*":
        return True
    rule_host, rule_port = _split_port(rule)
    if rule_port is not None and rule_port != port:
        return False
    address = _address(host)
    if address is not None and "/" in rule_host:
        try:
            return address in ipaddress.ip_network(rule_host, strict=False)
        except ValueError:
            return False
    if address is not None or _address(rule_host) is not None:
        return address is not None and address == _address(rule_host)
    rule_host = rule_host.lstrip(".").rstrip(".")
    return host == rule_host or host.endswith(f".{rule_host}")


def _split_port(rule: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port`` or a bare host / address / CIDR range."""
    if rule.startswith("["):
        inner, _, rest = rule[1:].partition("]")
        return inner, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if rule.count(":") == 1:
        name, _, port = rule.partition(":")
        if port.isdigit():
            return name, int(port)
    return rule, None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def choose(proxies: Proxies, url: str) -> ProxyChoice | None:
    """The proxy for ``url``, or None to connect directly."""
    parts = urlsplit(url)
    choice = proxies.by_scheme.get(parts.scheme)
    if choice is None or not parts.hostname:
        return None
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    return None if bypasses(parts.hostname, port, proxies.no_proxy) else choice


def display(choice: ProxyChoice) -> str:
    """The proxy as an operator may see it: scheme, host and port, never the user or password."""
    parts = urlsplit(choice.url.reveal())
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    credentials = "***@" if parts.username or parts.password else ""
    return f"{parts.scheme}://{credentials}{host}{port} (from {choice.source})"
