"""Council: richer decisions and votes, per-symbol controls, campaigns, karma, strategy failures, profiles.

Existing votes keep their data: ``signals.producer`` (the strategy name until now) becomes ``strategy`` and a
new ``producer`` column holds the producer kind.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 18:06:04.460752
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('council_campaigns',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('average_cost', sa.Numeric(), nullable=False),
    sa.Column('peak_quantity', sa.Numeric(), nullable=False),
    sa.Column('cost', sa.Numeric(), nullable=False),
    sa.Column('proceeds', sa.Numeric(), nullable=False),
    sa.Column('partials_taken', sa.Integer(), nullable=False),
    sa.Column('negative_streak', sa.Integer(), nullable=False),
    sa.Column('derisked', sa.Boolean(), nullable=False),
    sa.Column('position_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('exchange', 'symbol', name=op.f('pk_council_campaigns'))
    )
    op.create_table('council_controls',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False, comment="'*' holds the default for every symbol"),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('solo_strategy', sa.String(length=64), nullable=True),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', name=op.f('pk_council_controls'))
    )
    op.create_table('council_risk_profile',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('profile', sa.String(length=8), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_council_risk_profile'))
    )
    op.create_table('karma_votes',
    sa.Column('decision_id', sa.UUID(), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('producer', sa.String(length=16), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('position_id', sa.String(length=64), nullable=True, comment='the campaign this conviction is judged by; set at entry'),
    sa.Column('outcome_return', sa.Float(), nullable=True),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('decision_id', 'strategy', name=op.f('pk_karma_votes'))
    )
    op.create_index('ix_karma_votes_position_id', 'karma_votes', ['position_id'], unique=False)
    op.create_table('risk_profile_state',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('profile', sa.String(length=8), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_risk_profile_state'))
    )
    op.create_table('strategy_failures',
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('decision_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'symbol', 'strategy', name=op.f('pk_strategy_failures'))
    )
    op.add_column('decisions', sa.Column('intent', sa.String(length=16), server_default='NONE', nullable=False))
    op.add_column('decisions', sa.Column('fraction', sa.Numeric(), server_default='0', nullable=False))
    op.add_column('decisions', sa.Column('consensus', sa.String(length=8), server_default='HOLD', nullable=False, comment='the vote alone, before mode'))
    op.add_column('decisions', sa.Column('agreement', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False))
    op.add_column('decisions', sa.Column('risk_profile', sa.String(length=8), server_default='MEDIUM', nullable=False))
    op.add_column('decisions', sa.Column('stop_loss', sa.Numeric(), nullable=True))
    op.add_column('decisions', sa.Column('take_profit', sa.Numeric(), nullable=True))
    op.add_column('decisions', sa.Column('client_order_id', sa.String(length=64), nullable=True, comment='the order this decision may become (non-HOLD only)'))
    op.create_index('ix_decisions_client_order_id', 'decisions', ['client_order_id'], unique=False)
    op.alter_column('signals', 'producer', new_column_name='strategy')
    op.add_column('signals', sa.Column('producer', sa.String(length=16), server_default='technical', nullable=False))
    op.add_column('signals', sa.Column('risk_tag', sa.String(length=8), server_default='MEDIUM', nullable=False))
    op.add_column('signals', sa.Column('eligible', sa.Boolean(), server_default='true', nullable=False))
    op.add_column('signals', sa.Column('filtered_reason', sa.String(length=32), nullable=True))
    op.add_column('signals', sa.Column('stop_loss', sa.Numeric(), nullable=True))
    op.add_column('signals', sa.Column('take_profit', sa.Numeric(), nullable=True))
    op.add_column('signals', sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False))



def downgrade() -> None:
    op.drop_column('signals', 'metadata')
    op.drop_column('signals', 'take_profit')
    op.drop_column('signals', 'stop_loss')
    op.drop_column('signals', 'filtered_reason')
    op.drop_column('signals', 'eligible')
    op.drop_column('signals', 'risk_tag')
    op.drop_column('signals', 'producer')
    op.alter_column('signals', 'strategy', new_column_name='producer')
    op.drop_index('ix_decisions_client_order_id', table_name='decisions')
    op.drop_column('decisions', 'client_order_id')
    op.drop_column('decisions', 'take_profit')
    op.drop_column('decisions', 'stop_loss')
    op.drop_column('decisions', 'risk_profile')
    op.drop_column('decisions', 'agreement')
    op.drop_column('decisions', 'consensus')
    op.drop_column('decisions', 'fraction')
    op.drop_column('decisions', 'intent')
    op.drop_table('strategy_failures')
    op.drop_table('risk_profile_state')
    op.drop_index('ix_karma_votes_position_id', table_name='karma_votes')
    op.drop_table('karma_votes')
    op.drop_table('council_risk_profile')
    op.drop_table('council_controls')
    op.drop_table('council_campaigns')
