"""Ledger: the append-only, hash-chained journal and the projections rebuilt from it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import UUID

from quorum.db.tables.base import Money, about, metadata, timestamp

OWNER = "ledger"

ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("txn_id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("mode", String(8), nullable=False),
    timestamp(),
    Column("description", Text, nullable=False),
    Column("source_event_id", UUID(as_uuid=True), unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    info=about("journal headers, HMAC-chained per mode (`prev_hash`, `hash`)", kind="plain, append-only (triggers)"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("txn_id", UUID(as_uuid=True), ForeignKey("ledger_transactions.txn_id"), nullable=False),
    Column("account", String(128), nullable=False),
    Column("currency", String(16), nullable=False),
    Column("amount", Money, nullable=False),
    Index("ix_ledger_entries_account", "account"),
    Index("ix_ledger_entries_txn", "txn_id"),
    info=about("journal lines (account, currency, NUMERIC amount)", kind="plain, append-only (triggers)"),
)

ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("currency", String(16), nullable=False),
    Column("amount", Money, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    comment="projection: the sum of the journal per account, checked by `quorum ledger rebuild`",
    info=about("the journal summed per account (rebuilt and compared by `quorum ledger rebuild`)",
               kind="plain (projection)"),
)

positions = Table(
    "positions",
    metadata,
    Column("mode", String(8), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("avg_cost", Money, nullable=False),
    Column("realized_pnl", Money, nullable=False),
    Column("fees_paid", Money, nullable=False),
    Column("mark_price", Money),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("mode", "symbol"),
    info=about("average-cost positions, realized PnL, fees, last mark", kind="plain (projection)"),
)

equity = Table(
    "equity",
    metadata,
    Column("mode", String(8), nullable=False),
    timestamp(),
    Column("equity", Money, nullable=False),
    Column("peak_equity", Money, nullable=False),
    Column("drawdown", Money, nullable=False),
    PrimaryKeyConstraint("mode", "ts"),
    Index("ix_equity_time", "ts"),
    info=about("equity marked to market (fills and candles), peak and drawdown per mode"),
)
