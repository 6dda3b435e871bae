"""Configurations the optimizer found: PROPOSED beside the ACTIVE one (with both their metrics on the same data)
until an operator approves or rejects them; at most one is ACTIVE, the one the council decides with."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Index, String, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import about, created_at, metadata

OWNER = "gateway"
STATUSES = ("PROPOSED", "ACTIVE", "REJECTED", "SUPERSEDED")

configurations = Table(
    "configurations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    created_at(),
    Column("created_by", String(200), nullable=False),
    Column("config_hash", String(16), nullable=False, comment="RunnerConfig.config_hash the optimizer scored"),
    Column("overrides", JSONB, nullable=False, comment="the council's settings overrides (CouncilConfig fields)"),
    Column("params", JSONB, nullable=False, comment="the searched parameters' values (name -> value)"),
    Column("status", String(10), nullable=False),
    Column("profile", String(8), nullable=False, comment="the risk profile it was optimized for"),
    Column("metrics", JSONB, nullable=False, comment="its scores and out-of-sample metrics"),
    Column("active_metrics", JSONB, comment="the then active configuration's, on the same data (side by side)"),
    Column("active_config_id", UUID(as_uuid=True), comment="that configuration's row; null: the services' settings"),
    Column("study", String(200), comment="the optimizer study it came from"),
    Column("decided_by", String(200), comment="who approved or rejected it (SYSTEM: without approval)"),
    Column("decided_at", DateTime(timezone=True)),
    Column("reason", Text, comment="why it was approved, rejected or superseded"),
    Column("activated_at", DateTime(timezone=True), comment="when the council began deciding with it"),
    Column("superseded_at", DateTime(timezone=True), comment="when another one replaced it"),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="ck_configurations_status"),
    Index("ix_configurations_status", "status", "created_at"),
    Index("uq_configurations_one_active", "status", unique=True, postgresql_where=text("status = 'ACTIVE'")),
    info=about("optimizer configurations: council overrides and searched parameters, status (PROPOSED, ACTIVE, "
               "REJECTED, SUPERSEDED), target profile, its metrics beside the active one's, study, who decided "
               "when, active period"),
)
