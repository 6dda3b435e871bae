"""Natural keys: one council decision per candle (exchange, symbol, timeframe, open time), whatever the event
id of the candle or prediction that caused it. Features and predictions already had natural primary keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fails loudly (and changes nothing) on a database that already holds two decisions for one candle:
    # which one stands is an operator's call, not a migration's.
    op.create_unique_constraint('uq_decisions_candle', 'decisions', ['exchange', 'symbol', 'timeframe', 'ts'])


def downgrade() -> None:
    op.drop_constraint('uq_decisions_candle', 'decisions', type_='unique')
