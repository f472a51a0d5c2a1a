"""The heartbeat: one GET over verified TLS, a short timeout, and never an exception or a logged URL.

A dead man's switch is only useful when it is cheap and harmless: a monitor that is down, slow,
refusing or unknown to our CA bundle must cost the run nothing but a warning, and the URL (the
check's token) must not end up in the logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from entrasync_pipeline.heartbeat import ping
from entrasync_pipeline.settings import HttpSettings, SecretValue

HTTP = HttpSettings(max_attempts=6, backoff_base_s=0.01, backoff_max_s=0.05)


def test_one_get_per_ping_and_the_fail_suffix_appended(heartbeat: Any) -> None:
    url = SecretValue(heartbeat.url, "heartbeat URL")
    assert ping(url, HTTP, str(heartbeat.ca_bundle), 5.0) is True
    assert ping(url, HTTP, str(heartbeat.ca_bundle), 5.0, "/fail") is True
    assert heartbeat.paths == ["/ping/5e3c-secret-token", "/ping/5e3c-secret-token/fail"]


def test_a_refusing_monitor_is_one_request_and_a_warning(heartbeat: Any, caplog: pytest.LogCaptureFixture) -> None:
    heartbeat.status = 503  # retryable elsewhere; a ping is never retried (it could count twice)
    with caplog.at_level(logging.DEBUG):
        assert ping(SecretValue(heartbeat.url, "h"), HTTP, str(heartbeat.ca_bundle), 5.0) is False
    assert len(heartbeat.paths) == 1
    assert "HTTP 503" in caplog.text and "secret-token" not in caplog.text


def test_an_unknown_ca_is_refused_not_skipped(heartbeat: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert ping(SecretValue(heartbeat.url, "h"), HTTP, None, 5.0) is False  # system CAs only
    assert heartbeat.paths == [] and "tls" in caplog.text and "secret-token" not in caplog.text


def test_a_slow_monitor_costs_at_most_the_timeout(heartbeat: Any, caplog: pytest.LogCaptureFixture) -> None:
    heartbeat.delay_s = 3.0
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        assert ping(SecretValue(heartbeat.url, "h"), HTTP, str(heartbeat.ca_bundle), 0.5) is False
    assert time.monotonic() - started < 2.5
    assert "read-timeout" in caplog.text and "secret-token" not in caplog.text


def test_nobody_listening_or_a_malformed_url_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert ping(SecretValue("https://127.0.0.1:9/ping/secret-token", "h"), HTTP, None, 1.0) is False
        assert ping(SecretValue("not a url secret-token", "h"), HTTP, None, 1.0) is False
    assert "secret-token" not in caplog.text
