"""Council: decisions, votes, per-symbol controls, campaigns, karma and its copy of the risk profile."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import Money, about, created_at, metadata, profile_table, timestamp

OWNER = "council"

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    timestamp(),
    Column("mode", String(16), nullable=False),
    Column("action", String(8), nullable=False),
    Column("intent", String(16), nullable=False, server_default="NONE"),
    Column("fraction", Money, nullable=False, server_default="0"),
    Column("consensus", String(8), nullable=False, server_default="HOLD", comment="the vote alone, before mode"),
    Column("confidence", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("agreement", JSONB, nullable=False, server_default="{}"),
    Column("risk_profile", String(8), nullable=False, server_default="MEDIUM"),
    Column("reason_codes", JSONB, nullable=False),
    Column("model_versions", JSONB, nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("price", Money, nullable=False),
    Column("stop_loss", Money),
    Column("take_profit", Money),
    Column("client_order_id", String(64), comment="the order this decision may become (non-HOLD only)"),
    Column("configuration_id", UUID(as_uuid=True),
           comment="the optimizer configuration the council decided with (null: the services' settings)"),
    Column("regime", String(32), comment="the market regime the council decided in (null: unknown, warming up)"),
    created_at(),
    UniqueConstraint("exchange", "symbol", "timeframe", "ts", name="uq_decisions_candle"),
    Index("ix_decisions_symbol_ts", "symbol", "ts"),
    Index("ix_decisions_client_order_id", "client_order_id"),
    info=about("council decisions (mode, action, intent, fraction, consensus, agreement, threshold, profile, reasons, "
               "model and feature-set versions, stop/target, client order id, market regime)"),
)

signals = Table(
    "signals",
    metadata,
    Column("decision_id", UUID(as_uuid=True), ForeignKey("decisions.decision_id"), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("producer", String(16), nullable=False, server_default="technical"),
    Column("risk_tag", String(8), nullable=False, server_default="MEDIUM"),
    Column("action", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("weight", Float, nullable=False),
    Column("eligible", Boolean, nullable=False, server_default="true"),
    Column("filtered_reason", String(32)),
    Column("reason_codes", JSONB, nullable=False),
    Column("stop_loss", Money),
    Column("take_profit", Money),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("decision_id", "strategy"),
    info=about("each voter's signal per decision (strategy, producer kind, risk tag, weight, eligible or filtered "
               "with reason, stop/target, metadata)"),
)

council_controls = Table(
    "council_controls",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False, comment="'*' holds the default for every symbol"),
    Column("mode", String(16), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("solo_strategy", String(64)),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
    info=about("council mode, threshold and Solo strategy per (exchange, symbol); `*` is the default"),
)

strategy_failures = Table(
    "strategy_failures",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("decision_ts", DateTime(timezone=True), nullable=False),
    created_at(),
    PrimaryKeyConstraint("exchange", "symbol", "strategy"),
    info=about("strategies disabled for a symbol after raising, with the error"),
)

council_campaigns = Table(
    "council_campaigns",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("average_cost", Money, nullable=False),
    Column("peak_quantity", Money, nullable=False),
    Column("cost", Money, nullable=False),
    Column("proceeds", Money, nullable=False),
    Column("partials_taken", Integer, nullable=False),
    Column("negative_streak", Integer, nullable=False),
    Column("derisked", Boolean, nullable=False),
    Column("position_id", String(64)),
    PrimaryKeyConstraint("exchange", "symbol"),
    info=about("per-symbol campaign: quantity, average cost, peak size, cost/proceeds, partials taken, "
               "negative-outlook streak, de-risked flag"),
)

karma_votes = Table(
    "karma_votes",
    metadata,
    Column("decision_id", UUID(as_uuid=True), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("producer", String(16), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    timestamp(),
    Column("direction", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("position_id", String(64), comment="the campaign this conviction is judged by; set at entry"),
    Column("outcome_return", Float),
    Column("evaluated_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("decision_id", "strategy"),
    Index("ix_karma_votes_position_id", "position_id"),
    info=about("each eligible conviction (strategy, producer, direction, confidence) and, once its campaign closed, "
               "the outcome"),
)

council_risk_profile = profile_table(
    "council_risk_profile", about("the council's copy of the active risk profile (from `RiskProfileChanged`)"))
