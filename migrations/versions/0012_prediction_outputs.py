"""Predictions carry the expected return beside ``p_up`` and the MLflow run of the model that made them.

``predictions.expected_return``: the model's expected log return over its horizon (null from a model that gives
only a direction, such as the baseline). ``predictions.run_id``: the MLflow run that trained the model (null for
a built-in model), so every prediction leads back to its training data, code and parameters.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-17 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('predictions', sa.Column('expected_return', sa.Float(), nullable=True,
                                           comment='expected log return over the horizon (null: direction only)'))
    op.add_column('predictions', sa.Column('run_id', sa.String(length=64), nullable=True,
                                           comment='the MLflow run that trained the model (null: a built-in model)'))


def downgrade() -> None:
    op.drop_column('predictions', 'run_id')
    op.drop_column('predictions', 'expected_return')
