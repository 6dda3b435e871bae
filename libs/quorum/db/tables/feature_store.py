"""Features: the indicator vectors computed per candle (the module is not named ``features``: that is the
table's name in ``quorum.db.tables``)."""

from __future__ import annotations

from sqlalchemy import Column, Index, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import Money, about, metadata, timestamp

OWNER = "features"

features = Table(
    "features",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    timestamp(),
    Column("feature_set", String(64), nullable=False),
    Column("close", Money, nullable=False),
    Column("values", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "feature_set", "ts"),
    Index("ix_features_time", "ts"),
    info=about("feature vectors (JSONB) with feature-set version"),
)
