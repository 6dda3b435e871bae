"""Gateway security: hashed API tokens with roles, the master PIN verifier, encrypted exchange keys, the
selected model version; the audit
trail hash-chained (existing rows chained in id order) and append-only (triggers), and an application role
`quorum_app` that may read and insert but cannot alter or disable the append-only tables' triggers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 18:45:49.588039
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('model_selection',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('model_name', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_model_selection'))
    )
    op.create_table('api_tokens',
    sa.Column('token_id', sa.String(length=16), nullable=False, comment='public name of the token, used as the audit actor'),
    sa.Column('token_hash', sa.String(length=64), nullable=False, comment='sha256 of the token; never the token'),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False, comment='viewer, operator or admin'),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('token_id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('exchange_keys',
    sa.Column('key_id', sa.UUID(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('api_key_hint', sa.String(length=16), nullable=False, comment='last 4 characters, to recognise the key'),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False, comment='AES-256-GCM of the key and secret'),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('can_withdraw', sa.Boolean(), nullable=True, comment='as the exchange reported at registration; null: not exposed'),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_exchange_keys'))
    )
    op.create_table('master_pin',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('salt', sa.LargeBinary(), nullable=False),
    sa.Column('verifier', sa.LargeBinary(), nullable=False, comment='scrypt(PIN) for checking it; the key is derived apart'),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('r', sa.Integer(), nullable=False),
    sa.Column('p', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('scope', name=op.f('pk_master_pin'))
    )
    op.add_column('audit_log', sa.Column('prev_hash', sa.String(length=64), server_default='0000000000000000000000000000000000000000000000000000000000000000', nullable=False))
    op.add_column('audit_log', sa.Column('hash', sa.String(length=64), server_default='', nullable=False, comment='sha256 over prev_hash and this row'))
    _chain_existing_rows()
    for when, granularity in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
        name = "audit_log_append_only" if granularity == "ROW" else "audit_log_no_truncate"
        op.execute(f"CREATE TRIGGER {name} BEFORE {when} ON audit_log FOR EACH {granularity} "
                   "EXECUTE FUNCTION quorum_refuse_change()")
    op.execute(APP_ROLE)


def _chain_existing_rows() -> None:
    from quorum.audit_chain import GENESIS
    from quorum.audit_chain import legacy_row_hash as row_hash  # 0008 re-keys

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, event_id, ts, actor, action, mode, risk_profile, status, details "
                                "FROM audit_log ORDER BY id")).mappings().all()
    prev = GENESIS
    for r in rows:
        digest = row_hash(prev, {**r, "event_id": str(r["event_id"])})
        bind.execute(sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"),
                     {"p": prev, "h": digest, "i": r["id"]})
        prev = digest


APP_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'quorum_app') THEN
        CREATE ROLE quorum_app NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO quorum_app', current_database());
    GRANT USAGE ON SCHEMA public TO quorum_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO quorum_app;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO quorum_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO quorum_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO quorum_app;
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, ledger_transactions, ledger_entries FROM quorum_app;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'quorum_app role not created (the migrating user may not create roles)';
END
$$
"""


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    op.execute("""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'quorum_app') THEN
                ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM quorum_app;
                ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM quorum_app;
                REVOKE ALL ON ALL TABLES IN SCHEMA public FROM quorum_app;
                REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM quorum_app;
                REVOKE USAGE ON SCHEMA public FROM quorum_app;
                EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM quorum_app', current_database());
            END IF;
        END $$
    """)
    op.drop_column('audit_log', 'hash')
    op.drop_column('audit_log', 'prev_hash')
    op.drop_table('model_selection')
    op.drop_table('master_pin')
    op.drop_table('exchange_keys')
    op.drop_table('api_tokens')
