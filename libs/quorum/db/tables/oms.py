"""OMS: orders and their transitions, fills, routing and operating mode, proposals, reconciliation findings."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, ForeignKey, Identity, Index, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import Money, about, created_at, metadata, timestamp

OWNER = "oms"

oms_state = Table(
    "oms_state",
    metadata,
    Column("mode", String(8), primary_key=True),
    Column("routing_connected", Boolean, nullable=False),
    Column("operating_mode", String(16), nullable=False, server_default="FULL_AUTO"),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    info=about("order routing connected or not and the operating mode, per trading mode"),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("decision_id", UUID(as_uuid=True), unique=True, comment="null for protective and liquidation orders"),
    Column("mode", String(8), nullable=False),
    Column("venue", String(32), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("time_in_force", String(8), nullable=False, server_default="GTC"),
    Column("purpose", String(16), nullable=False, server_default="ENTRY",
           comment="ENTRY, REENTRY, EXIT, STOP_LOSS, TAKE_PROFIT, LIQUIDATION"),
    Column("quantity", Money, nullable=False),
    Column("limit_price", Money),
    Column("stop_price", Money),
    Column("stop_loss", Money, comment="protective stop to attach once filled"),
    Column("take_profit", Money, comment="take-profit to attach once filled"),
    Column("parent_client_order_id", String(64), comment="the entry a protective order protects"),
    Column("oco_group", String(64), comment="orders of one group: a fill of one cancels the others"),
    Column("status", String(24), nullable=False),
    Column("filled_quantity", Money, nullable=False),
    Column("average_price", Money),
    Column("fees", Money, nullable=False),
    Column("fee_currency", String(16)),
    Column("quote_spent", Money, nullable=False),
    Column("reason_code", String(64)),
    Column("venue_final_status", String(24), comment="how the venue ended the order, once it did"),
    Column("venue_final_filled", Money, comment="what had executed when the venue ended it"),
    Column("reference_ts", DateTime(timezone=True), nullable=False),
    created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_orders_symbol_created", "symbol", "created_at"),
    Index("ix_orders_status", "status"),
    info=about("orders keyed by deterministic client order id"),
)

trade_proposals = Table(
    "trade_proposals",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("reference_price", Money, nullable=False),
    Column("status", String(16), nullable=False, comment="PENDING, APPROVED, REJECTED, EXPIRED or OBSERVED"),
    Column("intent", JSONB, nullable=False, comment="the approved intent's envelope, acted on at approval"),
    Column("expires_at", DateTime(timezone=True)),
    Column("decided_by", String(200)),
    Column("decided_at", DateTime(timezone=True)),
    created_at(),
    Index("ix_trade_proposals_status", "status"),
    info=about("Semi-Auto proposals (PENDING → APPROVED / REJECTED / EXPIRED) and Observe-mode intents (OBSERVED)"),
)

reconciliation_discrepancies = Table(
    "reconciliation_discrepancies",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    timestamp(),
    Column("venue", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("client_order_id", String(64)),
    Column("detail", JSONB, nullable=False),
    info=about("what the OMS found different from the venue or its last snapshot at start-up"),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("client_order_id", String(64), ForeignKey("orders.client_order_id"), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("from_status", String(24)),
    Column("to_status", String(24), nullable=False),
    Column("reason_code", String(64)),
    timestamp(),
    Index("ix_order_events_order", "client_order_id"),
    info=about("each order's state transitions"),
)

fills = Table(
    "fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("client_order_id", String(64), ForeignKey("orders.client_order_id"), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("venue", String(32), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("price", Money, nullable=False),
    Column("fee", Money, nullable=False),
    Column("fee_currency", String(16), nullable=False),
    Column("liquidity", String(8), nullable=False),
    timestamp(),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Index("ix_fills_symbol_ts", "symbol", "ts"),
    info=about("executions"),
)
