"""Optimizer configurations, and a schema of its own for Optuna's study storage.

``configurations``: what the optimizer found (PROPOSED) beside the ACTIVE one, until an operator approves or
rejects it; at most one row is ACTIVE (a partial unique index). The app role (``quorum_app``) may read, add and
update rows (approve, reject, supersede) but not delete them: what was proposed and decided stays on record.

``optuna``: Optuna's RDB storage (its studies, trials and its own Alembic version table) lives in this schema of
the project's database, so several workers or machines can share a study without its tables mixing with the
project's (nor its ``alembic_version`` with ours). Optuna creates its tables there on first use; the app role
may too. The downgrade drops the schema with whatever studies it holds.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-15 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('configurations',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('config_hash', sa.String(length=16), nullable=False, comment='RunnerConfig.config_hash the optimizer scored'),
    sa.Column('overrides', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the council's settings overrides (CouncilConfig fields)"),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the searched parameters' values (name -> value)"),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('profile', sa.String(length=8), nullable=False, comment='the risk profile it was optimized for'),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='its scores and out-of-sample metrics'),
    sa.Column('active_metrics', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment="the then active configuration's, on the same data (side by side)"),
    sa.Column('active_config_id', sa.UUID(), nullable=True, comment="that configuration's row; null: the services' settings"),
    sa.Column('study', sa.String(length=200), nullable=True, comment='the optimizer study it came from'),
    sa.Column('decided_by', sa.String(length=200), nullable=True, comment='who approved or rejected it (SYSTEM: without approval)'),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True, comment='why it was approved, rejected or superseded'),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True, comment='when the council began deciding with it'),
    sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True, comment='when another one replaced it'),
    sa.CheckConstraint("status IN ('PROPOSED', 'ACTIVE', 'REJECTED', 'SUPERSEDED')", name='ck_configurations_status'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_configurations'))
    )
    op.create_index('ix_configurations_status', 'configurations', ['status', 'created_at'], unique=False)
    op.create_index('uq_configurations_one_active', 'configurations', ['status'], unique=True,
                    postgresql_where=sa.text("status = 'ACTIVE'"))
    op.execute("GRANT SELECT, INSERT, UPDATE ON configurations TO quorum_app")
    op.execute("REVOKE DELETE, TRUNCATE ON configurations FROM quorum_app")
    op.execute("CREATE SCHEMA IF NOT EXISTS optuna")
    op.execute("GRANT USAGE, CREATE ON SCHEMA optuna TO quorum_app")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS optuna CASCADE")
    op.drop_index('uq_configurations_one_active', table_name='configurations', postgresql_where=sa.text("status = 'ACTIVE'"))
    op.drop_index('ix_configurations_status', table_name='configurations')
    op.drop_table('configurations')
