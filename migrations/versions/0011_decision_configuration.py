"""Each council decision names the optimizer configuration it was made with.

``decisions.configuration_id``: the ACTIVE ``configurations`` row the council decided with, null while it
decides with the services' settings. ``quorum replay`` follows it, so a session in which an operator approved a
configuration replays each candle with the configuration its decision was made with. No foreign key: a
decision is history, and history never blocks (or cascades from) what happens to the configurations table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-16 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('decisions', sa.Column('configuration_id', sa.UUID(), nullable=True,
                                         comment="the optimizer configuration the council decided with (null: the "
                                                 "services' settings)"))


def downgrade() -> None:
    op.drop_column('decisions', 'configuration_id')
