"""Inbox: the (consumer, event id) pair is written in the handler's own transaction, so an event whose
effects were committed is recognised on redelivery and never applied twice.

A batch is claimed (and, for messages that fail, given back) in one statement with the ids as one array
parameter: the same SQL text whatever the batch size, so the driver prepares it once per connection."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection

_IDS = bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True)))
_CLAIM = text("INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(:ids) "
              "ON CONFLICT DO NOTHING RETURNING event_id").bindparams(_IDS)
_UNCLAIM = text("DELETE FROM inbox WHERE consumer = :consumer AND event_id = ANY(:ids)").bindparams(_IDS)


async def claim_all(conn: AsyncConnection, consumer: str, event_ids: Iterable[UUID]) -> set[UUID]:
    """The ids this consumer had not processed yet, now claimed by this transaction."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    return set((await conn.execute(_CLAIM, {"consumer": consumer, "ids": ids})).scalars())


async def unclaim(conn: AsyncConnection, consumer: str, event_ids: Iterable[UUID]) -> None:
    """Give back claims made earlier in this transaction for messages it will not apply after all."""
    ids = list(event_ids)
    if ids:
        await conn.execute(_UNCLAIM, {"consumer": consumer, "ids": ids})
