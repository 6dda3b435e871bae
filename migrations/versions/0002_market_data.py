"""Market data: backfill checkpoints, candle corrections, order-book snapshots.

Order-book snapshots become a hypertable on TimescaleDB.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 16:07:06.751272
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timescale_installed() -> bool:
    row = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"))
    return row.first() is not None


def upgrade() -> None:
    op.create_table('backfill_checkpoints',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('next_since', sa.DateTime(timezone=True), nullable=False, comment='resume fetching from here'),
    sa.Column('rows_written', sa.BigInteger(), nullable=False),
    sa.Column('rows_rejected', sa.BigInteger(), nullable=False),
    sa.Column('completed', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'timeframe', name=op.f('pk_backfill_checkpoints'))
    )
    op.create_table('candle_corrections',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('previous', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('corrected', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_candle_corrections')),
    sa.UniqueConstraint('event_id', name=op.f('uq_candle_corrections_event_id'))
    )
    op.create_table('order_book_snapshots',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('depth', sa.Integer(), nullable=False),
    sa.Column('bids', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='[[price, quantity], ...] best first, decimal strings'),
    sa.Column('asks', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='[[price, quantity], ...] best first, decimal strings'),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'ts', name=op.f('pk_order_book_snapshots'))
    )
    op.create_index('ix_order_book_snapshots_time', 'order_book_snapshots', ['ts'], unique=False)

    if _timescale_installed():  # 0001 installed it where available
        op.execute(
            "SELECT create_hypertable('order_book_snapshots', by_range('ts'), create_default_indexes => false, "
            "if_not_exists => true, migrate_data => true)"
        )

def downgrade() -> None:
    op.drop_index('ix_order_book_snapshots_time', table_name='order_book_snapshots')
    op.drop_table('order_book_snapshots')
    op.drop_table('candle_corrections')
    op.drop_table('backfill_checkpoints')
