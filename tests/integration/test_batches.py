"""A fetched batch applied in one transaction, against a real JetStream and a real PostgreSQL: each message
still claimed and applied once, a failing one isolated in its savepoint, a lock race mid-batch committing what
came before it, memory changes seen by the next message of the batch, and what was emitted published at once
(or swept up by the relay when the publish never happened)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from nats.aio.msg import Msg
from quorum.db.outbox import OutboxRelay
from quorum.db.tables import inbox, outbox
from quorum.events.control import TradingHalted
from quorum.runtime.handling import ConsumerLoop, Context
from quorum.subjects import DEAD_LETTER_WILDCARD, subject
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from tests.integration.test_bus import Recorder, halt, loop_for, stream_messages, with_consumer

pytestmark = pytest.mark.integration


async def fetched(loop: ConsumerLoop, n: int) -> list[Msg]:
    """Exactly ``n`` messages in one fetch: one batch."""
    msgs: list[Msg] = []
    while len(msgs) < n:
        msgs += await loop._sub.fetch(n - len(msgs), timeout=5)
    return msgs


async def publish_halts(js: Any, *reasons: str) -> None:
    from quorum.bus.publisher import Publisher

    pub = Publisher(js, "test")
    for r in reasons:
        await pub.publish(halt(r, f"k-{r}"))


async def count(engine: Any, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


class Remembering(Recorder):
    """Keeps what it applied in memory too, changed only after the commit, and checks that each message sees
    the memory the one before it left."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__(fail_on)
        self.memory: list[str] = []
        self.seen: list[list[str]] = []

    async def __call__(self, ctx: Context) -> None:
        self.seen.append(list(self.memory))
        await super().__call__(ctx)
        reason = ctx.message.payload.reason
        ctx.after_commit.append(lambda: self.memory.append(reason))


async def test_a_failing_message_rolls_back_alone_and_the_rest_of_its_batch_commits(js: Any, engine: Any) -> None:
    spec = await with_consumer(js, max_deliver=1)
    handler = Remembering(fail_on="poison")
    await publish_halts(js, "a", "poison", "b")
    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 3))

    assert handler.applied == ["a", "b"]  # each handler ran once: nothing was re-applied around the failure
    assert handler.memory == ["a", "b"] and handler.seen == [[], ["a"], ["a"]]  # the poison left no trace
    assert await count(engine, inbox) == 2  # the poison's claim went with its savepoint: it can be retried
    assert await count(engine, outbox) == 0  # published right after the commit
    assert len(await stream_messages(js, "CONTROL", subject(TradingHalted))) == 2
    dead = await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD)
    assert [m.headers["Quorum-Error"] for m in dead] == ["RuntimeError: cannot apply poison"]
    info = await js.consumer_info("CONTROL", spec.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_database_error_in_one_message_undoes_its_writes_alone(js: Any, engine: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE applied (reason text PRIMARY KEY)"))

    async def handler(ctx: Context) -> None:
        reason = ctx.message.payload.reason
        await ctx.conn.execute(text("INSERT INTO applied VALUES (:r)"), {"r": reason})
        if reason == "poison":
            await ctx.conn.execute(text("SELECT 1 / 0"))  # the server aborts the statement: 22012, the message's

    spec = await with_consumer(js, max_deliver=1)
    await publish_halts(js, "a", "poison", "b")
    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 3))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT reason FROM applied ORDER BY reason"))).scalars().all() == ["a", "b"]
    dead = await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD)
    assert len(dead) == 1 and "division by zero" in dead[0].headers["Quorum-Error"]


async def test_the_same_event_twice_in_one_batch_is_applied_once(js: Any, engine: Any) -> None:
    from quorum.bus.publisher import MSG_ID
    from quorum.subjects import subject_of

    spec = await with_consumer(js)
    handler = Recorder()
    env = halt("twice", "k-twice")
    for msg_id in ("first-id", "second-id"):  # the server's de-duplication does not catch it
        await js.publish(subject_of(env), env.to_bytes(), headers={MSG_ID: msg_id})
    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 2))
    assert handler.applied == ["twice"]
    assert (await js.consumer_info("CONTROL", spec.durable)).num_ack_pending == 0


