"""Natural keys and event ids of candles and their corrections.

Every path that stores or publishes a candle (replay, backfill, live) derives its id from these keys, so a
candle has one id whichever path stored it first.
"""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID

import numpy as np
import polars as pl

from quorum.events.market_data import CandleClosed, CandleCorrected, OrderBookSnapshotted
from quorum.ids import QUORUM_NAMESPACE, stable_uuid
from quorum.marketdata.validation import PRICES


def candle_key(candle: CandleClosed) -> str:
    """The natural key a candle's event id derives from; every source (replay, backfill, live) must use this one,
    or the same candle would get two ids and be stored and published twice."""
    return f"{candle.exchange}|{candle.symbol}|{candle.timeframe}|{candle.ts.isoformat()}"


def candle_event_id(candle: CandleClosed) -> UUID:
    """``new_envelope(candle, key=candle_key(candle)).event_id`` (the replay's id) without building an envelope."""
    return stable_uuid(CandleClosed.event_type(), candle_key(candle))


def candle_event_ids(keys: pl.Series) -> pl.Series:
    """``candle_event_id`` for many ``candle_key`` strings at once, as 32 hex digits (PostgreSQL reads that as
    a uuid): the UUIDv5 of ``stable_uuid`` with SHA-1 per key and the version bits set on all rows together."""
    prefix = QUORUM_NAMESPACE.bytes + f"{CandleClosed.event_type()}\x1f".encode()
    digests = b"".join([sha1(prefix + k.encode()).digest() for k in keys.to_list()])
    raw = np.frombuffer(digests, np.uint8).reshape(-1, 20)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return pl.Series("event_id", np.frombuffer(raw.tobytes().hex().encode(), "S32")).cast(pl.String)


def correction_key(correction: CandleCorrected) -> str:
    """Key of a correction's event id: the candle and the values it was corrected to (a later, different
    revision of the same candle is a different event)."""
    values = "|".join(str(getattr(correction, f)) for f in PRICES)
    return f"{candle_key(correction.previous)}|{values}"


def book_key(book: OrderBookSnapshotted) -> str:
    """The natural key an order-book snapshot's event id derives from (live feed and runner alike)."""
    return f"{book.exchange}|{book.symbol}|{book.ts.isoformat()}"
