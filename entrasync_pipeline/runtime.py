"""A profile's runtime: its settings, and the clients and stores a step needs, built on first use.

Used as a context manager, so whatever was opened (HTTP pools, the audit database) is closed
when the step ends, on every path. Secrets are read from the environment here, through
``settings``, only when a client is first needed: loading the code location needs none.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from entrasync_pipeline.audit import AuditStore
from entrasync_pipeline.entra.credential import EntraCredential
from entrasync_pipeline.entra.graph import GraphClient
from entrasync_pipeline.lease import Alive, Lease, LeaseOptions
from entrasync_pipeline.notify import Notifier
from entrasync_pipeline.settings import (
    ProfileSettings,
    Proxies,
    Settings,
    entra_credential,
    notification_urls,
    proxy_settings,
    zammad_token,
)
from entrasync_pipeline.transport import Transport
from entrasync_pipeline.zammad.client import ZammadClient


class ProfileRuntime:
    """One profile's settings and, built lazily, its Graph and Zammad clients and audit store."""

    def __init__(self, name: str, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.name, self.settings, self.environ = name, settings, environ
        self._graph: GraphClient | None = None
        self._zammad: ZammadClient | None = None
        self._audit: AuditStore | None = None

    def __enter__(self) -> "ProfileRuntime":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def config(self) -> ProfileSettings:
        return self.settings.profiles[self.name]

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            transport = Transport(self.settings.http, self.settings.tls.ca_bundle, "graph", proxies=self._proxies())
            material = entra_credential(self.config.entra, self.environ)
            self._graph = GraphClient(
                self.config.entra, EntraCredential(self.config.entra, material, transport), transport
            )
        return self._graph

    @property
    def zammad(self) -> ZammadClient:
        if self._zammad is None:
            transport = Transport(
                self.settings.http,
                self.settings.tls.ca_bundle,
                "zammad",
                pool_size=max(16, self.settings.workers * 2),
                proxies=self._proxies(),
            )
            self._zammad = ZammadClient(self.config.zammad, zammad_token(self.config.zammad, self.environ), transport)
        return self._zammad

    def _proxies(self) -> Proxies:
        """The proxy for both clients (the token endpoint goes through the Graph client's transport)."""
        return proxy_settings(self.settings.http, self.environ)

    @property
    def audit(self) -> AuditStore:
        if self._audit is None:
            self._audit = AuditStore(self.settings.audit_url(self.environ))
        return self._audit

    def notifier(self) -> Notifier:
        return Notifier(notification_urls(self.config.notifications, self.environ))

    def lease(self, run_id: str, alive: Alive = lambda _run: None) -> Lease:
        """The profile's run lease for ``run_id``, in the audit database (see ``lease``)."""
        lock = self.settings.lock
        return Lease(self.audit.engine, self.name, run_id, LeaseOptions(lock.ttl_s, lock.wait_s), alive)

    def close(self) -> None:
        for client in (self._graph, self._zammad):
            if client is not None:
                client.transport.close()
        if self._audit is not None:
            self._audit.close()
        self._graph = self._zammad = None
        self._audit = None
