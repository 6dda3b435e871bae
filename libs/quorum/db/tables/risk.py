"""Risk: halts, the active profile, kill switches, drawdown, its cash and position projection, every verdict."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Integer, PrimaryKeyConstraint, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import Money, about, created_at, metadata, profile_table

OWNER = "risk"

risk_profile_state = profile_table("risk_profile_state", about("the active risk profile"))

risk_state = Table(
    "risk_state",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("halted", Boolean, nullable=False),
    Column("emergency", Boolean, nullable=False, server_default="false",
           comment="an automatic emergency halt: only ClearEmergencyHalt (confirmed) lifts it"),
    Column("reason", Text, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    info=about("halt flag per scope (emergency or not), who set it and why"),
)

risk_balances = Table(
    "risk_balances",
    metadata,
    Column("currency", String(16), primary_key=True),
    Column("amount", Money, nullable=False),
    info=about("risk's cash projection (with reservations)"),
)

risk_positions = Table(
    "risk_positions",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("cost", Money, nullable=False, server_default="0", comment="quote paid for what is held, fees included"),
    Column("last_price", Money),
    Column("pending_client_order_id", String(64)),
    Column("reserved_cash", Money, nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
    info=about("risk's per-symbol position, pending order, reserved cash"),
)

risk_kill_switch = Table(
    "risk_kill_switch",
    metadata,
    Column("scope", String(32), primary_key=True, comment="'*' for global, else the symbol"),
    Column("engaged", Boolean, nullable=False),
    Column("automatic", Boolean, nullable=False),
    Column("losing_streak", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    info=about("kill switch per scope (`*` = global): engaged, automatic, losing streak, reason"),
)

risk_drawdown = Table(
    "risk_drawdown",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("peak", Money, nullable=False),
    Column("equity", Money, nullable=False),
    Column("breached", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    info=about("peak and current equity, breached flag (latched until cleared)"),
)

risk_daily = Table(
    "risk_daily",
    metadata,
    Column("day", DateTime(timezone=True), primary_key=True, comment="UTC midnight"),
    Column("start_equity", Money, nullable=False),
    info=about("equity at the start of each UTC day (daily loss limit)"),
)

risk_checks = Table(
    "risk_checks",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason_code", String(64)),
    Column("quantity", Money),
    Column("checks", JSONB, nullable=False),
    created_at(),
    info=about("every verdict with its check outcomes and reason code"),
)
