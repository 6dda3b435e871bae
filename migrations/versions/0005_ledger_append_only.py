"""Ledger: the journal becomes append-only in the database (UPDATE, DELETE and TRUNCATE are refused by
triggers; corrections are reversing transactions), and a balances projection, filled from the journal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 18:33:14.164688
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("ledger_transactions", "ledger_entries")
REFUSE_CHANGE = """
CREATE OR REPLACE FUNCTION quorum_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % refused: the table is append-only (post a reversing entry instead)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table('ledger_balances',
    sa.Column('account', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account', name=op.f('pk_ledger_balances')),
    comment='projection: the sum of the journal per account, checked by `quorum ledger rebuild`'
    )
    op.execute("""
        INSERT INTO ledger_balances (account, currency, amount, updated_at)
        SELECT account, currency, sum(amount), now() FROM ledger_entries GROUP BY account, currency
    """)
    op.execute(REFUSE_CHANGE)
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION quorum_refuse_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION quorum_refuse_change()")


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS quorum_refuse_change()")
    op.drop_table('ledger_balances')
