"""Consuming: one durable pull consumer per handler, each message applied exactly once.

A fetched batch of messages is applied in ONE database transaction: claim every event id in the inbox, run each
message's handler in its own savepoint, write what the handlers emitted to the outbox; commit; only then ack,
and publish the emitted events at once (the outbox relay only sweeps up what a crash left between commit and
publish). A handler failure rolls back its own savepoint alone: the rest of the batch commits and the failing
message is retried (nak with backoff) up to the consumer's ``max_deliver``; the last failure sends it to the
dead-letter stream with the error, and consumption goes on. Undecodable messages are dead-lettered at once.
Failures that are not the message's own spend no delivery: a database that is away or restarting holds the batch
until it is back, and a deadlock or serialization failure re-runs the transaction at once (a message that loses
such a race mid-batch lets the messages before it commit first, releasing their locks). A failure outside every
handler (at commit, say) applies that batch again one message per transaction, to find whose it is. With
``batch_transactions`` off, every message is its own transaction.

In-memory state: handlers change it only through ``ctx.after_commit``. Inside a batch, a message's callbacks run
before the next message of the batch is handled, as that message would see them one transaction per message;
the last message's run after the commit. If the batch's transaction is then lost as a whole (the database went
away, the commit failed), memory is ahead of the database: ``on_lost`` (``Service.on_batch_lost``) is awaited
before the batch is applied again.
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
from quorum.db.inbox import claim_all, unclaim
from quorum.db.outbox import OutboxRelay, Queued, enqueue
from quorum.events.base import Envelope, Payload, UndecodableMessage, decode, new_envelope
from quorum.metrics import DLQ, DUPLICATES, EVENTS_IN, HANDLER_ERRORS, HANDLER_SECONDS, REDELIVERIES
from quorum.runtime import logs
from quorum.subjects import dead_letter
from quorum.telemetry import observe_committed
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
    serialization race: the other side has committed by then, so a retry almost always goes through. Also run it
    again at once, one time, when its pooled connection turned out to be closed (the server restarted since it
    was last used; the pool has been invalidated and reconnects): what pinging every checkout would catch, paid
    only when it happens."""
    n = 0
    stale_retried = False
    while True:
        try:
            return await attempt()
        except INFRASTRUCTURE_ERRORS as exc:
            if isinstance(exc, DBAPIError) and exc.connection_invalidated and not stale_retried:
                stale_retried = True
                log.info("a pooled database connection was closed (%s); running the transaction again",
                         str(exc).splitlines()[0][:200])
                continue
            n += 1
            if n > retries or classify(exc) is not Failure.CONFLICT:
                raise
            log.info("transaction lost a lock race (%s); running it again (%d/%d)", sqlstate(exc), n, retries)
            await asyncio.sleep(random.uniform(0.002, 0.02) * n)


def run_after_commit(ctx: Context) -> bool:
    """Run (once) the in-memory changes a unit of work deferred; True when there were any."""
    fns, ctx.after_commit = ctx.after_commit, []
    for fn in fns:
        fn()
    return bool(fns)


