"""Inference: model outputs and the model version it serves."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects.postgresql import UUID

from quorum.db.tables.base import about, metadata, timestamp

OWNER = "inference"

predictions = Table(
    "predictions",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    timestamp(),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("p_up", Float),
    Column("expected_return", Float, comment="expected log return over the horizon (null: direction only)"),
    Column("run_id", String(64), comment="the MLflow run that trained the model (null: a built-in model)"),
    Column("position_target", Float, comment="a position policy's target, 0 flat to 1 long (null: a predictor)"),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "model_version", "ts"),
    Index("ix_predictions_time", "ts"),
    info=about("model outputs with model and feature-set versions"),
)

model_selection = Table(
    "model_selection",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("model_name", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("run_id", String(64), comment="the MLflow run that trained it (null: a built-in model)"),
    Column("source", String(16), nullable=False, server_default="selected",
           comment="champion (follows the registry alias), selected (an operator's pin) or baseline (nothing else)"),
    Column("previous_model_name", String(64), comment="the model served before, kept to roll back to"),
    Column("previous_version", String(64)),
    Column("previous_source", String(16)),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, comment="in service since"),
    info=about("the model version inference serves, how it was chosen, and the one before it"),
)
