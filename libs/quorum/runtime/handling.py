"""Consuming: one durable pull consumer per handler, each message applied exactly once.

For every message: decode (undecodable -> dead letter at once), then in ONE database transaction claim the
event id in the inbox, run the handler and write its outgoing events to the outbox; commit; only then ack.
A handler failure is retried (nak with backoff) up to the consumer's ``max_deliver``; the last failure sends
the message to the dead-letter stream with the error, and consumption goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


Handler = Callable[[Context], Awaitable[None]]


class _Abandoned(Exception):
    """Gave up on a message because the service is stopping; it stays unacknowledged."""


INFRASTRUCTURE_ERRORS = (DBAPIError, OSError, ConnectionError)


def _is_connectivity(exc: BaseException) -> bool:
    """True for 'cannot talk to the database', False for errors the message itself causes."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc.orig, (OSError, ConnectionError)) or (
            type(exc.orig).__name__ in {"ConnectionDoesNotExistError", "CannotConnectNowError",
                                         "ConnectionFailureError", "InterfaceError"}
        )
    return True


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
            for msg in msgs:
                # Finish the fetched batch even when stopping: each message is acked or left to redeliver.
                await self.process(msg)

    async def _next_batch(self) -> list[Msg]:
        """Drain what is available at once; when idle, long-poll for ONE message so it is handled the moment
        it arrives (a batch long-poll would hold the first message until the batch fills or times out)."""
        try:
            return await self._sub.fetch(self._batch, timeout=0.1)
        except TimeoutError:
            return await self._sub.fetch(1, timeout=2.0)

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
        """An unreachable database is not the message's fault: keep the message (extending its ack
        deadline) and retry until the database is back, instead of burning deliveries into the DLQ."""
        delay = 0.5
        while True:
            try:
                return await self._apply(envelope)
            except INFRASTRUCTURE_ERRORS as exc:
                if not _is_connectivity(exc):
                    raise
                if self._stopping is not None and self._stopping.is_set():
                    raise _Abandoned() from exc
                log.warning("database unavailable (%s); holding %s and retrying in %.1fs",
                            str(exc).splitlines()[0][:200], envelope.event_type, delay)
                with contextlib.suppress(Exception):
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

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