async def wait_out_outages(attempt: Callable[[], Awaitable[T]], *, stopping: asyncio.Event, what: str) -> T:
    """Run ``attempt`` (idempotent) until it gets through an outage of the database or the bus: for work outside a
    consumer that must not fail because a server restarted under it. Other errors propagate; stopping ends it."""
    delay = 0.5
    while True:
        try:
            return await retry_conflicts(attempt)
        except Exception as exc:
            if stopping.is_set() or not (classify(exc) is Failure.CONNECTIVITY or _is_bus_outage(exc)):
                raise
            log.warning("%s: infrastructure unavailable (%s); retrying in %.1fs", what,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _is_bus_outage(exc: BaseException) -> bool:
    from nats.errors import ConnectionClosedError, NoServersError
    from nats.errors import TimeoutError as NatsTimeout

    return isinstance(exc, ConnectionClosedError | NoServersError | NatsTimeout | TimeoutError)


def _backoff(delivered: int) -> float:
    return min(0.5 * 2 ** (delivered - 1), 10.0)


@dataclass(eq=False)
class _Item:
    """A fetched message on its way through a transaction, and how that transaction treated it."""

    msg: Msg
    envelope: Envelope[Any]
    ctx: Context | None = None  # applied: its unit of work committed
    duplicate: bool = False  # the inbox already had its event id
    error: BaseException | None = None  # its handler failed: nak or dead-letter once the others committed
    seconds: float = 0.0

    def reset(self) -> None:
        self.ctx, self.duplicate, self.error, self.seconds = None, False, None, 0.0


class _Savepoints:
    """A savepoint per message of a batch, sent on the driver's connection as plain queries: releasing the one
    before and opening the next is one round trip, and the commit releases the last. (Up to 64 savepoints that
    write fit PostgreSQL's per-backend subtransaction cache; more make every other backend's snapshots slower,
    hence the default batch of 64.)"""

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self._open = False

    async def open(self) -> None:
        await self._driver.execute("RELEASE SAVEPOINT quorum_message; SAVEPOINT quorum_message" if self._open
                                   else "SAVEPOINT quorum_message")
        self._open = True

    async def roll_back(self) -> None:
        await self._driver.execute("ROLLBACK TO SAVEPOINT quorum_message")


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
        batch: int = 64,
        batch_transactions: bool = True,
        on_lost: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._js = js
        self._engine = engine
        self._publisher = publisher
        self._outbox = OutboxRelay(engine, publisher, service)
        self._clock = clock
        self._service = service
        self._batch = batch
        self._batch_transactions = batch_transactions
        self._on_lost = on_lost
        self._labels = (service, spec.durable)
        for counter in (DLQ, DUPLICATES, HANDLER_ERRORS, REDELIVERIES):
            counter.labels(*self._labels)  # 0 from the start: a panel shows 0, an increase() sees the first one
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
            # Finish the fetched batch even when stopping: each message is acked or left to redeliver.
            await self.process_batch(msgs)

    async def _next_batch(self) -> list[Msg]:
        """Drain what is available at once; when idle, long-poll for ONE message so it is handled the moment
        it arrives (a batch long-poll would hold the first message until the batch fills or times out)."""
        try:
            return await self._sub.fetch(self._batch, timeout=0.1)
        except TimeoutError:
            return await self._sub.fetch(1, timeout=self.spec.idle_poll_s)

    async def process(self, msg: Msg) -> None:
        await self.process_batch([msg])

    async def process_batch(self, msgs: list[Msg]) -> None:
        items = [item for item in [await self._decoded(m) for m in msgs] if item is not None]
        groups = [items] if self._batch_transactions else [[item] for item in items]
        for n, group in enumerate(groups):
            if not group:
                continue
            try:
                await self._apply(group, waiting=[item.msg for later in groups[n + 1:] for item in later])
            except _Abandoned:
                return  # stopping while the database is away: not acked, so they are redelivered later

    async def _decoded(self, msg: Msg) -> _Item | None:
        """The message as an envelope; an undecodable one goes to the dead letters at once (None)."""
        if msg.metadata.num_delivered > 1:
            REDELIVERIES.labels(*self._labels).inc()
        try:
            envelope = decode(msg.data)
        except UndecodableMessage as exc:
            EVENTS_IN.labels(*self._labels, "undecodable").inc()
            await self._dead_letter(msg, f"undecodable: {exc}")
            return None
        EVENTS_IN.labels(*self._labels, envelope.event_type).inc()
        return _Item(msg, envelope)

    async def _apply(self, items: list[_Item], *, waiting: list[Msg]) -> None:
        """Commit the items (in as many transactions as lock races split them into), then settle each."""
        while items:
            try:
                covered, queued = await self._when_infrastructure_allows(items, waiting)
            except _Abandoned:
                raise
            except Exception as exc:  # noqa: BLE001 - the message's own failure (or, in a batch, an unknown one's)
                if len(items) > 1:
                    log.warning("a batch of %d on %s failed outside its handlers (%s); applying it one by one",
                                len(items), self.spec.durable, exc)
                    for i, item in enumerate(items):
                        await self._apply([item], waiting=[*(m.msg for m in items[i + 1:]), *waiting])
                    return
                items[0].ctx, items[0].error = None, exc  # rolled back: nothing of it to adopt
                covered, queued = 1, []
            await self._settle(items[:covered], queued)
            items = items[covered:]

    async def _when_infrastructure_allows(self, items: list[_Item], waiting: list[Msg]) -> tuple[int, list[Queued]]:
        """An unreachable or restarting database is not the messages' fault: keep them (and the rest of the
        fetch) in progress and retry until the database is back, instead of burning deliveries into the DLQ.
        Lock races are re-run at once, in-process."""
        delay = 0.5
        while True:
            try:
                return await retry_conflicts(lambda: self._transaction(items))
            except INFRASTRUCTURE_ERRORS as exc:
                if classify(exc) is not Failure.CONNECTIVITY:
                    raise
                if self._stopping is not None and self._stopping.is_set():
                    raise _Abandoned() from exc
                log.warning("database unavailable (%s); holding %d message(s) of %s and retrying in %.1fs",
                            str(exc).splitlines()[0][:200], len(items), self.spec.durable, delay)
                await self._hold([*(item.msg for item in items), *waiting], delay)
                delay = min(delay * 2, 10.0)

    async def _transaction(self, items: list[_Item]) -> tuple[int, list[Queued]]:
        """One transaction: inbox claims, each handler (in a savepoint when there are several), the outbox.
        Returns how many of the items it covered (fewer than all when one lost a lock race mid-batch: the ones
        before it commit, the rest are claimed again by the next transaction) and what it queued to publish."""
        for item in items:
            item.reset()
        ran_early = False
        covered = len(items)
        try:
            async with self._engine.begin() as conn:
                fresh = await claim_all(conn, self.spec.durable, [item.envelope.event_id for item in items])
                nested = _Savepoints((await conn.get_raw_connection()).driver_connection) if len(items) > 1 else None
                previous: Context | None = None
                for k, item in enumerate(items):
                    event_id = item.envelope.event_id
                    if event_id not in fresh:  # applied before (or earlier in this batch, under another msg id)
                        item.duplicate = True
                        continue
                    fresh.discard(event_id)
                    if previous is not None:  # this message must see what the one before did to memory
                        ran_early |= run_after_commit(previous)
                    ctx = Context(conn=conn, clock=self._clock, service=self._service, envelope=item.envelope)
                    try:
                        await self._handle(ctx, item, nested)
                    except Exception as exc:
                        failure = classify(exc)
                        if nested is None or failure is Failure.CONNECTIVITY or (failure, k) == (Failure.CONFLICT, 0):
                            raise  # the whole transaction goes: held, run again, or this one message's failure
                        if failure is Failure.CONFLICT:  # commit what came before; it goes again on its own
                            await unclaim(conn, self.spec.durable, [event_id, *fresh])
                            covered = k
                            break
                        await unclaim(conn, self.spec.durable, [event_id])
                        item.error = exc
                        continue
                    item.ctx = previous = ctx
                emitted = [e for item in items[:covered] if item.ctx is not None for e in item.ctx.emitted]
                queued = await enqueue(conn, self._service, emitted)
        except BaseException:
            if ran_early and self._on_lost is not None:
                log.warning("a batch on %s was lost after changing memory; the service reloads it", self.spec.durable)
                await self._on_lost()
            raise
        return covered, queued

    async def _handle(self, ctx: Context, item: _Item, nested: _Savepoints | None) -> None:
        tok_c = logs.correlation_id.set(str(item.envelope.correlation_id))
        tok_e = logs.event_id.set(str(item.envelope.event_id))
        started = time.perf_counter()
        try:
            if nested is None:
                await self._handler(ctx)
                return
            await nested.open()
            try:
                await self._handler(ctx)
            except Exception:
                await nested.roll_back()  # a failure undoes this message alone
                raise
        finally:
            item.seconds = time.perf_counter() - started
            logs.correlation_id.reset(tok_c)
            logs.event_id.reset(tok_e)

    async def _settle(self, items: list[_Item], queued: list[Queued]) -> None:
        """After the commit: ack what it covered, adopt the in-memory changes, publish what was emitted at
        once (what a failed publish leaves, the outbox relay sweeps up), and nak or dead-letter failures."""
        for item in items:
            if item.duplicate:
                DUPLICATES.labels(*self._labels).inc()
            else:
                HANDLER_SECONDS.labels(*self._labels).observe(item.seconds)
            if item.error is not None:
                continue
            await self._ack(item.msg)  # only after the transaction committed
            if item.ctx is not None:
                run_after_commit(item.ctx)
                observe_committed(self._service, item.ctx.emitted)
        if queued:
            await self._outbox.publish_now(queued)
        for item in items:
            if item.error is not None:
                await self._failed(item)

    async def _failed(self, item: _Item) -> None:
        HANDLER_ERRORS.labels(*self._labels).inc()
        delivered, kind, exc = item.msg.metadata.num_delivered, item.envelope.event_type, item.error
        tok_c = logs.correlation_id.set(str(item.envelope.correlation_id))
        tok_e = logs.event_id.set(str(item.envelope.event_id))
        try:
            if delivered >= self.spec.max_deliver:
                log.error("%s failed on delivery %d/%d: dead-lettering", kind, delivered, self.spec.max_deliver,
                          exc_info=exc)
                await self._dead_letter(item.msg, f"{type(exc).__name__}: {exc}")
            else:
                log.warning("%s failed on delivery %d/%d (%s); will retry", kind, delivered, self.spec.max_deliver,
                            exc)
                await item.msg.nak(delay=_backoff(delivered))
        finally:
            logs.correlation_id.reset(tok_c)
            logs.event_id.reset(tok_e)

    async def _hold(self, msgs: list[Msg], seconds: float) -> None:
        """Wait, telling the server every third of ``ack_wait`` that these messages (the transaction's and the
        rest of the fetch) are still being worked on, so none of them is redelivered (which would count)."""
        step = max(self.spec.ack_wait_s / 3, 0.05)
        deadline = time.monotonic() + seconds
        while True:
            for m in msgs:
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
