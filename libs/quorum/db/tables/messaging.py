"""Exactly-once plumbing every service shares through ``quorum.runtime``: the inbox and the outbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from quorum.db.tables.base import about, created_at, metadata

OWNER = "runtime"

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
    info=about("`(consumer, event_id)` applied messages"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("service", String(32), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("data", LargeBinary, nullable=False),
    created_at(),
    Index("ix_outbox_service_id", "service", "id"),
    info=about("events waiting to be published"),
)
