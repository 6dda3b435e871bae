"""Outbox: events that must agree with a database write are inserted in the same transaction, published right
after the commit by whoever committed them, and deleted once the server acknowledged them. The relay only
sweeps up: rows a crash left between commit and publish, or a publish that failed, are re-sent with the same
``Nats-Msg-Id``, so an event is never duplicated (and a consumer's inbox drops a late repeat)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import LargeBinary, Text, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quorum.bus.publisher import Publisher
from quorum.db.tables import outbox
from quorum.events.base import Envelope
from quorum.metrics import OUTBOX_PENDING
from quorum.subjects import subject_of

log = logging.getLogger("quorum.outbox")


class Queued(NamedTuple):
    """An event as it is stored in the outbox and sent: serialised once."""

    event_id: UUID
    subject: str
    data: bytes

    @property
    def event_type(self) -> str:
        return self.subject.split(".")[2]


_ARRAYS = (bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))), bindparam("subjects", type_=ARRAY(Text)),
           bindparam("datas", type_=ARRAY(LargeBinary)))
# Arrays, not one VALUES row per event: the same SQL text whatever the count, prepared once per connection.
_ENQUEUE = text("INSERT INTO outbox (service, event_id, subject, data) SELECT :service, * FROM "
                "unnest(:ids, :subjects, :datas) ON CONFLICT (event_id) DO NOTHING").bindparams(*_ARRAYS)
# A lost delete only re-sends an event the server de-duplicates: it need not wait for the disk.
_PUBLISHED = text("DELETE FROM outbox WHERE event_id = ANY(:ids) "
                  "AND set_config('synchronous_commit', 'off', true) IS NOT NULL").bindparams(_ARRAYS[0])


async def enqueue(conn: AsyncConnection, service: str, envelopes: Iterable[Envelope[Any]]) -> list[Queued]:
    """Queue events in the caller's transaction. A deterministic event id already in the outbox means this exact
    effect is queued: it stays one row."""
    queued = [Queued(e.event_id, subject_of(e), e.to_bytes()) for e in envelopes]
    if queued:
        await conn.execute(_ENQUEUE, {"service": service, "ids": [q.event_id for q in queued],
                                      "subjects": [q.subject for q in queued], "datas": [q.data for q in queued]})
    return queued


class OutboxRelay:
    """Publishes committed events: at once (``publish_now``), and by a periodic sweep of what is left, in
    insertion order."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, service: str, *, batch: int = 200) -> None:
        self._engine = engine
        self._publisher = publisher
        self._service = service
        self._batch = batch

    async def publish_now(self, queued: list[Queued]) -> None:
        """Publish what a transaction just committed, then drop its rows. On failure (NATS away) the rows stay
        for the sweep; the caller goes on."""
        try:
            await asyncio.gather(*(self._publisher.publish_raw(q.subject, q.data, msg_id=str(q.event_id),
                                                               event_type=q.event_type) for q in queued))
            async with self._engine.connect() as conn:  # one statement, one round trip
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(_PUBLISHED, {"ids": [q.event_id for q in queued]})
        except Exception as exc:  # noqa: BLE001 - the rows are still there: the sweep sends them
            log.warning("publishing %d committed event(s) failed (%s); the outbox sweep retries", len(queued), exc)

    async def relay_once(self, *, min_age_s: float = 0.0) -> int:
        """Publish up to one batch of rows at least ``min_age_s`` old (younger ones are being published by
        whoever committed them); rows are deleted only after the server acknowledged them."""
        query = select(outbox.c.id, outbox.c.event_id, outbox.c.subject, outbox.c.data).where(
            outbox.c.service == self._service)
        if min_age_s > 0:
            query = query.where(outbox.c.created_at < func.now() - timedelta(seconds=min_age_s))
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query.order_by(outbox.c.id).limit(self._batch)
                                       .with_for_update(skip_locked=True))).all()
            for row in rows:
                q = Queued(row.event_id, row.subject, bytes(row.data))
                await self._publisher.publish_raw(q.subject, q.data, msg_id=str(q.event_id), event_type=q.event_type)
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

    async def run(self, stop: asyncio.Event, *, sweep_s: float = 2.0, min_age_s: float = 1.0) -> None:
        """Sweep everything at once (what the last run left behind), then every ``sweep_s`` what is older than
        ``min_age_s``; the pending count is sampled as it goes (not counted per message)."""
        age = 0.0
        while not stop.is_set():
            try:
                while await self.relay_once(min_age_s=age) == self._batch:
                    pass
                OUTBOX_PENDING.labels(self._service).set(await self.pending())
                age = min_age_s
            except Exception:  # noqa: BLE001 - NATS or DB down: rows stay, retried on the next sweep
                log.exception("outbox relay failed; will retry")
            try:
                await asyncio.wait_for(stop.wait(), timeout=sweep_s)
            except TimeoutError:
                pass
