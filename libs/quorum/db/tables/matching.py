"""The paper venue: its own orders and trade history (what reconciliation reads) and the engine's state."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from quorum.db.tables.base import about, created_at, metadata, timestamp

OWNER = "matching"

paper_orders = Table(
    "paper_orders",
    metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("status", String(24), nullable=False),
    Column("command", JSONB, nullable=False, comment="the SubmitOrder envelope, to resume after a restart"),
    Column("reference_ts", DateTime(timezone=True), nullable=False),
    created_at(),
    Index("ix_paper_orders_open", "exchange", "symbol", "status"),
    info=about("the paper venue's orders and their venue status (what reconciliation reads)"),
)

paper_fills = Table(
    "paper_fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("client_order_id", String(64), nullable=False),
    Column("fill", JSONB, nullable=False, comment="the OrderFilled payload: the venue's own trade history"),
    timestamp(),
    Index("ix_paper_fills_order", "client_order_id"),
    info=about("the paper venue's own trade history (what reconciliation reads)"),
)

matching_state = Table(
    "matching_state",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("state", JSONB, nullable=False, comment="the engine's whole per-symbol state (orders, book, RNG)"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
    info=about("the matching engine's whole state per (exchange, symbol), JSON"),
)
