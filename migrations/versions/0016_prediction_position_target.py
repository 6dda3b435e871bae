"""Predictions carry a position policy's target (``predictions.position_target``: 0 flat to 1 fully long; null from
a model that predicts returns), which the council's ``policy`` strategy follows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('predictions', sa.Column('position_target', sa.Float(), nullable=True,
                                           comment="a position policy's target, 0 flat to 1 long (null: a predictor)"))


def downgrade() -> None:
    op.drop_column('predictions', 'position_target')
