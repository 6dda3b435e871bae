"""Market data: candles (written before they are published), order books, checkpoints, corrections."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import Money, about, created_at, metadata, timestamp

OWNER = "market_data"

candles = Table(
    "candles",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    timestamp(),
    Column("open", Money, nullable=False),
    Column("high", Money, nullable=False),
    Column("low", Money, nullable=False),
    Column("close", Money, nullable=False),
    Column("volume", Money, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "ts"),
    Index("ix_candles_time", "ts"),
    info=about("closed OHLCV candles, NUMERIC prices"),
)

replay_checkpoints = Table(
    "replay_checkpoints",
    metadata,
    Column("source_key", String(512), primary_key=True),
    timestamp("last_ts"),
    Column("rows_published", BigInteger, nullable=False),
    Column("rows_rejected", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    info=about("how far each replay source got (resume point)"),
)

backfill_checkpoints = Table(
    "backfill_checkpoints",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("next_since", DateTime(timezone=True), nullable=False, comment="resume fetching from here"),
    Column("rows_written", BigInteger, nullable=False),
    Column("rows_rejected", BigInteger, nullable=False),
    Column("completed", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe"),
    info=about("per (exchange, symbol, timeframe): where a backfill resumes, rows written/rejected"),
)

candle_corrections = Table(
    "candle_corrections",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    timestamp(),
    Column("previous", JSONB, nullable=False),
    Column("corrected", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    created_at(),
    info=about("previous and corrected values of revised candles", kind="plain (rows only added)"),
)

order_book_snapshots = Table(
    "order_book_snapshots",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    timestamp(),
    Column("depth", Integer, nullable=False),
    Column("bids", JSONB, nullable=False, comment="[[price, quantity], ...] best first, decimal strings"),
    Column("asks", JSONB, nullable=False, comment="[[price, quantity], ...] best first, decimal strings"),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "ts"),
    Index("ix_order_book_snapshots_time", "ts"),
    info=about("top-N bids/asks per (exchange, symbol, ts)"),
)
