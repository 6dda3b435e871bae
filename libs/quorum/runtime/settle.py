"""Quiescence of the pipeline: nothing pending in any awaited durable consumer and nothing left in the outbox.

A replay that publishes the next candle only once everything caused by the previous one has been handled
(``settled`` pacing) makes the services' inputs arrive in market-time order, as they do live where an hour
separates two hourly candles: every consumer that joins two streams (the council's predictions and fills, the
venue's orders and candles, risk's decisions and order updates) then sees the same interleaving on every run,
after a crash as without one. The barrier waits for a stopped or crashed consumer to come back.

Each candle runs in two phases, as it does on a real venue where a stop triggers during the hour and the
strategy decides at its close: first the market side (the venue fills resting orders, risk and the ledger mark,
and everything that follows from those fills), with the decision side's first consumer paused; then the
decision side (features -> inference -> council -> risk -> OMS -> venue). So a decision always sees the fills
its own candle caused, on every run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from quorum.db.tables import outbox
from quorum.topology import CONSUMERS, ConsumerSpec

log = logging.getLogger("quorum.settle")


def awaited_consumers(exclude_services: Iterable[str] = (), only: Iterable[str] | None = None) -> list[ConsumerSpec]:
    """The durables a settled replay waits for: every declared consumer (or ``only`` those named), less the
    replaying service's own."""
    skip, wanted = set(exclude_services), None if only is None else set(only)
    unknown = (wanted or set()) - {c.durable for c in CONSUMERS}
    if unknown:
        raise ValueError(f"unknown consumers {sorted(unknown)}; declared: {sorted(c.durable for c in CONSUMERS)}")
    return [c for c in CONSUMERS if c.service not in skip and (wanted is None or c.durable in wanted)]


async def _busy(js: JetStreamContext, consumers: list[ConsumerSpec]) -> tuple[dict[str, int], dict[str, int]]:
    """(durable -> messages not yet handled, durable -> last delivered stream sequence)."""
    infos = await asyncio.gather(*(js.consumer_info(c.stream, c.durable) for c in consumers))
    busy = {c.durable: (i.num_pending or 0) + (i.num_ack_pending or 0) for c, i in zip(consumers, infos, strict=True)}
    seqs = {c.durable: i.delivered.stream_seq or 0 for c, i in zip(consumers, infos, strict=True)}
    return {k: v for k, v in busy.items() if v}, seqs


async def is_settled(js: JetStreamContext, engine: AsyncEngine, consumers: list[ConsumerSpec]) -> tuple[bool, str]:
    """True once every awaited consumer has handled everything and no event waits in the outbox, read twice
    with nothing delivered in between (an outbox row relayed between two reads would otherwise slip through)."""
    busy, seqs = await _busy(js, consumers)
    if busy:
        return False, ", ".join(f"{k} ({v})" for k, v in sorted(busy.items()))
    async with engine.connect() as conn:
        waiting = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    if waiting:
        return False, f"{waiting} outbox rows"
    busy, again = await _busy(js, consumers)
    if busy or again != seqs:
        return False, "new deliveries"
    return True, ""


async def wait_settled(js: JetStreamContext, engine: AsyncEngine, consumers: list[ConsumerSpec], *,
                       stopping: asyncio.Event, poll_s: float = 0.01, warn_after_s: float = 10.0) -> bool:
    """Block until settled (True) or stopping (False); says what it waits for when it takes long."""
    started = warned = time.monotonic()
    delay = poll_s
    while not stopping.is_set():
        try:
            done, what = await is_settled(js, engine, consumers)
        except Exception as exc:  # noqa: BLE001 - an outage of NATS or PostgreSQL: wait for it to pass
            done, what = False, f"infrastructure ({type(exc).__name__}: {exc})"
        if done:
            return True
        if time.monotonic() - warned > warn_after_s:
            warned = time.monotonic()
            log.warning("replay waits for the pipeline to settle (%.0fs): %s", warned - started, what)
        await asyncio.sleep(delay)
        delay = min(delay * 1.2, 0.05)
    return False


DECISION_HEADS = ("features-candles",)  # where the decision side of a candle starts


async def hold(js: JetStreamContext, consumers: Iterable[ConsumerSpec], *, for_s: float = 300.0) -> None:
    """Pause these consumers (for at most ``for_s``: a replay that dies mid-candle does not stall them)."""
    # The NATS server reads the deadline in its own (wall) clock: this is infrastructure timing, not market time,
    # and no decision depends on it (a replay releases the consumers itself long before it passes).
    until = (datetime.now(UTC) + timedelta(seconds=for_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await asyncio.gather(*(js.pause_consumer(c.stream, c.durable, until) for c in consumers))


async def release(js: JetStreamContext, consumers: Iterable[ConsumerSpec]) -> None:
    await asyncio.gather(*(js.resume_consumer(c.stream, c.durable) for c in consumers))


async def settle_candle(js: JetStreamContext, engine: AsyncEngine, consumers: list[ConsumerSpec], *,
                        stopping: asyncio.Event) -> bool:
    """Wait out a candle's market side, then release its decision side and wait that out too. Also what a
    restarted replay does first: the candle in flight when it died finishes in the same two phases."""
    heads = [c for c in consumers if c.durable in DECISION_HEADS]
    if heads:
        if not await wait_settled(js, engine, [c for c in consumers if c not in heads], stopping=stopping):
            return False
        await release(js, heads)
    return await wait_settled(js, engine, consumers, stopping=stopping)
