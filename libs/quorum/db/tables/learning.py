"""Training jobs: what was asked for (a ``TrainingRequest``), who runs it (the trainer's claim and heartbeat, which
another trainer takes over once the lease runs out), how far it got and how it ended (the result summary, or the
error). The row is the job's state; the trainer's events only report it."""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Column, DateTime, Float, Index, Integer, String, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import about, created_at, metadata

OWNER = "trainer"
STATUSES = ("QUEUED", "RUNNING", "DONE", "FAILED", "CANCELED")

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, comment="the job id (StartTraining.job_id)"),
    created_at(),
    Column("created_by", String(200), nullable=False, comment="the operator, or SYSTEM:trainer (schedule, drift)"),
    Column("request", JSONB, nullable=False, comment="the TrainingRequest as JSON"),
    Column("status", String(8), nullable=False),
    Column("stage", String(16), comment="dataset, folds, backtest, fit, register, done"),
    Column("progress", Float, nullable=False, server_default="0", comment="percent, 0 to 100"),
    Column("fold", Integer),
    Column("folds", Integer),
    Column("elapsed_s", Float, comment="seconds the current run has taken so far"),
    Column("result", JSONB, comment="TrainingResult.summary(): version, metrics, strategy, verdict"),
    Column("error", Text),
    Column("model_name", String(64), comment="the registered model, once registered"),
    Column("version", String(16), comment="its registry version"),
    Column("run_id", String(64), comment="the MLflow run"),
    Column("claimed_by", String(200), comment="the trainer running it"),
    Column("heartbeat_at", DateTime(timezone=True), comment="the claim's last renewal; null: released"),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("started_at", DateTime(timezone=True), comment="when the current run began"),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="ck_training_jobs_status"),
    Index("ix_training_jobs_created_at", "created_at"),
    Index("ix_training_jobs_open", "status", "heartbeat_at", postgresql_where=text("status IN ('QUEUED', 'RUNNING')")),
    info=about("training jobs: the request, status (QUEUED, RUNNING, DONE, FAILED, CANCELED), stage and progress, "
               "the trainer's claim and heartbeat, cancel request, result summary (registered version, verdict), "
               "error"),
)
