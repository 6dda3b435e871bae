"""The bus against a real JetStream and a real PostgreSQL: idempotent publishing, exactly-once effects under
redelivery, dead-lettering of poison messages, the outbox, and provisioning."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from nats.aio.msg import Msg
from quorum.bus.provision import provision
from quorum.bus.publisher import MSG_ID, Publisher
from quorum.clock import TestClock
from quorum.db.outbox import OutboxRelay
from quorum.db.tables import inbox, outbox
from quorum.events.base import new_envelope
from quorum.events.control import HaltTrading, TradingHalted
from quorum.runtime.handling import ConsumerLoop, Context
from quorum.subjects import DEAD_LETTER_WILDCARD, subject, subject_of
from quorum.topology import TOPOLOGY, ConsumerSpec, Topology
from sqlalchemy import func, select

pytestmark = pytest.mark.integration

CLOCK = TestClock()


def halt(reason: str, key: str) -> Any:
    return new_envelope(HaltTrading(actor="USER:test", reason=reason), clock=CLOCK, source="test", key=key)


async def stream_messages(js: Any, stream: str, filter_subject: str) -> list[Msg]:
    """Everything stored on ``filter_subject``, read with an ephemeral consumer (does not disturb durables)."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe(filter_subject, stream=stream)
    out: list[Msg] = []
    try:
        while True:
            batch = await sub.fetch(100, timeout=0.5)
            out.extend(batch)
            for m in batch:
                await m.ack()
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    return out


async def with_consumer(js: Any, **overrides: Any) -> ConsumerSpec:
    """Provision a test consumer on the CONTROL stream (short ack_wait so redelivery happens in a test)."""
    spec = dataclasses.replace(TOPOLOGY.consumer("risk-control"), durable="test-control", service="test",
                               ack_wait_s=1.0, **overrides)
    await provision(js, Topology(streams=TOPOLOGY.streams, consumers=(spec,), kv=()))
    return spec


