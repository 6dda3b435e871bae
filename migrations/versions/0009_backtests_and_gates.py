"""Backtests and validation gate reports: the runs the gateway queues (configuration hash and settings, data
range, code version, status, progress, metrics, report path, error) and, per asset and configuration, whether
the out-of-sample criteria passed.

The app role (``quorum_app``, whose member ``quorum_service`` the services log in as, 0008) may read, queue and
update backtests but not delete them, and may only read and append gate reports: a report is a record of what
was shown, not something to edit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('backtests',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('config_name', sa.String(length=64), nullable=False, comment='the named configuration asked for'),
    sa.Column('config_hash', sa.String(length=16), nullable=False, comment='RunnerConfig.config_hash of the configuration'),
    sa.Column('configuration', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='every service\'s settings as the run used them'),
    sa.Column('source', sa.String(length=200), nullable=False, comment="the data file's name, or 'candles' (the stored ones)"),
    sa.Column('range_start', sa.DateTime(timezone=True), nullable=True, comment="first candle's open time, once the data is read"),
    sa.Column('range_end', sa.DateTime(timezone=True), nullable=True, comment="last candle's open time, once the data is read"),
    sa.Column('symbols', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='asked for, then those the data had'),
    sa.Column('timeframe', sa.String(length=8), nullable=True, comment="asked for, or the data's, once it is read"),
    sa.Column('walk_forward', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment="the walk-forward's parameters; null for a plain backtest"),
    sa.Column('code_version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('progress', sa.Float(), server_default='0', nullable=False, comment='bars run / bars to run, 0 to 1'),
    sa.Column('bars', sa.Integer(), server_default='0', nullable=False, comment='bars run so far'),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='a plain backtest: its metrics; a walk-forward: out-of-sample ones per asset'),
    sa.Column('report_path', sa.String(length=500), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('QUEUED', 'RUNNING', 'DONE', 'FAILED')", name='ck_backtests_status'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backtests'))
    )
    op.create_index('ix_backtests_created_at', 'backtests', ['created_at'], unique=False)
    op.create_table('gate_reports',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('asset', sa.String(length=32), nullable=False, comment='the symbol, BASE/QUOTE'),
    sa.Column('config_hash', sa.String(length=16), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('criteria', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='each criterion: metric, op, threshold, figure, passed'),
    sa.Column('walk_forward', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the walk-forward's folds and out-of-sample metrics"),
    sa.Column('backtest_id', sa.UUID(), nullable=True),
    sa.ForeignKeyConstraint(['backtest_id'], ['backtests.id'], name=op.f('fk_gate_reports_backtest_id_backtests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_reports'))
    )
    op.create_index('ix_gate_reports_latest', 'gate_reports', ['config_hash', 'asset', 'id'], unique=False)
    op.execute("GRANT SELECT, INSERT, UPDATE ON backtests TO quorum_app")
    op.execute("REVOKE DELETE, TRUNCATE ON backtests FROM quorum_app")
    op.execute("GRANT SELECT, INSERT ON gate_reports TO quorum_app")
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON gate_reports FROM quorum_app")
    op.execute("GRANT USAGE ON SEQUENCE gate_reports_id_seq TO quorum_app")


def downgrade() -> None:
    op.drop_index('ix_gate_reports_latest', table_name='gate_reports')
    op.drop_table('gate_reports')
    op.drop_index('ix_backtests_created_at', table_name='backtests')
    op.drop_table('backtests')
