"""The heartbeat: one GET to a dead man's switch after each run (healthchecks.io, Uptime Kuma, Cronitor).

The monitor raises the alarm when the pings stop, which is exactly the failure nothing inside
entrasync can report: a run that never starts (daemon down, schedule off, run stuck in the queue).
So the ping is plain and cheap: one GET through the usual transport (TLS verified, the configured
CA bundle honoured), a short timeout and no retry — a lost ping is what the monitor's grace period
is for, and a retried one could arrive twice. It never raises: a heartbeat that cannot be delivered
is logged and the run goes on. The URL embeds the check's token, so it is never logged.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from entrasync_pipeline.settings import HttpSettings, SecretValue
from entrasync_pipeline.transport import NoResponse, Transport

log = logging.getLogger(__name__)


class _RedactPaths(logging.Filter):
    """urllib3 logs each request's path at DEBUG; a ping path is the check's token, so it is masked."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = text
        for secret in self.secrets:
            masked = masked.replace(secret, "/<heartbeat>")
        if masked != text:
            record.msg, record.args = masked, ()
        return True


_REDACT = _RedactPaths()
logging.getLogger("urllib3.connectionpool").addFilter(_REDACT)


def ping(url: SecretValue, http: HttpSettings, ca_bundle: str | None, timeout_s: float, suffix: str = "") -> bool:
    """GET ``url`` + ``suffix`` once; True when the monitor answered 2xx/3xx. Never raises."""
    single = http.model_copy(update={"connect_timeout_s": timeout_s, "read_timeout_s": timeout_s, "max_attempts": 1})
    transport = Transport(single, ca_bundle, "heartbeat", pool_size=1)
    what = "failure heartbeat" if suffix else "heartbeat"
    parts = urlsplit(url.reveal() + suffix)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(secret) > 1:  # "/" alone is no secret, and masking it would garble every line
        _REDACT.secrets.add(secret)
    try:
        response = transport.send("GET", url.reveal() + suffix, route=what, idempotent=True, expect_json=False)
    except NoResponse as exc:
        log.warning("%s not delivered: no response (%s)", what, exc.kind)
        return False
    except Exception as exc:  # a malformed URL or anything else: never fail the run for a ping
        log.warning("%s not delivered: %s", what, type(exc).__name__)
        return False
    finally:
        transport.close()
    if response.status >= 400:
        log.warning("%s not accepted: HTTP %d", what, response.status)
        return False
    log.info("%s delivered (HTTP %d)", what, response.status)
    return True