class Recorder:
    """A handler that records what it applied and confirms like the risk service would."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.applied: list[str] = []
        self.fail_on = fail_on

    async def __call__(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if cmd.reason == self.fail_on:
            raise RuntimeError(f"cannot apply {cmd.reason}")
        self.applied.append(cmd.reason)
        ctx.emit(TradingHalted(actor=cmd.actor, reason=cmd.reason))


class CrashBeforeAck(ConsumerLoop):
    """Commits, then 'dies' before acknowledging: the server will redeliver."""

    async def _ack(self, msg: Msg) -> None:
        return None


def loop_for(cls: type[ConsumerLoop], spec: ConsumerSpec, handler: Any, js: Any, engine: Any,
             **kw: Any) -> ConsumerLoop:
    return cls(spec, handler, js=js, engine=engine, publisher=Publisher(js, "test"), clock=CLOCK, service="test",
               **kw)


async def fetch_one(loop: ConsumerLoop, timeout: float = 5.0) -> Msg:
    msgs = await loop._sub.fetch(1, timeout=timeout)
    return msgs[0]


async def test_publishing_the_same_event_twice_stores_it_once(js: Any) -> None:
    pub = Publisher(js, "test")
    env = halt("dup", "k1")
    assert await pub.publish(env) is True
    assert await pub.publish(env) is False  # the server's duplicate ack counts as success
    assert len(await stream_messages(js, "CONTROL", subject_of(env))) == 1


async def test_redelivered_event_is_not_applied_twice(js: Any, engine: Any) -> None:
    spec = await with_consumer(js)
    handler = Recorder()
    env = halt("once", "k-redeliver")
    await Publisher(js, "test").publish(env)

    crashing = loop_for(CrashBeforeAck, spec, handler, js, engine)
    await crashing.bind()
    first = await fetch_one(crashing)
    await crashing.process(first)  # effects committed, ack lost
    assert handler.applied == ["once"]

    healthy = loop_for(ConsumerLoop, spec, handler, js, engine)
    await healthy.bind()
    again = await fetch_one(healthy, timeout=5.0)  # redelivered after ack_wait
    assert again.metadata.num_delivered == 2
    await healthy.process(again)

    # The same event re-published under another message id (e.g. after the server's dedupe window).
    await js.publish(subject_of(env), env.to_bytes(), headers={MSG_ID: "another-id"})
    await healthy.process(await fetch_one(healthy))

    assert handler.applied == ["once"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(inbox))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 0  # published
    assert len(await stream_messages(js, "CONTROL", subject(TradingHalted))) == 1


async def test_poison_message_is_dead_lettered_and_consumption_continues(js: Any, engine: Any) -> None:
    spec = await with_consumer(js, max_deliver=2)
    handler = Recorder(fail_on="poison")
    pub = Publisher(js, "test")
    await pub.publish(halt("poison", "k-poison"))
    await js.publish(subject(HaltTrading), b"{not json", headers={MSG_ID: "garbage-1"})
    await pub.publish(halt("healthy", "k-healthy"))

    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        for _ in range(100):
            dead = await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD)
            if len(dead) >= 2 and handler.applied:
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task

    assert handler.applied == ["healthy"]
    errors = sorted(m.headers["Quorum-Error"] for m in dead)
    assert len(dead) == 2
    assert errors[0].startswith("RuntimeError: cannot apply poison")
    assert errors[1].startswith("undecodable: not JSON")
    assert {m.headers["Quorum-Original-Subject"] for m in dead} == {subject(HaltTrading)}
    assert {m.headers["Quorum-Consumer"] for m in dead} == {"test-control"}
    info = await js.consumer_info("CONTROL", "test-control")
    assert info.num_ack_pending == 0 and info.num_pending == 0  # nothing stuck behind the poison


async def test_outbox_publishes_only_what_committed(js: Any, engine: Any) -> None:
    relay = OutboxRelay(engine, Publisher(js, "test"), "test")
    from quorum.db.outbox import enqueue

    committed = halt("committed", "k-c")
    rolled_back = halt("rolled-back", "k-r")
    async with engine.begin() as conn:
        await enqueue(conn, "test", [committed])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await enqueue(conn, "test", [rolled_back])
            raise RuntimeError("handler failed after emitting")

    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0
    stored = await stream_messages(js, "CONTROL", subject(HaltTrading))
    assert [m.headers[MSG_ID] for m in stored] == [str(committed.event_id)]
    assert await relay.pending() == 0


async def test_provisioning_is_idempotent_and_applies_changed_limits(js: Any) -> None:
    first = await provision(js)
    assert await provision(js) == [line.replace("created", "up to date") for line in first]
    changed = dataclasses.replace(TOPOLOGY.consumer("features-candles"), max_deliver=9)
    await provision(js, Topology(streams=TOPOLOGY.streams, consumers=(changed,), kv=()))
    info = await js.consumer_info("MD", "features-candles")
    assert info.config.max_deliver == 9
    stream = await js.stream_info("MD")
    assert stream.config.storage == "file"


async def test_database_outage_holds_the_message_instead_of_dead_lettering_it(js: Any, tmp_path: Any) -> None:
    from quorum.db.engine import create_engine
    from quorum.devstack import migrate
    from quorum.infra.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg-outage", durable=False).start()
    await asyncio.to_thread(migrate, pg.url())
    engine = create_engine(pg.url())
    spec = await with_consumer(js, max_deliver=2)
    handler = Recorder()
    loop = loop_for(ConsumerLoop, spec, handler, js, engine)
    await loop.bind()
    await Publisher(js, "test").publish(halt("during-outage", "k-outage"))
    await asyncio.to_thread(pg.stop)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.sleep(3.0)  # longer than ack_wait x max_deliver: would be dead-lettered if counted
        assert handler.applied == []
        pg.proc = None
        await asyncio.to_thread(EmbeddedPostgres.start, pg)  # same data directory and port
        for _ in range(100):
            if handler.applied:
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        await engine.dispose()
        pg.stop()
    assert handler.applied == ["during-outage"]
    assert await stream_messages(js, "DLQ", DEAD_LETTER_WILDCARD) == []
