"""Injected clocks: domain code asks a Clock for the time and never reads the wall clock itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class LiveClock:
    """Wall-clock time in UTC; the only place the real time enters the system."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class TestClock:
    """A settable clock for tests and deterministic replays."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("TestClock needs an aware datetime")
        self._now = when

    def advance(self, delta: timedelta) -> None:
        self._now += delta
