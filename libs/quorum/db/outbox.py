"""Outbox: events that must agree with a database write are inserted in the same transaction and published
after commit by a relay. A crash between commit and publish only delays the event; the relay re-sends it
with the same ``Nats-Msg-Id``, so it is never duplicated."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quorum.bus.publisher import Publisher
from quorum.db.tables import outbox
from quorum.events.base import Envelope
from quorum.metrics import OUTBOX_PENDING
from quorum.subjects import subject_of

log = logging.getLogger("quorum.outbox")


async def enqueue(conn: AsyncConnection, service: str, envelopes: Iterable[Envelope[Any]]) -> int:
    rows = [
        {"service": service, "event_id": e.event_id, "subject": subject_of(e), "data": e.to_bytes()}
        for e in envelopes
    ]
    if rows:
        # A deterministic event id already in the outbox means this exact effect is queued: keep one.
        await conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["event_id"]), rows)
    return len(rows)


class OutboxRelay:
    """Publishes a service's outbox rows in insertion order; woken after each commit, and periodically."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, service: str, *, batch: int = 200) -> None:
        self._engine = engine
        self._publisher = publisher
        self._service = service
        self._batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish up to one batch; rows are deleted only after the server acknowledged them."""
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.id, outbox.c.event_id, outbox.c.subject, outbox.c.data)
                    .where(outbox.c.service == self._service)
                    .order_by(outbox.c.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._publisher.publish_raw(
                    row.subject, bytes(row.data), msg_id=str(row.event_id), event_type=row.subject.split(".")[2]
                )
            if rows:
                await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
        return len(rows)

    async def pending(self) -> int:
        async with self._engine.connect() as conn:
            q = select(func.count()).select_from(outbox).where(outbox.c.service == self._service)
            return int((await conn.execute(q)).scalar_one())

    async def drain(self) -> None:
        while await self.relay_once():
            pass

    async def run(self, stop: asyncio.Event, *, sweep_s: float = 2.0) -> None:
        while not stop.is_set():
            try:
                while await self.relay_once() == self._batch:
                    pass
                OUTBOX_PENDING.labels(self._service).set(await self.pending())
            except Exception:  # noqa: BLE001 - NATS or DB down: rows stay, retried on the next wake
                log.exception("outbox relay failed; will retry")
                await asyncio.sleep(1.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=sweep_s)
            except TimeoutError:
                pass
            self._wake.clear()