class LosesALockRace(Remembering):
    """The message ``contested`` loses a deadlock the first time it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def __call__(self, ctx: Context) -> None:
        if ctx.message.payload.reason == "contested" and not self.raced:
            self.raced = True
            raise DBAPIError("UPDATE contested", None, asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
        await super().__call__(ctx)


async def test_a_lock_race_mid_batch_commits_what_came_before_and_runs_the_rest_again(js: Any, engine: Any) -> None:
    spec = await with_consumer(js)
    handler = LosesALockRace()
    await publish_halts(js, "a", "contested", "b")
    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 3))

    assert handler.applied == ["a", "contested", "b"] and handler.memory == ["a", "contested", "b"]
    assert handler.seen == [[], ["a"], ["a", "contested"]]  # run again after "a" committed, in a new transaction
    assert await count(engine, inbox) == 3
    info = await js.consumer_info("CONTROL", spec.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD) == []


class LosesTheDatabaseOnce(Remembering):
    """The connection 'drops' under the second message, after the first one changed memory."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    async def __call__(self, ctx: Context) -> None:
        if ctx.message.payload.reason == "b" and not self.dropped:
            self.dropped = True
            raise DBAPIError("SELECT 1", None, asyncpg.exceptions.ConnectionDoesNotExistError("connection lost"))
        await super().__call__(ctx)


async def test_a_batch_lost_after_memory_changed_asks_the_service_to_reload_before_it_runs_again(
    js: Any, engine: Any
) -> None:
    spec = await with_consumer(js)
    handler = LosesTheDatabaseOnce()
    reloads: list[list[str]] = []

    async def reload() -> None:  # what a service does: memory back to what the database holds (nothing yet)
        reloads.append(list(handler.memory))
        handler.memory.clear()

    await publish_halts(js, "a", "b")
    loop = loop_for(ConsumerLoop, spec, handler, js, engine, on_lost=reload)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 2))

    assert reloads == [["a"]]  # "a"'s memory change ran before "b" (which had to see it), then the batch was lost
    assert handler.memory == ["a", "b"] and handler.applied == ["a", "a", "b"]  # "a" applied again, committed once
    assert await count(engine, inbox) == 2
    assert len(await stream_messages(js, "CONTROL", subject(TradingHalted))) == 2
    info = await js.consumer_info("CONTROL", spec.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_without_batch_transactions_each_message_is_its_own_transaction(js: Any, engine: Any) -> None:
    spec = await with_consumer(js, max_deliver=1)
    handler = Remembering(fail_on="poison")
    await publish_halts(js, "a", "poison", "b")
    loop = loop_for(ConsumerLoop, spec, handler, js, engine, batch_transactions=False)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 3))
    assert handler.applied == ["a", "b"] and handler.memory == ["a", "b"]
    assert handler.seen == [[], ["a"], ["a"]]
    assert len(await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD)) == 1


class DiesBeforePublishing(ConsumerLoop):
    """Commits and acks, then 'crashes' before publishing what it emitted."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)

        async def never(envelopes: Any) -> None:
            return None

        self._outbox.publish_now = never  # type: ignore[method-assign]


async def test_what_a_crash_left_in_the_outbox_is_swept_up_as_soon_as_the_relay_starts(js: Any, engine: Any) -> None:
    from quorum.bus.publisher import Publisher

    spec = await with_consumer(js)
    await publish_halts(js, "a", "b")
    loop = loop_for(DiesBeforePublishing, spec, Recorder(), js, engine)
    await loop.bind()
    await loop.process_batch(await fetched(loop, 2))
    assert await count(engine, outbox) == 2 and await stream_messages(js, "CONTROL", subject(TradingHalted)) == []

    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(engine, Publisher(js, "test"), "test").run(stop, sweep_s=30))
    try:  # the first sweep takes everything, however young: nothing else will publish it
        for _ in range(100):
            if await count(engine, outbox) == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await relay
    assert len(await stream_messages(js, "CONTROL", subject(TradingHalted))) == 2
    assert await count(engine, outbox) == 0
