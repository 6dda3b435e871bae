"""Inbox: the (consumer, event id) pair is written in the handler's own transaction, so an event whose
effects were committed is recognised on redelivery and never applied twice."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.db.tables import inbox


async def claim(conn: AsyncConnection, consumer: str, event_id: UUID) -> bool:
    """True the first time; False when this consumer already processed the event."""
    stmt = (
        insert(inbox)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    return (await conn.execute(stmt)).first() is not None
