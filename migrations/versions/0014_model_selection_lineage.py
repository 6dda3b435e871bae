"""The model in service, with its lineage and the one before it.

``model_selection.run_id``: the MLflow run of the served version (null: a built-in model). ``source``: how it was
chosen: ``champion`` (the registry's champion alias; at start inference follows the alias), ``selected`` (an
operator's ``SelectModel`` pin, kept across restarts) or ``baseline`` (no champion was registered).
``previous_*``: the model served before it, what a rollback returns to. ``updated_at`` is when it went into
service. Existing rows are operators' selections of built-in models: ``selected``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-18 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('model_selection', sa.Column('run_id', sa.String(length=64), nullable=True,
                                               comment='the MLflow run that trained it (null: a built-in model)'))
    op.add_column('model_selection', sa.Column(
        'source', sa.String(length=16), server_default='selected', nullable=False,
        comment='champion (follows the registry alias), selected (an operator\'s pin) or baseline (nothing else)'))
    op.add_column('model_selection', sa.Column('previous_model_name', sa.String(length=64), nullable=True,
                                               comment='the model served before, kept to roll back to'))
    op.add_column('model_selection', sa.Column('previous_version', sa.String(length=64), nullable=True))
    op.add_column('model_selection', sa.Column('previous_source', sa.String(length=16), nullable=True))
    op.alter_column('model_selection', 'updated_at', comment='in service since', existing_nullable=False,
                    existing_type=sa.DateTime(timezone=True))


def downgrade() -> None:
    op.alter_column('model_selection', 'updated_at', comment=None, existing_nullable=False,
                    existing_type=sa.DateTime(timezone=True))
    for column in ('previous_source', 'previous_version', 'previous_model_name', 'source', 'run_id'):
        op.drop_column('model_selection', column)
