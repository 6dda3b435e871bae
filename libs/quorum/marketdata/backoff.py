"""Retries of exchange REST calls: exponential backoff with jitter, honouring the server's ``Retry-After``."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import ccxt.async_support as ccxt

from quorum.clock import Clock

log = logging.getLogger("quorum.market_data.backfill")

RETRYABLE = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.RequestTimeout, ccxt.ExchangeNotAvailable,
             ccxt.NetworkError)
MAX_RETRY_AFTER_S = 900.0  # a broken header must not park a backfill for days

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class RetryTally(Protocol):
    """Where a retried call is counted and what its log lines name (a series' report)."""

    retries: int

    @property
    def label(self) -> str: ...


def retry_after_seconds(headers: dict[str, str] | None, now: datetime) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date), if it sent a usable one."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


@dataclass
class Backoff:
    """Exponential backoff with equal jitter (half fixed, half random), never shorter than the server's
    ``Retry-After``. On top of ccxt's own rate limiter, which spaces requests but cannot know about a 429."""

    clock: Clock
    sleep: Sleep = asyncio.sleep
    max_retries: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**attempt)
        jittered = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        return max(jittered, retry_after or 0.0)

    async def call(self, exchange: Any, fn: Callable[[], Awaitable[T]], report: RetryTally) -> T:
        for attempt in range(self.max_retries + 1):
            exchange.last_response_headers = None  # so a Retry-After read below belongs to this failure
            try:
                return await fn()
            except RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise
                wait = self.delay(attempt, retry_after_seconds(exchange.last_response_headers, self.clock.now()))
                report.retries += 1
                log.warning("%s: %s (%s); retry %d/%d in %.2fs", report.label, type(exc).__name__,
                            str(exc)[:200], attempt + 1, self.max_retries, wait)
                await self.sleep(wait)
        raise AssertionError("unreachable")
