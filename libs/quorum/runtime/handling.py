"""Consuming: one durable pull consumer per handler, each message applied exactly once.

For every message: decode (undecodable -> dead letter at once), then in ONE database transaction claim the
event id in the inbox, run the handler and write its outgoing events to the outbox; commit; only then ack.
A handler failure is retried (nak with backoff) up to the consumer's ``max_deliver``; the last failure sends
the message to the dead-letter stream with the error, and consumption goes on. Failures that are not the
message's own spend no delivery: a database that is away or restarting holds the message until it is back,
and a deadlock or serialization failure re-runs the transaction at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quorum.bus.publisher import Publisher
from quorum.clock import Clock
from quorum.db.inbox import claim
from quorum.db.outbox import enqueue
from quorum.events.base import Envelope, Payload, UndecodableMessage, decode, new_envelope
from quorum.metrics import DLQ, DUPLICATES, EVENTS_IN, HANDLER_ERRORS, HANDLER_SECONDS, REDELIVERIES
from quorum.runtime import logs
from quorum.subjects import dead_letter
from quorum.topology import ConsumerSpec

log = logging.getLogger("quorum.consumer")


@dataclass
class Context:
    """A unit of work: a connection inside the open transaction, the message being handled (if any), and
    ways to emit events (outbox, published only if the transaction commits) and to defer in-memory changes
    until after the commit (so a rolled-back attempt leaves no trace in memory either)."""

    conn: AsyncConnection
    clock: Clock
    service: str
    envelope: Envelope[Any] | None = None
    emitted: list[Envelope[Any]] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def message(self) -> Envelope[Any]:
        assert self.envelope is not None, "this unit of work was not started by a message"
        return self.envelope

    def emit(self, payload: Payload, *, key: object = None, event_time: datetime | None = None) -> Envelope[Any]:
        env = new_envelope(
            payload, clock=self.clock, source=self.service, caused_by=self.envelope, key=key,
            event_time=event_time or (self.envelope.event_time if self.envelope else None),
        )
        self.emitted.append(env)
        return env

    def retract(self, env: Envelope[Any]) -> None:
        """Take back an event emitted in this unit of work (e.g. a natural-key conflict showed it was done)."""
        self.emitted.remove(env)


Handler = Callable[[Context], Awaitable[None]]


class _Abandoned(Exception):
    """Gave up on a message because the service is stopping; it stays unacknowledged."""


INFRASTRUCTURE_ERRORS = (DBAPIError, OSError, ConnectionError)
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
CONFLICT_RETRIES = 5
# Client-side losses of the connection carry no SQLSTATE.
_DISCONNECTS = frozenset({"ConnectionDoesNotExistError", "ConnectionFailureError", "InterfaceError"})


class Failure(StrEnum):
    CONNECTIVITY = "connectivity"  # the database is away, restarting or refusing connections: hold the message
    CONFLICT = "conflict"  # lost a lock race (deadlock, serialization): run the transaction again at once
    MESSAGE = "message"  # the message's own failure: nak with backoff, then dead-letter


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and what it wraps (SQLAlchemy's ``orig``, the driver's ``__cause__``), outermost first."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return out


def sqlstate(exc: BaseException) -> str | None:
    for e in _chain(exc):
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def classify(exc: BaseException) -> Failure:
    """By SQLSTATE: class 08 (connection exception) and 57P (operator intervention: admin or crash shutdown,
    "cannot connect now" while starting up or shutting down) are outages; 40P01/40001 are lock races;
    anything else a database says is about the message. Errors outside the database (sockets) are outages."""
    if not isinstance(exc, INFRASTRUCTURE_ERRORS):
        return Failure.MESSAGE
    state = sqlstate(exc)
    if state is not None:
        if state.startswith(("08", "57P")):
            return Failure.CONNECTIVITY
        return Failure.CONFLICT if state in CONFLICT_SQLSTATES else Failure.MESSAGE
    if not isinstance(exc, DBAPIError):
        return Failure.CONNECTIVITY
    chain = _chain(exc)
    if exc.connection_invalidated or any(isinstance(e, (OSError, ConnectionError)) for e in chain) or any(
        type(e).__name__ in _DISCONNECTS for e in chain
    ):
        return Failure.CONNECTIVITY
    return Failure.MESSAGE


T = TypeVar("T")


async def retry_conflicts(attempt: Callable[[], Awaitable[T]], *, retries: int = CONFLICT_RETRIES) -> T:
    """Run a whole transaction, and again (after a tiny jittered pause) while it loses a deadlock or
    serialization race: the other side has committed by then, so a retry almost always goes through."""
    n = 0
    while True:
        try:
            return await attempt()
        except INFRASTRUCTURE_ERRORS as exc:
            n += 1
            if n > retries or classify(exc) is not Failure.CONFLICT:
                raise
            log.info("transaction lost a lock race (%s); running it again (%d/%d)", sqlstate(exc), n, retries)
            await asyncio.sleep(random.uniform(0.002, 0.02) * n)


def _backoff(delivered: int) -> float:
    return min(0.5 * 2 ** (delivered - 1), 10.0)


class ConsumerLoop:
    def __init__(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        js: JetStreamContext,
        engine: AsyncEngine,
        publisher: Publisher,
        clock: Clock,
        service: str,
        on_commit: Callable[[], None] = lambda: None,
        batch: int = 50,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._js = js
        self._engine = engine
        self._publisher = publisher
        self._clock = clock
        self._service = service
        self._on_commit = on_commit
        self._batch = batch
        self._sub: Any = None
        self._stopping: asyncio.Event | None = None
        self._batch_left: list[Msg] = []  # fetched, not yet processed: kept in progress while one is held

    async def bind(self) -> None:
        """Bind to the provisioned durable; raises if provisioning has not declared it yet."""
        await self._js.consumer_info(self.spec.stream, self.spec.durable)
        self._sub = await self._js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream)

    async def close(self) -> None:
        """Drop the pull subscription (the durable consumer stays on the server with its position)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self._sub is not None, "bind() first"
        self._stopping = stop
        while not stop.is_set():
            try:
                msgs = await self._next_batch()
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - connection trouble: the client reconnects, we wait
                log.warning("fetch on %s failed: %s", self.spec.durable, exc)
                await asyncio.sleep(1.0)
                continue
            for i, msg in enumerate(msgs):
                # Finish the fetched batch even when stopping: each message is acked or left to redeliver.
                self._batch_left = msgs[i + 1:]
                await self.process(msg)
            self._batch_left = []

    async def _next_batch(self) -> list[Msg]:
        """Drain what is available at once; when idle, long-poll for ONE message so it is handled the moment
        it arrives (a batch long-poll would hold the first message until the batch fills or times out)."""
        try:
            return await self._sub.fetch(self._batch, timeout=0.1)
        except TimeoutError:
            return await self._sub.fetch(1, timeout=self.spec.idle_poll_s)

    async def process(self, msg: Msg) -> None:
        delivered = msg.metadata.num_delivered
        labels = (self._service, self.spec.durable)
        if delivered > 1:
            REDELIVERIES.labels(*labels).inc()
        try:
            envelope = decode(msg.data)
        except UndecodableMessage as exc:
            EVENTS_IN.labels(*labels, "undecodable").inc()
            await self._dead_letter(msg, f"undecodable: {exc}")
            return
        EVENTS_IN.labels(*labels, envelope.event_type).inc()
        tok_c = logs.correlation_id.set(str(envelope.correlation_id))
        tok_e = logs.event_id.set(str(envelope.event_id))
        started = time.perf_counter()
        try:
            ctx = await self._apply_when_infrastructure_allows(envelope, msg)
        except _Abandoned:
            return  # stopping while the database is away: not acked, so it is redelivered later
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
            HANDLER_ERRORS.labels(*labels).inc()
            if delivered >= self.spec.max_deliver:
                log.exception("%s failed on delivery %d/%d: dead-lettering", envelope.event_type, delivered,
                              self.spec.max_deliver)
                await self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
            else:
                log.warning("%s failed on delivery %d/%d (%s); will retry", envelope.event_type, delivered,
                            self.spec.max_deliver, exc)
                await msg.nak(delay=_backoff(delivered))
            return
        finally:
            HANDLER_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            logs.correlation_id.reset(tok_c)
            logs.event_id.reset(tok_e)
        await self._ack(msg)  # only after the transaction committed
        if ctx is not None:
            for fn in ctx.after_commit:
                fn()
            if ctx.emitted:
                self._on_commit()

    async def _apply(self, envelope: Envelope[Any]) -> Context | None:
        """One transaction: inbox claim, handler, outbox. None when the inbox already had the event."""
        async with self._engine.begin() as conn:
            if not await claim(conn, self.spec.durable, envelope.event_id):
                DUPLICATES.labels(self._service, self.spec.durable).inc()
                return None
            ctx = Context(conn=conn, clock=self._clock, service=self._service, envelope=envelope)
            await self._handler(ctx)
            await enqueue(conn, self._service, ctx.emitted)
            return ctx

    async def _apply_when_infrastructure_allows(self, envelope: Envelope[Any], msg: Msg) -> Context | None:
        """An unreachable or restarting database is not the message's fault: keep the message (and the rest of
        its batch) in progress and retry until the database is back, instead of burning deliveries into the
        DLQ. Lock races are re-run at once, in-process."""
        delay = 0.5
        while True:
            try:
                return await retry_conflicts(lambda: self._apply(envelope))
            except INFRASTRUCTURE_ERRORS as exc:
                if classify(exc) is not Failure.CONNECTIVITY:
                    raise
                if self._stopping is not None and self._stopping.is_set():
                    raise _Abandoned() from exc
                log.warning("database unavailable (%s); holding %s and retrying in %.1fs",
                            str(exc).splitlines()[0][:200], envelope.event_type, delay)
                await self._hold(msg, delay)
                delay = min(delay * 2, 10.0)

    async def _hold(self, msg: Msg, seconds: float) -> None:
        """Wait, telling the server every third of ``ack_wait`` that this message and the rest of its fetched
        batch are still being worked on, so none of them is redelivered (which would count a delivery)."""
        step = max(self.spec.ack_wait_s / 3, 0.05)
        deadline = time.monotonic() + seconds
        while True:
            for m in (msg, *self._batch_left):
                with contextlib.suppress(Exception):
                    await m.in_progress()
            left = deadline - time.monotonic()
            if left <= 0 or (self._stopping is not None and self._stopping.is_set()):
                return
            await asyncio.sleep(min(step, left))

    async def _ack(self, msg: Msg) -> None:
        await msg.ack()

    async def _dead_letter(self, msg: Msg, error: str) -> None:
        meta = msg.metadata
        headers = {
            "Quorum-Error": error[:4000],
            "Quorum-Original-Subject": msg.subject,
            "Quorum-Consumer": self.spec.durable,
            "Quorum-Stream-Seq": str(meta.sequence.stream),
            "Quorum-Delivered": str(meta.num_delivered),
        }
        await self._publisher.publish_raw(
            dead_letter(self.spec.durable),
            msg.data,
            msg_id=f"dlq:{self.spec.durable}:{meta.sequence.stream}",
            event_type="dead_letter",
            headers=headers,
        )
        DLQ.labels(self._service, self.spec.durable).inc()
        await self._ack(msg)  # it is safe in the DLQ; stop redelivering it
