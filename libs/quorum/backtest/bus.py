"""An in-process bus with the topology's routing: an event reaches the durable consumers whose filter subjects
match its subject, exactly as JetStream would deliver it, in one thread and in causal order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any

from quorum.clock import TestClock
from quorum.events.base import Envelope, new_envelope
from quorum.outcome import Emit
from quorum.subjects import subject_of
from quorum.topology import TOPOLOGY, ConsumerSpec

Deliver = Callable[[str, Envelope[Any]], None]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _no_values(payload: Any) -> tuple[()]:
    return ()


class InProcessBus:
    """Events queue up and are handed to each consumer in the order they were emitted (breadth first: a
    candle reaches every consumer of candles before anything those consumers emitted), the way a settled
    pipeline sees them. ``deliver(durable, envelope)`` is the runner's dispatch."""

    def __init__(self, deliver: Deliver, consumers: tuple[ConsumerSpec, ...] = TOPOLOGY.consumers) -> None:
        self._deliver = deliver
        self._consumers = consumers
        self._routes: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._routing: dict[type, Callable[[Any], Any]] = {}  # per payload type: its routing values
        self._queue: deque[tuple[Envelope[Any], frozenset[str] | None]] = deque()
        self.clock = TestClock()
        self.published: list[Envelope[Any]] = []

    def route(self, envelope: Envelope[Any]) -> tuple[str, ...]:
        """The consumers of ``envelope``; the subject depends only on its type and routing values."""
        p = envelope.payload
        kind = type(p)
        values = self._routing.get(kind)
        if values is None:
            values = self._routing[kind] = attrgetter(*kind.ROUTING) if kind.ROUTING else _no_values
        key = (kind, values(p))
        durables = self._routes.get(key)
        if durables is None:
            subject = subject_of(envelope)
            durables = self._routes[key] = tuple(
                c.durable for c in self._consumers if any(matches(f, subject) for f in c.filters))
        return durables

    def publish(self, envelope: Envelope[Any], only: frozenset[str] | None = None) -> None:
        """Queue ``envelope`` for its consumers (or, delivering it again, only those named in ``only``)."""
        if only is None:
            self.published.append(envelope)
        self._queue.append((envelope, only))

    def emit(self, source: str, cause: Envelope[Any] | None, e: Emit, now: datetime) -> Envelope[Any]:
        """An ``Emit`` as the service's outbox would publish it (same id derivation as ``Context.emit``)."""
        self.clock.set(now)
        env = new_envelope(e.payload, clock=self.clock, source=source, caused_by=cause, key=e.key,
                           event_time=e.event_time or (cause.event_time if cause else None))
        self.publish(env)
        return env

    def drain(self, skip: frozenset[str] = frozenset()) -> None:
        """Deliver until nothing is left; ``skip`` holds consumers back (the envelope is redelivered to them
        by a later ``publish(..., only=...)``)."""
        queue, deliver = self._queue, self._deliver
        while queue:
            envelope, only = queue.popleft()
            for durable in self.route(envelope):
                if durable not in skip if only is None else durable in only:
                    deliver(durable, envelope)
