"""Fault injection for the sandbox servers (DESIGN.md §4.3).

A rule matches a route key (``"<METHOD> <route template>"``) or ``"*"``; the first matching rule
decides. ``latency_ms`` applies to every matching request, ``rate`` is the share that fails.
"Punish early retry" imitates Dev Proxy's RetryAfterPlugin (reference/microsoft-graph-and-msal.md
§8): a request repeated before the Retry-After it was given has passed is throttled again and the
window restarts. This module decides; the server carries the decision out on the wire.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, field_validator

FAULT_STATUSES = (429, 500, 502, 503, 504)


class FaultRule(BaseModel):
    """One rule of ``PUT /_sandbox/faults``."""

    route: str = "*"
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    statuses: list[int] = Field(default_factory=lambda: [503])
    retry_after: float | str | None = None
    latency_ms: tuple[int, int] | None = None
    reset: bool = False
    punish_early_retry: bool = False
    html: bool = False
    truncate: bool = False
    methods: list[str] | None = None

    @field_validator("statuses")
    @classmethod
    def _known_statuses(cls, value: list[int]) -> list[int]:
        unknown = [s for s in value if s not in FAULT_STATUSES]
        if unknown or not value:
            raise ValueError(f"statuses must be a non-empty subset of {FAULT_STATUSES}, got {value}")
        return value

    @field_validator("retry_after")
    @classmethod
    def _retry_after_form(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str) and value != "http-date":
            raise ValueError("retry_after is a number of seconds or the string 'http-date'")
        return value

    def matches(self, route_key: str) -> bool:
        return self.route == "*" or self.route == route_key


class FaultConfig(BaseModel):
    rules: list[FaultRule] = Field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class FaultDecision:
    """What the server must do with one request."""

    latency_s: float = 0.0
    action: str | None = None  # None | "status" | "reset" | "truncate" | "html"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    early_retry: bool = False


NO_FAULT = FaultDecision()


def retry_after_header(value: float | str | None, now: float) -> tuple[str | None, float]:
    """Render Retry-After and return the moment before which a retry is "early"."""
    if value is None:
        return None, now
    if value == "http-date":
        # HTTP-date has one-second resolution: name a whole second at least 2 s ahead.
        target = math.ceil(now) + 2
        return email.utils.formatdate(target, usegmt=True), float(target)
    seconds = float(value)
    text = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
    return text, now + seconds


class FaultEngine:
    """Thread-safe store of fault rules and of throttling windows per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._rng = random.Random()
        self._windows: dict[str, tuple[float, FaultRule]] = {}
        self.injected = 0
        self.early_retries = 0

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._windows.clear()

    def clear(self) -> None:
        self.configure(FaultConfig())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._config.model_dump(mode="json"),
                "injected": self.injected,
                "early_retries": self.early_retries,
            }

    def reset_counters(self) -> None:
        with self._lock:
            self.injected = 0
            self.early_retries = 0

    def decide(self, route_key: str, request_identity: str) -> FaultDecision:
        """Pick the fault for one request; ``request_identity`` names "the same request"."""
        with self._lock:
            rule = next((r for r in self._config.rules if r.matches(route_key)), None)
            if rule is None:
                return NO_FAULT
            latency = self._latency(rule)
            now = time.time()
            window = self._windows.get(request_identity)
            if window and now < window[0] and window[1].punish_early_retry:
                self.early_retries += 1
                self.injected += 1
                return self._throttle(rule, request_identity, now, latency, early=True)
            if self._rng.random() >= rule.rate:
                return FaultDecision(latency_s=latency)
            self.injected += 1
            if rule.reset:
                return FaultDecision(latency_s=latency, action="reset")
            if rule.truncate:
                return FaultDecision(latency_s=latency, action="truncate", status=200)
            status = self._rng.choice(rule.statuses)
            if rule.html:
                return FaultDecision(latency_s=latency, action="html", status=status)
            if status in (429, 503):
                return self._throttle(rule, request_identity, now, latency, status=status)
            return FaultDecision(latency_s=latency, action="status", status=status)

    def _latency(self, rule: FaultRule) -> float:
        if not rule.latency_ms:
            return 0.0
        low, high = rule.latency_ms
        return self._rng.uniform(low, max(low, high)) / 1000.0

    def _throttle(
        self,
        rule: FaultRule,
        identity: str,
        now: float,
        latency: float,
        status: int = 429,
        early: bool = False,
    ) -> FaultDecision:
        header, not_before = retry_after_header(rule.retry_after, now)
        headers = {"Retry-After": header} if header else {}
        if header:
            self._windows[identity] = (not_before, rule)
        return FaultDecision(latency_s=latency, action="status", status=status, headers=headers, early_retry=early)
