"""Risk, OMS and paper venue: kill switches, drawdown, daily loss, proposals, OCO and protective orders,
reconciliation records, confirmation tokens, the matching engine's persisted state and trade history.

Data: order status NEW is now PENDING; the foundation matcher's OPEN paper orders are ACCEPTED.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 18:19:30.373627
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('confirmation_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False, comment='sha256 of the token; the token itself is never stored'),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('params_hash', sa.String(length=64), nullable=False, comment='the confirmed request, so a token cannot be reused'),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_confirmation_tokens'))
    )
    op.create_table('matching_state',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('state', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the engine's whole per-symbol state (orders, book, RNG)"),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', name=op.f('pk_matching_state'))
    )
    op.create_table('paper_fills',
    sa.Column('fill_id', sa.String(length=64), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('fill', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the OrderFilled payload: the venue's own trade history"),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('fill_id', name=op.f('pk_paper_fills'))
    )
    op.create_index('ix_paper_fills_order', 'paper_fills', ['client_order_id'], unique=False)
    op.create_table('reconciliation_discrepancies',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('venue', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_discrepancies'))
    )
    op.create_table('risk_daily',
    sa.Column('day', sa.DateTime(timezone=True), nullable=False, comment='UTC midnight'),
    sa.Column('start_equity', sa.Numeric(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_risk_daily'))
    )
    op.create_table('risk_drawdown',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('peak', sa.Numeric(), nullable=False),
    sa.Column('equity', sa.Numeric(), nullable=False),
    sa.Column('breached', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_risk_drawdown'))
    )
    op.create_table('risk_kill_switch',
    sa.Column('scope', sa.String(length=32), nullable=False, comment="'*' for global, else the symbol"),
    sa.Column('engaged', sa.Boolean(), nullable=False),
    sa.Column('automatic', sa.Boolean(), nullable=False),
    sa.Column('losing_streak', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_risk_kill_switch'))
    )
    op.create_table('trade_proposals',
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('reference_price', sa.Numeric(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False, comment='PENDING, APPROVED, REJECTED, EXPIRED or OBSERVED'),
    sa.Column('intent', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the approved intent's envelope, acted on at approval"),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_trade_proposals'))
    )
    op.create_index('ix_trade_proposals_status', 'trade_proposals', ['status'], unique=False)
    op.add_column('oms_state', sa.Column('operating_mode', sa.String(length=16), server_default='FULL_AUTO', nullable=False))
    op.add_column('orders', sa.Column('time_in_force', sa.String(length=8), server_default='GTC', nullable=False))
    op.add_column('orders', sa.Column('purpose', sa.String(length=16), server_default='ENTRY', nullable=False, comment='ENTRY, REENTRY, EXIT, STOP_LOSS, TAKE_PROFIT, LIQUIDATION'))
    op.add_column('orders', sa.Column('stop_price', sa.Numeric(), nullable=True))
    op.add_column('orders', sa.Column('stop_loss', sa.Numeric(), nullable=True, comment='protective stop to attach once filled'))
    op.add_column('orders', sa.Column('take_profit', sa.Numeric(), nullable=True, comment='take-profit to attach once filled'))
    op.add_column('orders', sa.Column('parent_client_order_id', sa.String(length=64), nullable=True, comment='the entry a protective order protects'))
    op.add_column('orders', sa.Column('oco_group', sa.String(length=64), nullable=True, comment='orders of one group: a fill of one cancels the others'))
    op.add_column('orders', sa.Column('venue_final_status', sa.String(length=24), nullable=True, comment='how the venue ended the order, once it did'))
    op.add_column('orders', sa.Column('venue_final_filled', sa.Numeric(), nullable=True, comment='what had executed when the venue ended it'))
    op.alter_column('orders', 'decision_id',
               existing_type=sa.UUID(),
               nullable=True,
               comment='null for protective and liquidation orders')
    op.alter_column('paper_orders', 'status',
               existing_type=sa.VARCHAR(length=16),
               type_=sa.String(length=24),
               existing_nullable=False)
    op.add_column('risk_positions', sa.Column('cost', sa.Numeric(), server_default='0', nullable=False, comment='quote paid for what is held, fees included'))
    for table, column in (('orders', 'status'), ('order_events', 'from_status'), ('order_events', 'to_status')):
        op.execute(f"UPDATE {table} SET {column} = 'PENDING' WHERE {column} = 'NEW'")
    op.execute("UPDATE paper_orders SET status = 'ACCEPTED' WHERE status = 'OPEN'")
    op.add_column('risk_state', sa.Column('emergency', sa.Boolean(), server_default='false', nullable=False, comment='an automatic emergency halt: only ClearEmergencyHalt (confirmed) lifts it'))


def downgrade() -> None:
    for table, column in (('orders', 'status'), ('order_events', 'from_status'), ('order_events', 'to_status')):
        op.execute(f"UPDATE {table} SET {column} = 'NEW' WHERE {column} = 'PENDING'")
    op.execute("UPDATE paper_orders SET status = 'OPEN' WHERE status IN ('ACCEPTED', 'PARTIALLY_FILLED')")
    op.drop_column('risk_state', 'emergency')
    op.drop_column('risk_positions', 'cost')
    op.alter_column('paper_orders', 'status',
               existing_type=sa.String(length=24),
               type_=sa.VARCHAR(length=16),
               existing_nullable=False)
    op.alter_column('orders', 'decision_id',
               existing_type=sa.UUID(),
               nullable=False,
               comment=None,
               existing_comment='null for protective and liquidation orders')
    op.drop_column('orders', 'venue_final_filled')
    op.drop_column('orders', 'venue_final_status')
    op.drop_column('orders', 'oco_group')
    op.drop_column('orders', 'parent_client_order_id')
    op.drop_column('orders', 'take_profit')
    op.drop_column('orders', 'stop_loss')
    op.drop_column('orders', 'stop_price')
    op.drop_column('orders', 'purpose')
    op.drop_column('orders', 'time_in_force')
    op.drop_column('oms_state', 'operating_mode')
    op.drop_index('ix_trade_proposals_status', table_name='trade_proposals')
    op.drop_table('trade_proposals')
    op.drop_table('risk_kill_switch')
    op.drop_table('risk_drawdown')
    op.drop_table('risk_daily')
    op.drop_table('reconciliation_discrepancies')
    op.drop_index('ix_paper_fills_order', table_name='paper_fills')
    op.drop_table('paper_fills')
    op.drop_table('matching_state')
    op.drop_table('confirmation_tokens')
