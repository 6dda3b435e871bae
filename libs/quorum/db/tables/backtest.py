"""Backtests the gateway ran (queued, running, done or failed, with their metrics) and validation gate reports:
whether a configuration passed its out-of-sample criteria on an asset."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import about, created_at, metadata

OWNER = "gateway"
STATUSES = ("QUEUED", "RUNNING", "DONE", "FAILED")

backtests = Table(
    "backtests",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    created_at(),
    Column("created_by", String(200), nullable=False),
    Column("config_name", String(64), nullable=False, comment="the named configuration asked for"),
    Column("config_hash", String(16), nullable=False, comment="RunnerConfig.config_hash of the configuration"),
    Column("configuration", JSONB, nullable=False, comment="every service's settings as the run used them"),
    Column("source", String(200), nullable=False, comment="the data file's name, or 'candles' (the stored ones)"),
    Column("range_start", DateTime(timezone=True), comment="first candle's open time, once the data is read"),
    Column("range_end", DateTime(timezone=True), comment="last candle's open time, once the data is read"),
    Column("symbols", JSONB, nullable=False, comment="asked for, then those the data had"),
    Column("timeframe", String(8), comment="asked for, or the data's, once it is read"),
    Column("walk_forward", JSONB, comment="the walk-forward's parameters; null for a plain backtest"),
    Column("code_version", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("progress", Float, nullable=False, server_default="0", comment="bars run / bars to run, 0 to 1"),
    Column("bars", Integer, nullable=False, server_default="0", comment="bars run so far"),
    Column("metrics", JSONB, comment="a plain backtest: its metrics; a walk-forward: out-of-sample ones per asset"),
    Column("report_path", String(500)),
    Column("error", Text),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="ck_backtests_status"),
    Index("ix_backtests_created_at", "created_at"),
    info=about("backtests run by the gateway: configuration (hash and settings), data range, code version, status "
               "and progress, metrics, report path, error"),
)

gate_reports = Table(
    "gate_reports",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    created_at(),
    Column("asset", String(32), nullable=False, comment="the symbol, BASE/QUOTE"),
    Column("config_hash", String(16), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("criteria", JSONB, nullable=False, comment="each criterion: metric, op, threshold, figure, passed"),
    Column("walk_forward", JSONB, nullable=False, comment="the walk-forward's folds and out-of-sample metrics"),
    Column("backtest_id", UUID(as_uuid=True), ForeignKey("backtests.id")),
    Index("ix_gate_reports_latest", "config_hash", "asset", "id"),
    info=about("validation gate reports: per asset and configuration hash, passed, each criterion with its figure "
               "and threshold, the walk-forward summary", kind="plain, append-only (grants)"),
)
