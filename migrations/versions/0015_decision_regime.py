"""Each council decision names the market regime it was made in.

``decisions.regime``: the regime the council saw at the candle (``quorum.learning.regime``: trending_up,
trending_down, ranging, high_volatility), null while its features warm up and for decisions recorded before
this revision. A strategy restricted to other regimes abstained in it (its signal says ``REGIME_EXCLUDED``), so a
decision can be explained, and replayed, with the regime it saw.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('decisions', sa.Column('regime', sa.String(length=32), nullable=True,
                                         comment="the market regime the council decided in (null: unknown, "
                                                 "warming up)"))


def downgrade() -> None:
    op.drop_column('decisions', 'regime')
