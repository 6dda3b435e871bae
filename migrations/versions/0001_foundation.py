"""Foundation schema: market data, features, predictions, decisions, risk, orders, fills, paper venue,
ledger, audit, inbox and outbox.

Time-series tables become TimescaleDB hypertables where the extension is available; plain PostgreSQL
gets the same tables with a time index. Orders, fills, ledger and audit always stay plain tables.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HYPERTABLES = ("candles", "features", "predictions", "equity")


def _timescale_available() -> bool:
    row = op.get_bind().execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"))
    return row.first() is not None


def _make_hypertables() -> None:
    if not _timescale_available():
        return  # plain PostgreSQL: the ix_<table>_time indexes serve time-range queries
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table in HYPERTABLES:
        op.execute(
            f"SELECT create_hypertable('{table}', by_range('ts'), create_default_indexes => false, "
            "if_not_exists => true, migrate_data => true)"
        )


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('risk_profile', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('event_id', name=op.f('uq_audit_log_event_id'))
    )
    op.create_index('ix_audit_log_ts', 'audit_log', ['ts'], unique=False)
    op.create_table('candles',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('open', sa.Numeric(), nullable=False),
    sa.Column('high', sa.Numeric(), nullable=False),
    sa.Column('low', sa.Numeric(), nullable=False),
    sa.Column('close', sa.Numeric(), nullable=False),
    sa.Column('volume', sa.Numeric(), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'timeframe', 'ts', name=op.f('pk_candles'))
    )
    op.create_index('ix_candles_time', 'candles', ['ts'], unique=False)
    op.create_table('decisions',
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('reason_codes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('model_versions', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('feature_set', sa.String(length=64), nullable=False),
    sa.Column('price', sa.Numeric(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_decisions'))
    )
    op.create_index('ix_decisions_symbol_ts', 'decisions', ['symbol', 'ts'], unique=False)
    op.create_table('equity',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('equity', sa.Numeric(), nullable=False),
    sa.Column('peak_equity', sa.Numeric(), nullable=False),
    sa.Column('drawdown', sa.Numeric(), nullable=False),
    sa.PrimaryKeyConstraint('mode', 'ts', name=op.f('pk_equity'))
    )
    op.create_index('ix_equity_time', 'equity', ['ts'], unique=False)
    op.create_table('features',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('feature_set', sa.String(length=64), nullable=False),
    sa.Column('close', sa.Numeric(), nullable=False),
    sa.Column('values', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'timeframe', 'feature_set', 'ts', name=op.f('pk_features'))
    )
    op.create_index('ix_features_time', 'features', ['ts'], unique=False)
    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_table('ledger_transactions',
    sa.Column('txn_id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('source_event_id', sa.UUID(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('txn_id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('hash', name=op.f('uq_ledger_transactions_hash')),
    sa.UniqueConstraint('seq', name=op.f('uq_ledger_transactions_seq')),
    sa.UniqueConstraint('source_event_id', name=op.f('uq_ledger_transactions_source_event_id'))
    )
    op.create_table('oms_state',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('routing_connected', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('mode', name=op.f('pk_oms_state'))
    )
    op.create_table('orders',
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('venue', sa.String(length=32), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('order_type', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('limit_price', sa.Numeric(), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('filled_quantity', sa.Numeric(), nullable=False),
    sa.Column('average_price', sa.Numeric(), nullable=True),
    sa.Column('fees', sa.Numeric(), nullable=False),
    sa.Column('fee_currency', sa.String(length=16), nullable=True),
    sa.Column('quote_spent', sa.Numeric(), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=True),
    sa.Column('reference_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_order_id', name=op.f('pk_orders')),
    sa.UniqueConstraint('decision_id', name=op.f('uq_orders_decision_id'))
    )
    op.create_index('ix_orders_status', 'orders', ['status'], unique=False)
    op.create_index('ix_orders_symbol_created', 'orders', ['symbol', 'created_at'], unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event_id'))
    )
    op.create_index('ix_outbox_service_id', 'outbox', ['service', 'id'], unique=False)
    op.create_table('paper_orders',
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('command', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='the SubmitOrder envelope, to resume after a restart'),
    sa.Column('reference_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('client_order_id', name=op.f('pk_paper_orders'))
    )
    op.create_index('ix_paper_orders_open', 'paper_orders', ['exchange', 'symbol', 'status'], unique=False)
    op.create_table('positions',
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('avg_cost', sa.Numeric(), nullable=False),
    sa.Column('realized_pnl', sa.Numeric(), nullable=False),
    sa.Column('fees_paid', sa.Numeric(), nullable=False),
    sa.Column('mark_price', sa.Numeric(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('mode', 'symbol', name=op.f('pk_positions'))
    )
    op.create_table('predictions',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('feature_set', sa.String(length=64), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('p_up', sa.Float(), nullable=True),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'timeframe', 'model_version', 'ts', name=op.f('pk_predictions'))
    )
    op.create_index('ix_predictions_time', 'predictions', ['ts'], unique=False)
    op.create_table('replay_checkpoints',
    sa.Column('source_key', sa.String(length=512), nullable=False),
    sa.Column('last_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows_published', sa.BigInteger(), nullable=False),
    sa.Column('rows_rejected', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('source_key', name=op.f('pk_replay_checkpoints'))
    )
    op.create_table('risk_balances',
    sa.Column('currency', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.PrimaryKeyConstraint('currency', name=op.f('pk_risk_balances'))
    )
    op.create_table('risk_checks',
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=True),
    sa.Column('quantity', sa.Numeric(), nullable=True),
    sa.Column('checks', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_risk_checks'))
    )
    op.create_table('risk_positions',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('last_price', sa.Numeric(), nullable=True),
    sa.Column('pending_client_order_id', sa.String(length=64), nullable=True),
    sa.Column('reserved_cash', sa.Numeric(), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', name=op.f('pk_risk_positions'))
    )
    op.create_table('risk_state',
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('halted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_risk_state'))
    )
    op.create_table('fills',
    sa.Column('fill_id', sa.String(length=64), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('venue', sa.String(length=32), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('price', sa.Numeric(), nullable=False),
    sa.Column('fee', sa.Numeric(), nullable=False),
    sa.Column('fee_currency', sa.String(length=16), nullable=False),
    sa.Column('liquidity', sa.String(length=8), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['client_order_id'], ['orders.client_order_id'], name=op.f('fk_fills_client_order_id_orders')),
    sa.PrimaryKeyConstraint('fill_id', name=op.f('pk_fills')),
    sa.UniqueConstraint('event_id', name=op.f('uq_fills_event_id'))
    )
    op.create_index('ix_fills_symbol_ts', 'fills', ['symbol', 'ts'], unique=False)
    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('txn_id', sa.UUID(), nullable=False),
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.ForeignKeyConstraint(['txn_id'], ['ledger_transactions.txn_id'], name=op.f('fk_ledger_entries_txn_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    op.create_index('ix_ledger_entries_account', 'ledger_entries', ['account'], unique=False)
    op.create_index('ix_ledger_entries_txn', 'ledger_entries', ['txn_id'], unique=False)
    op.create_table('order_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('from_status', sa.String(length=24), nullable=True),
    sa.Column('to_status', sa.String(length=24), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=True),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_order_id'], ['orders.client_order_id'], name=op.f('fk_order_events_client_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_order_events_event_id'))
    )
    op.create_index('ix_order_events_order', 'order_events', ['client_order_id'], unique=False)
    op.create_table('signals',
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('producer', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('reason_codes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.ForeignKeyConstraint(['decision_id'], ['decisions.decision_id'], name=op.f('fk_signals_decision_id_decisions')),
    sa.PrimaryKeyConstraint('decision_id', 'producer', name=op.f('pk_signals'))
    )

    _make_hypertables()

def downgrade() -> None:
    op.drop_table('signals')
    op.drop_index('ix_order_events_order', table_name='order_events')
    op.drop_table('order_events')
    op.drop_index('ix_ledger_entries_txn', table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_account', table_name='ledger_entries')
    op.drop_table('ledger_entries')
    op.drop_index('ix_fills_symbol_ts', table_name='fills')
    op.drop_table('fills')
    op.drop_table('risk_state')
    op.drop_table('risk_positions')
    op.drop_table('risk_checks')
    op.drop_table('risk_balances')
    op.drop_table('replay_checkpoints')
    op.drop_index('ix_predictions_time', table_name='predictions')
    op.drop_table('predictions')
    op.drop_table('positions')
    op.drop_index('ix_paper_orders_open', table_name='paper_orders')
    op.drop_table('paper_orders')
    op.drop_index('ix_outbox_service_id', table_name='outbox')
    op.drop_table('outbox')
    op.drop_index('ix_orders_symbol_created', table_name='orders')
    op.drop_index('ix_orders_status', table_name='orders')
    op.drop_table('orders')
    op.drop_table('oms_state')
    op.drop_table('ledger_transactions')
    op.drop_table('inbox')
    op.drop_index('ix_features_time', table_name='features')
    op.drop_table('features')
    op.drop_index('ix_equity_time', table_name='equity')
    op.drop_table('equity')
    op.drop_index('ix_decisions_symbol_ts', table_name='decisions')
    op.drop_table('decisions')
    op.drop_index('ix_candles_time', table_name='candles')
    op.drop_table('candles')
    op.drop_index('ix_audit_log_ts', table_name='audit_log')
    op.drop_table('audit_log')
