"""Training jobs: the request, status and progress, the running trainer's claim and heartbeat, the cancel request
and the result of every training job.

The app role (``quorum_app``, 0008) may read, queue and update jobs (the gateway queues and cancels them, the
trainers claim, report and finish them) but not delete them: what was trained, by whom and with what verdict stays
on record.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-18 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status IN ('QUEUED', 'RUNNING')")


def upgrade() -> None:
    op.create_table('training_jobs',
    sa.Column('id', sa.UUID(), nullable=False, comment='the job id (StartTraining.job_id)'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False, comment='the operator, or SYSTEM:trainer (schedule, drift)'),
    sa.Column('request', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='the TrainingRequest as JSON'),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=True, comment='dataset, folds, backtest, fit, register, done'),
    sa.Column('progress', sa.Float(), server_default='0', nullable=False, comment='percent, 0 to 100'),
    sa.Column('fold', sa.Integer(), nullable=True),
    sa.Column('folds', sa.Integer(), nullable=True),
    sa.Column('elapsed_s', sa.Float(), nullable=True, comment='seconds the current run has taken so far'),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='TrainingResult.summary(): version, metrics, strategy, verdict'),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('model_name', sa.String(length=64), nullable=True, comment='the registered model, once registered'),
    sa.Column('version', sa.String(length=16), nullable=True, comment='its registry version'),
    sa.Column('run_id', sa.String(length=64), nullable=True, comment='the MLflow run'),
    sa.Column('claimed_by', sa.String(length=200), nullable=True, comment='the trainer running it'),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True, comment="the claim's last renewal; null: released"),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True, comment='when the current run began'),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED', 'CANCELED')", name='ck_training_jobs_status'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_jobs'))
    )
    op.create_index('ix_training_jobs_created_at', 'training_jobs', ['created_at'], unique=False)
    op.create_index('ix_training_jobs_open', 'training_jobs', ['status', 'heartbeat_at'], unique=False,
                    postgresql_where=OPEN)
    op.execute("GRANT SELECT, INSERT, UPDATE ON training_jobs TO quorum_app")
    op.execute("REVOKE DELETE, TRUNCATE ON training_jobs FROM quorum_app")


def downgrade() -> None:
    op.drop_index('ix_training_jobs_open', table_name='training_jobs', postgresql_where=OPEN)
    op.drop_index('ix_training_jobs_created_at', table_name='training_jobs')
    op.drop_table('training_jobs')
