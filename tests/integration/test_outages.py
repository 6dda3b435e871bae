"""Database trouble that is not the message's fault, against a real PostgreSQL: a restart mid-stream holds the
messages without spending a delivery; a deadlock is run again at once, in-process, on the same delivery."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.aio.msg import Msg
from quorum.bus.publisher import Publisher
from quorum.db.engine import create_engine
from quorum.devstack import migrate
from quorum.infra.embedded import EmbeddedPostgres
from quorum.runtime.handling import ConsumerLoop, Context, Failure, classify
from quorum.subjects import DEAD_LETTER_WILDCARD
from sqlalchemy import text

from tests.integration.test_bus import Recorder, fetch_one, halt, loop_for, stream_messages, with_consumer

pytestmark = pytest.mark.integration


class Counting(ConsumerLoop):
    """Records the delivery count of every message it is handed."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.deliveries: list[int] = []

    async def process_batch(self, msgs: list[Msg]) -> None:
        self.deliveries += [msg.metadata.num_delivered for msg in msgs]
        await super().process_batch(msgs)


async def until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


class SlowOnce(Recorder):
    """Sits in a query inside its transaction the first time it sees ``slow``, so the test can kill it there."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def __call__(self, ctx: Context) -> None:
        if ctx.message.payload.reason == "slow" and not self.entered.is_set():
            self.entered.set()
            await ctx.conn.execute(text("SELECT pg_sleep(60)"))
        await super().__call__(ctx)


async def test_postgres_restart_mid_stream_spends_no_delivery_and_dead_letters_nothing(
    js: Any, tmp_path: Path
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False).start()
    await asyncio.to_thread(migrate, pg.url())
    engine = create_engine(pg.url())
    spec = await with_consumer(js, max_deliver=2)  # ack_wait 1 s: the outage outlasts it several times
    handler = SlowOnce()
    loop = loop_for(Counting, spec, handler, js, engine)
    await loop.bind()
    pub = Publisher(js, "test")
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    blocker = await asyncpg.connect(plain(pg.url("postgres")))
    try:
        for i in range(3):
            await pub.publish(halt(f"before-{i}", f"k-before-{i}"))
        await until("the first messages", lambda: len(handler.applied) == 3)
        await pub.publish(halt("slow", "k-slow"))
        await asyncio.wait_for(handler.entered.wait(), 10)
        # A smart shutdown waits for the blocker's session; until then new connections are refused with
        # "the database system is shutting down" (57P03), and the killed sessions saw 57P01 mid-transaction.
        assert pg.proc is not None
        pg.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        await blocker.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        for i in range(3):
            await pub.publish(halt(f"during-{i}", f"k-during-{i}"))
        await asyncio.sleep(2.5)  # > ack_wait x max_deliver: counted as failures, these would be dead letters
        assert handler.applied == ["before-0", "before-1", "before-2"]
        await blocker.close()
        await asyncio.to_thread(pg.proc.wait, 30)
        pg.proc = None
        await asyncio.to_thread(pg.start)  # same data directory and port; "starting up" (57P03) on the way
        await until("every message after the restart", lambda: len(handler.applied) == 7)
    finally:
        stop.set()
        await task
        if not blocker.is_closed():
            blocker.terminate()
        await engine.dispose()
        pg.stop()
    assert handler.applied == ["before-0", "before-1", "before-2", "slow", "during-0", "during-1", "during-2"]
    assert loop.deliveries == [1] * 7
    assert await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD) == []
    info = await js.consumer_info("CONTROL", spec.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_deadlock_is_run_again_at_once_and_applied_once_on_the_first_delivery(
    js: Any, engine: Any, database_url: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE contested (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO contested VALUES (1, 0), (2, 0)"))
    holds_one, holds_two = asyncio.Event(), asyncio.Event()
    attempts: list[int] = []

    async def handler(ctx: Context) -> None:
        attempts.append(len(attempts) + 1)
        await ctx.conn.execute(text("SET LOCAL deadlock_timeout = '50ms'"))  # this side is the victim
        await ctx.conn.execute(text("UPDATE contested SET n = n + 1 WHERE id = 1"))
        if len(attempts) == 1:
            holds_one.set()
            await holds_two.wait()
        await ctx.conn.execute(text("UPDATE contested SET n = n + 1 WHERE id = 2"))

    async def other_transaction() -> None:
        conn = await asyncpg.connect(plain(database_url))
        try:
            await holds_one.wait()
            async with conn.transaction():
                await conn.execute("SET LOCAL deadlock_timeout = '10s'")
                await conn.execute("UPDATE contested SET n = n + 10 WHERE id = 2")
                holds_two.set()
                await conn.execute("UPDATE contested SET n = n + 10 WHERE id = 1")  # waits for the handler
        finally:
            await conn.close()

    spec = await with_consumer(js)
    loop = loop_for(Counting, spec, handler, js, engine)
    await loop.bind()
    await Publisher(js, "test").publish(halt("contested", "k-contested"))
    other = asyncio.create_task(other_transaction())
    await asyncio.wait_for(loop.process(await fetch_one(loop)), 20)
    await asyncio.wait_for(other, 20)

    assert attempts == [1, 2]  # deadlock victim once, then applied in the same delivery
    assert loop.deliveries == [1]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT n FROM contested ORDER BY id"))).scalars().all() == [11, 11]
    info = await js.consumer_info("CONTROL", spec.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD) == []


async def test_sqlstate_says_whether_the_database_or_the_message_failed(engine: Any) -> None:
    """Real server errors through the real driver: the SQLSTATE decides, not the driver's class names."""
    expected = {
        "57P03": Failure.CONNECTIVITY,  # cannot connect now: starting up / shutting down
        "57P01": Failure.CONNECTIVITY,  # admin shutdown
        "08006": Failure.CONNECTIVITY,  # connection failure
        "40P01": Failure.CONFLICT,  # deadlock detected
        "40001": Failure.CONFLICT,  # serialization failure
        "23505": Failure.MESSAGE,  # unique violation: this message's doing
        "22P02": Failure.MESSAGE,  # invalid text representation
        "57014": Failure.MESSAGE,  # query canceled (statement timeout): class 57 but not an outage
    }
    seen = {}
    for code in expected:
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$"))
        except Exception as exc:  # noqa: BLE001 - what the handler would see
            seen[code] = classify(exc)
    assert seen == expected
    assert classify(ConnectionRefusedError()) is Failure.CONNECTIVITY
    assert classify(ValueError("bad payload")) is Failure.MESSAGE


async def test_a_restart_between_transactions_is_noticed_on_use_and_the_next_attempt_reconnects(
    tmp_path: Path,
) -> None:
    """No ping per checkout: a pooled connection the restart closed is dropped by the pool (the driver saw it
    close), or fails its first statement and the transaction is run again at once on a fresh one; either way
    the caller sees no failure."""
    from quorum.runtime.handling import retry_conflicts

    pg = EmbeddedPostgres(tmp_path / "pg-stale", durable=False).start()
    engine = create_engine(pg.url("postgres"))
    attempts: list[int] = []

    async def attempt() -> int:
        attempts.append(1)
        async with engine.begin() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())

    try:
        assert await retry_conflicts(attempt) == 1  # the pool now holds an open connection
        await asyncio.to_thread(pg.stop)
        pg.proc = None
        await asyncio.to_thread(pg.start)
        attempts.clear()
        assert await retry_conflicts(attempt) == 1
        assert len(attempts) <= 2
    finally:
        await engine.dispose()
        pg.stop()
